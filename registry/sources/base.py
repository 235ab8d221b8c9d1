"""The base class every artefact source derives from, and the rules it applies once.

A source is only a transport: it hands out a byte stream, optionally from an offset.
Trust comes from the sha256 that :mod:`synthmed.registry.store` computes itself.

Contract of :class:`Source` (the subclasses implement protected methods only):

- One constructor for every scheme: ``cls(uri, ctx, sha256)``. It parses the URI (a
  malformed one raises :class:`SourceError`) and does no I/O. ``uri`` is the URI without a
  password, safe for messages.
- :meth:`Source.open` applies the offline rule, then calls the subclass's ``_open``.
- Every failure of a source surfaces as :class:`SourceError` naming its URI: any other
  exception raised while opening, or while reading from the stream :meth:`Source.open`
  returns (``OSError`` such as EIO, ``http.client`` and library errors, ...), is wrapped
  into one, naming the byte offset reached. So a caller can tell the two sides apart: a
  ``SourceError`` means "this source failed, try the next one"; any other exception comes
  from the caller's own side (the store's disk) and stops the fetch. ``KeyboardInterrupt``
  and other ``BaseException``\\ s pass through unchanged.

Offline rule (``settings.offline``): a source whose bytes come from another machine
(``remote``) is refused with a :class:`SourceError` and a hint, unless the host it reaches
is a loopback address or ``localhost``, or the source is a ``mirror:`` (a site mirror is the
site's own copy and is used offline). Local sources (``file://``, ``index:``, folder
mirrors, ``dvc:`` with a local repository) are never refused.

The scheme -> class table and :func:`source_for_uri` are in :mod:`synthmed.registry.sources.table`.
"""

from __future__ import annotations

import abc
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol
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

    @property
    def offset(self) -> int:
        """Where the stream starts in the artefact (0 when a requested offset was not honoured)."""
        ...

    @property
    def total(self) -> int | None:
        """The artefact's full size as the source declares it, when it does."""
        ...

    def readinto(self, buf: memoryview) -> int:
        """Fill ``buf`` (fully, unless the stream ends); 0 at the end of the stream."""
        ...

    def close(self) -> None: ...


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


class GuardedStream:
    """What :meth:`Source.open` returns: the subclass's stream, with every exception but
    :class:`SourceError` raised while reading turned into a :class:`SourceError` that names
    the source and the byte offset reached. Closing never raises (the bytes are verified by
    their hash; a failed close only costs a log line)."""

    def __init__(self, uri: str, inner: SourceStream, hint: str) -> None:
        self.uri = uri
        self._inner = inner
        self._hint = hint
        #: the artefact offset of the next byte to be read
        self.position = inner.offset

    @property
    def offset(self) -> int:
        return self._inner.offset

    @property
    def total(self) -> int | None:
        return self._inner.total

    def readinto(self, buf: memoryview) -> int:
        try:
            n = self._inner.readinto(buf)
        except SourceError:
            raise
        except Exception as exc:
            raise source_error(self.uri, f"reading failed at byte {self.position}: {exc.__class__.__name__}: {exc}",
                               hint=self._hint) from exc
        self.position += n
        return n

    def close(self) -> None:
        try:
            self._inner.close()
        except Exception as exc:
            log.warning("%s: closing the stream failed: %s: %s", self.uri, exc.__class__.__name__, exc)


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Source(abc.ABC):
    """One resolved source URI; see the module docstring for the contract.

    Subclasses implement :meth:`_parse` and :meth:`_open`, and for remote sources
    :meth:`_remote_host`; they set ``supports_range`` and ``remote`` (as class attributes,
    or in ``_parse`` when the URI decides).
    """

    #: True when :meth:`open` honours an offset (the store then resumes partial files)
    supports_range: bool = False
    #: True when bytes come from another machine (the offline rule applies)
    remote: bool = False
    #: sources used offline although remote (``mirror:``: the site's own copies)
    _offline_exempt: ClassVar[bool] = False
    #: what an offline refusal says the source would have done, and its hint
    _offline_action: ClassVar[str] = "fetching from the network"
    _offline_hint: ClassVar[str] = "configure a site mirror (sources.mirrors), or turn offline mode off"
    #: the hint of a failure wrapped by :meth:`open` or by the stream
    _failure_hint: ClassVar[str] = "the source failed while being read; the next source is tried"

    def __init__(self, uri: str, ctx: SourceContext, sha256: str | None = None) -> None:
        #: the URI without a password (safe for messages and logs)
        self.uri = redact(uri)
        self.ctx = ctx
        self.settings = ctx.settings
        #: the pinned sha256 (``None`` before pinning); ``mirror:`` needs it
        self.sha256 = sha256
        self._parse(uri)

    @abc.abstractmethod
    def _parse(self, uri: str) -> None:
        """Parse ``uri`` (as written, credentials included); raise :class:`SourceError` when
        it is malformed. No I/O."""

    @abc.abstractmethod
    def _open(self, offset: int) -> SourceStream:
        """Open the stream at ``offset`` (or at 0 where ranges are not supported)."""

    def _remote_host(self) -> str | None:
        """The host a remote source reaches (a loopback one is allowed offline)."""
        return None

    def _check_offline(self) -> None:
        """Raise :class:`SourceError` when the offline rule refuses this source."""
        if not (self.remote and self.settings.offline) or self._offline_exempt:
            return
        if is_loopback(self._remote_host()):
            return
        raise source_error(self.uri, f"the site is offline (settings: offline = true); not {self._offline_action}",
                           hint=self._offline_hint)

    def open(self, offset: int = 0) -> GuardedStream:
        """A stream from ``offset`` (check its ``offset``: a source may start from 0)."""
        self._check_offline()
        try:
            stream = self._open(offset)
        except SourceError:
            raise
        except Exception as exc:
            raise source_error(self.uri, f"opening failed{f' at byte {offset}' if offset else ''}: "
                                         f"{exc.__class__.__name__}: {exc}", hint=self._failure_hint) from exc
        return GuardedStream(self.uri, stream, self._failure_hint)


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


def scheme_of(uri: str) -> str:
    """The URI's scheme, lower-cased ("" when there is none)."""
    return uri.split(":", 1)[0].lower() if ":" in uri else ""


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
