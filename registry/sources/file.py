"""``file://`` sources: a local (or mounted) file, read with ranges.

Opening errors get their own messages (no such file, a folder, ...); an error while
reading (EIO from a failing disk or share) is wrapped by the base class into a
:class:`SourceError`, so the next source is tried.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .base import FileStream, Source, source_error

log = logging.getLogger(__name__)


def file_uri_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise source_error(uri, f"file:// URIs name a local file; host {parts.netloc!r} is not supported",
                           hint="write file:///absolute/path")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise source_error(uri, "a file:// URI needs an absolute path", hint="write file:///absolute/path")
    return Path(path)


def open_local(uri: str, path: Path, offset: int) -> FileStream:
    try:
        fh = open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise source_error(uri, f"no such file {path}", hint="check the path, or that the share is mounted") from None
    except IsADirectoryError:
        raise source_error(uri, f"{path} is a folder, not a file") from None
    except OSError as exc:
        raise source_error(uri, f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        total = os.fstat(fh.fileno()).st_size
        if offset:
            fh.seek(offset)
    except OSError as exc:
        fh.close()
        raise source_error(uri, f"cannot read {path}: {exc}") from exc
    return FileStream(fh, offset, total)


class FileSource(Source):
    supports_range = True
    remote = False

    def _parse(self, uri: str) -> None:
        self.path = file_uri_path(uri)

    def _open(self, offset: int) -> FileStream:
        return open_local(self.uri, self.path, offset)
