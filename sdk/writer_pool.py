"""Writers that keep up: samples are encoded and written on a pool of threads while the
model makes the next batch.

:meth:`synthmed.site.Model.generate_to` hands each sample to :class:`WriterPool`; the
model's own loop never waits for a file unless the pool is full. The pool is bounded: at
most ``max_pending`` samples are queued or being written, so memory stays flat however
many samples a run makes (a queued sample is a view into its batch, so a full queue
holds at most a couple of batches). The heavy parts of writing (numpy's pixel
conversion, zlib, file I/O) release the GIL, so threads run them in parallel with the
model and with each other; threads also share the run's notes (scaling, DICOM UIDs) that
the encoders record for the sidecar, which processes would not.

The first error a writer meets stops the run: it is raised by the next :meth:`submit` or
by :meth:`drain`, and samples still queued are dropped (each file is written under a
temporary name and renamed, so nothing partial is left; a rerun writes what is missing).

:class:`WriterOptions` are the site's defaults (``[output]`` in site.toml), overridden
per call (``generate_to(png_compress_level=, writers=)``, ``synthmed generate
--png-compression --writers``).
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from synthmed.registry.errors import ConfigError

from .png_encoder import DEFAULT_LEVEL, check_level

log = logging.getLogger(__name__)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_writers() -> int:
    """Writer threads when none are asked for: one per core (the model's own loop
    mostly waits in torch or numpy, which release the GIL too)."""
    return available_cores()


@dataclass(frozen=True)
class WriterOptions:
    """How samples are written: the PNG compression level (zlib 0..9) and the number
    of writer threads (None: one per core; 0: write in the generating thread)."""

    png_compress_level: int = DEFAULT_LEVEL
    writers: int | None = None

    def __post_init__(self) -> None:
        check_level(self.png_compress_level)
        if self.writers is not None and (isinstance(self.writers, bool) or not isinstance(self.writers, int)
                                         or self.writers < 0):
            raise ConfigError(f"writers must be a whole number, 0 or more, got {self.writers!r}",
                              hint="leave it out for one writer thread per core; 0 writes in the generating thread")

    @classmethod
    def from_settings(cls, settings: Any) -> "WriterOptions":
        out = getattr(settings, "output", None)
        if out is None:
            return cls()
        return cls(png_compress_level=out.png_compress_level, writers=out.writers)

    def with_(self, **changes: Any) -> "WriterOptions":
        """A copy with the given fields changed; None leaves a field as it is."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def threads(self) -> int:
        return default_writers() if self.writers is None else self.writers


WriteFn = Callable[[int, Mapping[str, np.ndarray]], None]


class WriterPool:
    """Runs ``write(index, sample)`` on ``workers`` threads, at most ``max_pending``
    samples at a time (``submit`` waits for room). ``workers=0`` writes in the calling
    thread, in order (the synchronous baseline). Use as a context manager, or call
    :meth:`drain` then :meth:`close`.

    :meth:`submit_batch` hands a batch over in a few tasks of several samples each (one
    thread pool task, one wait for room and one count per task, not per sample), and each
    task takes its samples out of the batch in the writer thread: the generating thread's
    Python work per batch does not grow with the batch size."""

    #: tasks per writer thread a batch is split into: enough for the threads to share a
    #: batch evenly, few enough that the per-task overhead stays small
    TASKS_PER_WORKER = 4

    def __init__(self, write: WriteFn, workers: int, max_pending: int | None = None) -> None:
        self._write = write
        self.workers = max(0, int(workers))
        self.max_pending = max(1, int(max_pending if max_pending is not None else 4 * max(1, self.workers)))
        self._room = threading.Condition(threading.Lock())
        self._pending = 0
        self._error: BaseException | None = None
        self._stopping = False
        #: samples written so far
        self.done = 0
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="synthmed-writer") if self.workers else None

    @property
    def pending(self) -> int:
        """Samples queued or being written now."""
        return self._pending

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _reserve(self, count: int) -> None:
        """Wait until ``count`` more samples fit (a task larger than the pool waits for an
        empty pool), then count them as pending; raises the first writer error."""
        with self._room:
            while self._pending and self._pending + count > self.max_pending and self._error is None:
                self._room.wait()
            self._raise_error()
            self._pending += count

    def _run(self, indices: Sequence[int], outputs: Mapping[str, Any], first: int) -> None:
        """Write ``indices`` (item ``first + j`` of every output is sample ``indices[j]``)."""
        written = 0
        try:
            for j, index in enumerate(indices, start=first):
                if self._stopping:
                    break
                self._write(index, {name: arr[j] for name, arr in outputs.items()})
                written += 1
        except BaseException as exc:  # kept for the generating thread, which raises it
            with self._room:
                if self._error is None:
                    self._error = exc
                self._stopping = True
        finally:
            with self._room:
                self.done += written
                self._pending -= len(indices)
                self._room.notify_all()

    def _submit(self, indices: Sequence[int], outputs: Mapping[str, Any], first: int) -> None:
        self._raise_error()
        if self._pool is None:
            for j, index in enumerate(indices, start=first):
                self._write(index, {name: arr[j] for name, arr in outputs.items()})
                self.done += 1
            return
        self._reserve(len(indices))
        self._pool.submit(self._run, indices, outputs, first)

    def submit(self, index: int, sample: Mapping[str, np.ndarray]) -> None:
        """Queue one sample (arrays without the batch axis); waits while the pool is full.
        Raises the first error a writer met."""
        self._submit([index], {name: (arr,) for name, arr in sample.items()}, 0)  # item 0: the sample itself

    def submit_batch(self, indices: Sequence[int], outputs: Mapping[str, np.ndarray]) -> None:
        """Queue the samples of one batch: ``indices[j]`` is item ``j`` of every output.
        The batch's arrays are shared with the writers until they are written (views, not
        copies): the caller makes a new batch rather than filling this one again."""
        indices = list(indices)
        if self._pool is None:
            self._submit(indices, outputs, 0)
            return
        tasks = max(1, self.workers * self.TASKS_PER_WORKER)
        size = max(1, min(self.max_pending, -(-len(indices) // tasks)))
        for first in range(0, len(indices), size):
            self._submit(indices[first:first + size], outputs, first)

    def drain(self) -> None:
        """Wait until every queued sample is written; raise the first writer error."""
        if self._pool is not None:
            with self._room:
                while self._pending:
                    self._room.wait()
        self._raise_error()

    def close(self, cancel: bool = False) -> None:
        """Stop the threads: after the queued samples are written, or (``cancel``) dropping
        those not started yet."""
        if self._pool is None:
            return
        if cancel:
            self._stopping = True
        self._pool.shutdown(wait=True, cancel_futures=cancel)
        self._pool = None

    def __enter__(self) -> "WriterPool":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(cancel=exc_type is not None)
