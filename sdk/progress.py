"""Progress bars for the SDK's long calls (generating, visualizing, fetching packages).

One small helper, no dependency: :class:`ProgressBar` is a callable ``(done, total)``
that draws a one-line bar on a stream (stderr by default), redrawn in place on a
terminal. It fits both callbacks of the SDK: :data:`synthmed.site.SampleProgress`
(samples written, samples asked for) and the store's byte progress (bytes so far, the
declared size or ``None``).

Whether a bar is drawn is decided by one argument, ``progress``, everywhere in the SDK:

- ``None`` (the default): a bar only when the stream is a terminal;
- ``False``: never;
- ``True``: always (on a stream that is not a terminal, a line every 2 s and at the end;
  that is what ``synthmed generate`` does);
- a callable: called instead of drawing anything (your own bar).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO, Union

#: a progress callback: (done, total); total is None when it is not known (a download without a size)
ProgressCallback = Callable[[int, Union[int, None]], None]
#: what ``progress=`` accepts across the SDK
ProgressArg = Union[bool, None, Callable[..., None]]


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real file
        return False


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


class ProgressBar:
    """A plain-text progress bar: ``label [#####.....] done/total  pct  rate``.

    ``enabled``: None draws only on a terminal, False never, True always (a line every
    ``2 s`` when the stream is not a terminal). ``unit="bytes"`` shows sizes and a
    transfer rate. Call it with ``(done, total)``; the bar ends its line when done reaches
    total, or on :meth:`close`.
    """

    def __init__(self, label: str, *, enabled: bool | None = None, stream: TextIO | None = None,
                 unit: str = "samples", width: int = 30) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _is_tty(self.stream)
        self.enabled = self.tty if enabled is None else bool(enabled)
        self.unit = unit
        self.width = width
        self.started = time.monotonic()
        self.last = 0.0
        self._open = False  # a line drawn in place and not yet ended

    def _text(self, done: int, total: int | None, elapsed: float) -> str:
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.unit == "bytes":
            amount = f"{_bytes(done)}" + (f"/{_bytes(total)}" if total else "")
            speed = f"{_bytes(rate)}/s"
        else:
            amount = f"{done}/{total}" if total is not None else str(done)
            speed = f"{rate:8.1f}/s"
        if total:
            frac = min(1.0, done / total)
            fill = int(frac * self.width)
            return f"{self.label} [{'#' * fill}{'.' * (self.width - fill)}] {amount} {100 * frac:5.1f}% {speed}"
        if total == 0:
            return f"{self.label} [{'#' * self.width}] {amount} 100.0% {speed}"
        return f"{self.label} {amount} {speed}"

    def __call__(self, done: int, total: int | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self.last < (0.2 if self.tty else 2.0):
            return
        self.last = now
        line = self._text(done, total, now - self.started)
        if self.tty:
            self.stream.write("\r" + line)
            self._open = True
            if finished:
                self.stream.write("\n")
                self._open = False
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End a line left open on a terminal (a download of unknown size, an interrupted run)."""
        if self.enabled and self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def progress_bar(progress: ProgressArg, label: str, *, unit: str = "samples",
                 stream: TextIO | None = None) -> Callable[..., None] | None:
    """The callback for a ``progress=`` argument (see the module docstring): None when
    nothing is to be drawn, the caller's own callable, or a :class:`ProgressBar`."""
    if progress is False:
        return None
    if callable(progress) and not isinstance(progress, bool):
        return progress
    bar = ProgressBar(label, enabled=None if progress is None else bool(progress), stream=stream, unit=unit)
    return bar if bar.enabled else None
