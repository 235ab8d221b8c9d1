"""``mirror:<base>`` sources: another synthmed site's store, addressed by sha256.

``<base>`` is the other store's root (the folder holding ``blobs/``), as an
``http(s)://`` URL, a ``file://`` URL or a plain absolute path. The blob is read from
``<base>/blobs/sha256/<ab>/<rest>``. A mirror is only a transport: the downstream site
verifies every byte itself, so a mirror can withhold a model but never substitute one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .base import Source, SourceStream, source_error
from .file import file_uri_path, open_local
from .http import HttpSource

log = logging.getLogger(__name__)


def blob_relpath(sha256: str) -> str:
    return f"blobs/sha256/{sha256[:2]}/{sha256[2:]}"


class MirrorSource(Source):
    """Another site's store; used in offline mode too (the base class's offline rule
    exempts mirrors: a site mirror is the site's own copy)."""

    supports_range = True
    _offline_exempt = True

    def _parse(self, uri: str) -> None:
        base = uri[len("mirror:"):].strip()
        if not base:
            raise source_error(self.uri, "no mirror base given and none configured",
                               hint="write mirror:<url-or-folder of another site's store>, or set sources.mirrors in site.toml")
        if not self.sha256:
            raise source_error(self.uri, "a mirror is addressed by sha256, and this artefact has none pinned",
                               hint="pin the record first (`synthmed index pin ID@VERSION`)")
        rel = blob_relpath(self.sha256)
        self._http: HttpSource | None = None
        self._path: Path | None = None
        if base.startswith(("http://", "https://")):
            self._http = HttpSource(base.rstrip("/") + "/" + rel, self.ctx, self.sha256)
            self.remote = True
        else:
            root = file_uri_path(base) if base.startswith("file:") else Path(base).expanduser()
            if not root.is_absolute():
                raise source_error(self.uri, "a folder mirror needs an absolute path")
            self._path = root / rel
            self.remote = False

    def _remote_host(self) -> str | None:
        return self._http.host if self._http is not None else None

    def _local_paths(self) -> list[Path]:
        """A folder mirror a record names is a local read; one the site configures
        (``sources.mirrors``) is the site's own choice and is not checked."""
        if self._path is None or self._configured():
            return []
        return [self._path]

    def _configured(self) -> bool:
        mine = self.uri[len("mirror:"):].strip()
        return any(m.removeprefix("mirror:").strip() == mine for m in self.settings.sources.mirrors)

    def _open(self, offset: int) -> SourceStream:
        if self._http is not None:
            # the HTTP client's own open would apply the offline rule, which mirrors are exempt from
            return self._http._open(offset)
        assert self._path is not None
        return open_local(self.uri, self._path, offset, check=None if self._configured() else self.check_local_path)
