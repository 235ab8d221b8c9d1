"""The small interface every artefact source implements, and the dispatch by URI scheme.

A source is only a transport: it hands out a byte stream, optionally from an offset.
Trust comes from the sha256 that :mod:`synthmed.registry.store` computes itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from ..errors import SourceError
from ..settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceContext:
    """What resolvers need besides the URI."""

    settings: Settings
    #: git repository holding the index (for ``index:`` sources)
    index_repo: Path | None = None
    #: commit to read ``index:`` files at (``None``: HEAD)
    index_commit: str | None = None
    #: index folder inside that repository ("" or e.g. "index")
    index_subfolder: str = ""
    #: read ``index:`` files from this working-tree folder instead of git (``index pin``,
    #: where the artefact may not be committed yet)
    index_dir: Path | None = None


class SourceStream(Protocol):
    """An open byte stream from a source."""

    #: where the stream starts in the artefact (0 when a requested offset was not honoured)
    offset: int
    #: the artefact's full size as the source declares it, when it does
    total: int | None

    def readinto(self, buf: memoryview) -> int:
        """Fill ``buf`` (fully, unless the stream ends); 0 at the end of the stream."""
        ...

    def close(self) -> None: ...


class Source(Protocol):
    """One resolved source URI."""

    uri: str
    #: True when :meth:`open` honours an offset (the store then resumes partial files)
    supports_range: bool
    #: True when bytes travel over the network (refused in offline mode, except mirrors)
    remote: bool

    def open(self, offset: int = 0) -> SourceStream: ...


class FileStream:
    """A :class:`SourceStream` over a local binary file object."""

    def __init__(self, fh: "_RawFile", offset: int, total: int | None) -> None:
        self._fh = fh
        self.offset = offset
        self.total = total

    def readinto(self, buf: memoryview) -> int:
        got = 0
        n = len(buf)
        while got < n:
            r = self._fh.readinto(buf[got:])
            if not r:
                break
            got += r
        return got

    def close(self) -> None:
        self._fh.close()


class _RawFile(Protocol):
    def readinto(self, buf: memoryview) -> int | None: ...

    def close(self) -> None: ...


def redact(url: str) -> str:
    """The URL without a password (safe for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def source_error(uri: str, what: str, hint: str | None = None) -> SourceError:
    return SourceError(f"{uri}: {what}", hint=hint, source=uri)


def resolve(uri: str, ctx: SourceContext, sha256: str | None = None) -> Source:
    """Turn a source URI into a :class:`Source`; ``sha256`` is needed by ``mirror:``."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in ("http", "https"):
        from .http import HttpSource

        return HttpSource(uri, ctx.settings)
    if scheme == "file":
        from .file import FileSource

        return FileSource(uri)
    if scheme == "index":
        from .index import IndexSource

        return IndexSource(uri, ctx)
    if scheme == "zenodo":
        from .zenodo import ZenodoSource

        return ZenodoSource(uri, ctx.settings)
    if scheme == "dvc":
        from .dvc import DvcSource

        return DvcSource(uri, ctx.settings)
    if scheme == "mirror":
        from .mirror import MirrorSource

        return MirrorSource(uri, ctx.settings, sha256)
    raise source_error(
        uri,
        "unknown source scheme",
        hint="use index:, zenodo:, dvc:, https://, http://, file:// or mirror:",
    )


def candidate_uris(sources: list[str], settings: Settings, sha256: str | None) -> list[str]:
    """Site-configured mirrors first (when the sha256 is known), then the record's sources."""
    out: list[str] = []
    if sha256:
        for m in settings.sources.mirrors:
            out.append(m if m.startswith("mirror:") else f"mirror:{m}")
    for s in sources:
        if s.strip() == "mirror:" and out and sha256:
            continue  # "any site mirror": the configured ones are already first
        if s not in out:
            out.append(s)
    return out


def last_path_part(uri: str) -> str:
    """The file name a URI points at: ``zenodo:1/a.pt`` -> ``a.pt``,
    ``dvc:url#models/w.pth@v1`` -> ``w.pth``, ``https://h/x/y.bin?q`` -> ``y.bin``."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    if uri.startswith("dvc:") and "#" in rest:
        rest = rest.split("#", 1)[1]
        if "@" in rest:
            rest = rest.rsplit("@", 1)[0]
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    name = rest.rstrip("/").rsplit("/", 1)[-1]
    return name
