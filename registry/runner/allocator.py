"""The C allocator while a model runs in this process: freed memory is kept for the next batch.

A generator's forward pass allocates a few large activation buffers per layer (a batch of 128
64x64 images with 64 channels is 128 MiB) and frees them at the end of the layer. glibc serves
blocks above its mmap threshold (128 KiB, raised only as far as 32 MiB by its dynamic rule)
with a fresh ``mmap`` and gives them back with ``munmap`` at once, and gives back the free top
of its heap above its trim threshold: every batch then touches its activations in brand-new
pages, which the kernel faults in and zeroes one 4 KiB page at a time. On medigan's IHC twin at
2048 samples in chunks of 128 that was 9.2 s of system time against 3.9 s of user time, and the
run took 6.7 s instead of 2.0 s (``bench/medigan.py``, docs/performance.md).

:func:`keep_freed_memory` raises both thresholds (``mallopt``: blocks up to
:data:`MMAP_THRESHOLD` come from the heap, up to :data:`TRIM_THRESHOLD` of free heap is kept),
so the second batch reuses the first batch's pages. It changes where memory comes from, never
what is computed: the samples are the same bytes. The peak stays about where it was (a batch's
activations are live at once either way: 482 against 496 MiB on that run); what changes is that the freed pages stay in the
process until :func:`release_freed_memory` (``malloc_trim``) gives them back, which
:meth:`~synthmed.registry.runner.runner.Runner.close` does, so a long-lived process (``serve``,
the daemon) holds them only while a model is loaded.

Process-wide, set once, only on glibc (elsewhere nothing happens); a site turns it off with
``keep_freed_memory = false`` in ``site.toml``'s ``[runner]``.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

#: blocks up to this size come from the heap, not from a fresh mmap
MMAP_THRESHOLD = 256 << 20
#: free memory at the top of the heap kept up to this size
TRIM_THRESHOLD = 1 << 30

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_lock = threading.Lock()
_state: dict[str, Any] = {"libc": None, "kept": False}


def _glibc() -> Any | None:
    """glibc's handle, or None on another C library (musl, macOS, Windows)."""
    if _state["libc"] is None:
        try:
            libc = ctypes.CDLL(None)
            libc.gnu_get_libc_version.restype = ctypes.c_char_p
            libc.gnu_get_libc_version()
            libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            libc.mallopt.restype = ctypes.c_int
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
            libc.malloc_trim.restype = ctypes.c_int
        except (OSError, AttributeError, TypeError):
            _state["libc"] = False
        else:
            _state["libc"] = libc
    return _state["libc"] or None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); whether they are raised."""
    with _lock:
        if _state["kept"]:
            return True
        libc = _glibc()
        if libc is None:
            return False
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        if ok:
            _state["kept"] = True
            log.debug("allocator: freed memory kept for the next batch (mmap threshold %d MiB, trim threshold %d MiB)",
                      MMAP_THRESHOLD >> 20, TRIM_THRESHOLD >> 20)
        else:
            log.debug("allocator: glibc refused the thresholds; left as they were")
        return ok


def release_freed_memory() -> None:
    """Give the free memory this process kept back to the system (``malloc_trim``)."""
    with _lock:
        if _state["kept"] and _state["libc"]:
            _state["libc"].malloc_trim(0)
