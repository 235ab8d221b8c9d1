"""The store's copy pipeline: read, hash and write one stream at once.

:class:`CopyPipe` reads in the caller's thread and hashes and writes in two more threads
from the same page-aligned buffers (:func:`_buffers`), so a download costs the slowest of
the three rather than their sum. Large aligned stretches are written with ``O_DIRECT``
(:func:`open_direct`) where the OS and filesystem allow it, and dirty pages are pushed to
disk as the copy goes (``sync_file_range``), so the final fsync is short.

It knows nothing of blobs, names or sources: :class:`synthmed.registry.artefacts.store.Store` decides
what is copied where and what the hash must be.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import queue
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from .sources import SourceStream

log = logging.getLogger(__name__)

#: buffers in flight: the reader fills one while others are being hashed and written
PIPELINE_DEPTH = 8
#: downloads at least this big bypass the page cache (O_DIRECT) where possible
DIRECT_MIN = 16 << 20
DIRECT_ALIGN = 4096

#: called with (bytes copied so far, the total when known)
ByteProgress = Callable[[int, "int | None"], None]


class _Buf:
    """One pipeline buffer, handed to the hashing and the writing thread at once; it is
    reused only after both are done with it."""

    __slots__ = ("view", "n", "users", "lock")

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.n = 0
        self.users = 0
        self.lock = threading.Lock()


_HUGE = 2 << 20


def _buffers(chunk: int, count: int) -> tuple[mmap.mmap, memoryview, list[_Buf]]:
    """``count`` page-aligned buffers (as O_DIRECT needs) in one anonymous mapping, backed by
    huge pages where the kernel allows it (fewer pages to pin per O_DIRECT write, fewer TLB
    misses while copying and hashing)."""
    mem = mmap.mmap(-1, chunk * count + _HUGE)
    start = 0
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None and chunk % _HUGE == 0:
        with contextlib.suppress(OSError, ValueError):
            mem.madvise(advice)
        with memoryview(mem) as probe:
            addr = ctypes_address(probe)
        if addr is not None:
            start = -addr % _HUGE
    whole = memoryview(mem)
    return mem, whole, [_Buf(whole[start + i * chunk: start + (i + 1) * chunk]) for i in range(count)]


def ctypes_address(view: memoryview) -> int | None:
    """The address of a writable buffer (None where ctypes is missing)."""
    try:
        import ctypes

        return ctypes.addressof(ctypes.c_char.from_buffer(view))
    except (ImportError, TypeError, ValueError):
        return None


class CopyPipe:
    """Read in the caller's thread; hash in a second thread and write in a third, both from
    the same buffer at once. Socket and file reads, hashlib (for more than 2 KiB) and file
    writes all release the GIL, so reading chunk i+1 overlaps hashing and writing chunk i:
    a download costs the slowest of the three, not their sum. A buffer is refilled only
    after it was both hashed and written, so the bytes hashed are the bytes written.
    ``PIPELINE_DEPTH`` buffers cycle through a free list, which absorbs a stage's hiccups
    (a slow disk write, a preempted thread) without stalling the others.

    With ``direct_fd`` (the same file opened with ``O_DIRECT``), aligned stretches bypass
    the page cache: no copy into freshly allocated page-cache pages (bench/hash_throughput.py
    measured that copy as the costliest part of a buffered write on a VM), and nothing is
    left to write back at the fsync. Whatever is not aligned (a short last chunk) goes
    through ``fd``, and so does everything after it.
    """

    def __init__(self, fd: int, hasher: Any, chunk: int, progress: ByteProgress | None, done: int,
                 total: int | None, direct_fd: int | None = None) -> None:
        self.fd = fd
        self.direct_fd = direct_fd
        self.hasher = hasher
        self.progress = progress
        self.done = done
        self.total = total
        self.dirty = 0
        self.mem, self.whole, self.bufs = _buffers(chunk, PIPELINE_DEPTH)
        self.free: queue.SimpleQueue[_Buf] = queue.SimpleQueue()
        for b in self.bufs:
            self.free.put(b)
        self.to_hash: queue.SimpleQueue[_Buf | None] = queue.SimpleQueue()
        self.to_write: queue.SimpleQueue[_Buf | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.threads = [threading.Thread(target=self._hash_loop, name="store-hash", daemon=True),
                        threading.Thread(target=self._write_loop, name="store-write", daemon=True)]
        for t in self.threads:
            t.start()

    def _release(self, buf: _Buf) -> None:
        with buf.lock:
            buf.users -= 1
            last = buf.users == 0
        if last:
            self.free.put(buf)

    def _hash_loop(self) -> None:
        update = self.hasher.update
        while True:
            buf = self.to_hash.get()
            if buf is None:
                return
            if self.error is None:
                update(buf.view[: buf.n])
            self._release(buf)

    def _pwrite_all(self, fd: int, mv: memoryview, pos: int) -> int:
        start = pos
        while mv:
            w = os.pwrite(fd, mv, pos)
            mv = mv[w:]
            pos += w
        return pos - start

    def _write(self, mv: memoryview) -> None:
        pos = self.done
        if self.direct_fd is not None and pos % DIRECT_ALIGN == 0:
            aligned = len(mv) - len(mv) % DIRECT_ALIGN
            if aligned:
                try:
                    w = os.pwrite(self.direct_fd, mv[:aligned], pos)
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                        raise
                    log.debug("O_DIRECT write refused (%s); writing through the page cache", exc)
                    self.direct_fd = None
                    w = 0
                mv = mv[w:]
                pos += w
        if mv:
            pos += self._pwrite_all(self.fd, mv, pos)
            self.dirty += len(mv)
        self.done = pos

    def _write_loop(self) -> None:
        while True:
            buf = self.to_write.get()
            if buf is None:
                return
            if self.error is None:
                try:
                    self._write(buf.view[: buf.n])
                    if self.dirty >= WRITEBACK_EVERY and _start_writeback is not None:
                        _start_writeback(self.fd, self.done - self.dirty, self.dirty)
                        self.dirty = 0
                    if self.progress is not None:
                        self.progress(self.done, self.total)
                except BaseException as exc:  # disk full, ...
                    self.error = exc
            self._release(buf)

    def run(self, stream: SourceStream, limit: int | None) -> int:
        """Copy up to ``limit`` bytes (all, if None); return the count."""
        got = 0
        get_free = self.free.get
        try:
            while limit is None or got < limit:
                buf = get_free()
                if self.error is not None:
                    break
                mv = buf.view
                n = stream.readinto(mv if limit is None or limit - got >= len(mv) else mv[: limit - got])
                if not n:
                    self.free.put(buf)
                    break
                got += n
                buf.n = n
                buf.users = 2
                self.to_hash.put(buf)
                self.to_write.put(buf)
        finally:
            self.to_hash.put(None)
            self.to_write.put(None)
            for t in self.threads:
                t.join()
            for b in self.bufs:
                b.view.release()
            self.whole.release()
            with contextlib.suppress(BufferError):
                self.mem.close()
        if self.error is not None:
            raise self.error
        return got


def open_direct(path: Path) -> int | None:
    """The file opened again for O_DIRECT writes, where the OS and filesystem allow it."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open(path, os.O_WRONLY | flag)
    except OSError as exc:  # e.g. tmpfs
        log.debug("no O_DIRECT for %s: %s", path, exc)
        return None


#: start writing dirty pages back to disk every this many bytes, so the final fsync is short
WRITEBACK_EVERY = 32 << 20


def _writeback_starter() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range(SYNC_FILE_RANGE_WRITE): start writeback without waiting."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        fn.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None

    def start(fd: int, offset: int, nbytes: int) -> None:
        fn(fd, offset, nbytes, 2)  # SYNC_FILE_RANGE_WRITE; a failure only costs speed

    return start


_start_writeback = _writeback_starter()
