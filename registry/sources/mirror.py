"""``mirror:<base>`` sources: another synthmed site's store, addressed by sha256.

``<base>`` is the other store's root (the folder holding ``blobs/``), as an
``http(s)://`` URL, a ``file://`` URL or a plain absolute path. The blob is read from
``<base>/blobs/sha256/<ab>/<rest>``. A mirror is only a transport: the downstream site
verifies every byte itself, so a mirror can withhold a model but never substitute one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..settings import Settings
from .base import FileStream, SourceStream, source_error
from .file import file_uri_path, open_local
from .http import HttpSource

log = logging.getLogger(__name__)


def blob_relpath(sha256: str) -> str:
    return f"blobs/sha256/{sha256[:2]}/{sha256[2:]}"


class MirrorSource:
    supports_range = True

    def __init__(self, uri: str, settings: Settings, sha256: str | None) -> None:
        self.uri = uri
        base = uri[len("mirror:"):].strip()
        if not base:
            raise source_error(uri, "no mirror base given and none configured",
                               hint="write mirror:<url-or-folder of another site's store>, or set sources.mirrors in site.toml")
        if not sha256:
            raise source_error(uri, "a mirror is addressed by sha256, and this artefact has none pinned",
                               hint="pin the record first (`synthmed index pin ID@VERSION`)")
        self.sha256 = sha256
        rel = blob_relpath(sha256)
        self._http: HttpSource | None = None
        self._path: Path | None = None
        if base.startswith(("http://", "https://")):
            self._http = HttpSource(base.rstrip("/") + "/" + rel, settings, allow_offline=True)
            self.remote = True
        else:
            root = file_uri_path(base) if base.startswith("file:") else Path(base).expanduser()
            if not root.is_absolute():
                raise source_error(uri, "a folder mirror needs an absolute path")
            self._path = root / rel
            self.remote = False

    def open(self, offset: int = 0) -> SourceStream:
        if self._http is not None:
            return self._http.open(offset)
        assert self._path is not None
        stream: FileStream = open_local(self.uri, self._path, offset)
        return stream
