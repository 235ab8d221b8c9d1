"""``file://`` sources: a local (or mounted) file, read with ranges.

Opening errors get their own messages (no such file, a folder, ...); an error while
reading (EIO from a failing disk or share) is wrapped by the base class into a
:class:`SourceError`, so the next source is tried.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from ...errors import SourceError
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


def open_local(uri: str, path: Path, offset: int,
               check: Callable[[Path], object] | None = None) -> FileStream:
    """``path`` opened for reading at ``offset``. Only a regular file is read (a FIFO, a
    device such as /dev/zero or a socket is refused, and opening never blocks on one).
    ``check`` is called with the path of the file actually opened (links resolved, from
    ``/proc/self/fd`` where there is one), so a link swapped in after an earlier check
    cannot lead elsewhere."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below)
        fh = open(path, "rb", buffering=0, opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK))
    except FileNotFoundError:
        raise source_error(uri, f"no such file {path}", hint="check the path, or that the share is mounted") from None
    except IsADirectoryError:
        raise source_error(uri, f"{path} is a folder, not a file") from None
    except OSError as exc:
        raise source_error(uri, f"cannot open {path}: {exc.strerror or exc}") from exc
    fd = fh.fileno()
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise source_error(uri, f"{path} is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise source_error(uri, f"{path} is not a regular file (a device, pipe or socket); refused")
        if check is not None:
            opened = Path(f"/proc/self/fd/{fd}")
            check(Path(os.readlink(opened)) if opened.is_symlink() else path)
        os.set_blocking(fd, True)
        if offset:
            os.lseek(fd, offset, os.SEEK_SET)
    except SourceError:
        fh.close()
        raise
    except OSError as exc:
        fh.close()
        raise source_error(uri, f"cannot read {path}: {exc}") from exc
    return FileStream(fh, offset, st.st_size)


class FileSource(Source):
    supports_range = True
    remote = False

    def _parse(self, uri: str) -> None:
        self.path = file_uri_path(uri)

    def _local_paths(self) -> list[Path]:
        return [self.path]

    def _open(self, offset: int) -> FileStream:
        check = None if self.ctx.local_roots is None else self.check_local_path
        return open_local(self.uri, self.path, offset, check=check)
