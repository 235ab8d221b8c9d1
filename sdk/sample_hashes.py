"""The sha256 of every sample file, taken by the writer from the bytes it writes, so that
closing a run never reads its files again to make the manifest.

A run of synthmed's layout keeps, while it is written, one journal file per output under
``<folder>/.synthmed.hashes/``: a fixed-size record per sample index (sha256, size and
modification time of the file as written) at offset ``index * RECORD.size``. Any number of
processes (shards, device workers) write their own indices with ``pwrite`` at their own
offsets, so they need no lock; an index never written reads back as zeros.

:func:`synthmed.run_manifest.build_manifest` takes a sample's hash from the journal when
the file on disk still has the size and modification time recorded (a file changed or
rewritten since is hashed again from disk, as is a sample with no record: one written by
a process that died before recording it, or by an older synthmed). The journal is removed
once the manifest is written, so a finished folder holds exactly what it held before.
Memory stays flat: records are read back one at a time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import struct
from typing import Iterable

log = logging.getLogger(__name__)

#: the journal folder inside an output folder (hidden: not a sample, not an output)
JOURNAL = ".synthmed.hashes"
#: one sample's record: sha256 digest, size in bytes, modification time in nanoseconds
RECORD = struct.Struct("<32sQQ")
_EMPTY = bytes(RECORD.size)


def sha256_of(data: bytes | bytearray | memoryview) -> bytes:
    """The sha256 digest of bytes about to be written (hashlib releases the GIL on them)."""
    return hashlib.sha256(data).digest()


def sha256_of_file(path: str) -> bytes:
    """The sha256 digest of a file just written (read back while it is in the page cache)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            h.update(block)
    return h.digest()


class HashJournal:
    """The per-output hash records of one output folder (see the module's docstring).
    :meth:`open` before :meth:`record`; :meth:`close` when this process is done with it."""

    def __init__(self, folder: str | os.PathLike[str], outputs: Iterable[str]) -> None:
        self.root = os.path.join(os.fspath(folder), JOURNAL)
        self.outputs = list(outputs)
        self._fds: dict[str, int] = {}

    def open(self) -> None:
        os.makedirs(self.root, exist_ok=True)
        for name in self.outputs:
            if name not in self._fds:
                self._fds[name] = os.open(os.path.join(self.root, name), os.O_RDWR | os.O_CREAT, 0o644)

    def close(self) -> None:
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)

    def record(self, output: str, index: int, digest: bytes, path: str) -> None:
        """Record the digest of the file now at ``path`` (sample ``index`` of ``output``),
        with the size and modification time it has."""
        fd = self._fds.get(output)
        if fd is None:
            return
        st = os.stat(path)
        os.pwrite(fd, RECORD.pack(digest, st.st_size, st.st_mtime_ns), index * RECORD.size)

    def known(self, output: str, index: int, path: str) -> tuple[str, int] | None:
        """(sha256 hex, size) of the file at ``path`` as recorded, or None when there is no
        record or the file is no longer the one recorded (size or modification time)."""
        fd = self._fds.get(output)
        if fd is None:
            return None
        raw = os.pread(fd, RECORD.size, index * RECORD.size)
        if len(raw) != RECORD.size or raw == _EMPTY:
            return None
        digest, size, mtime_ns = RECORD.unpack(raw)
        try:
            st = os.stat(path)
        except OSError:
            return None
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            return None
        return digest.hex(), size

    def remove(self) -> None:
        """Close and delete the journal (the manifest now holds every hash)."""
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)
