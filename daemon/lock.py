"""One writer per site: an ``fcntl`` lock on ``<site>/site.lock``.

The lock is held for as long as the process runs (the kernel releases it when the
process dies, even on ``kill -9``), so a stale lock file never blocks a restart. The
file holds the PID and the command of the holder, so a refused process can name it.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import IO

from synthmed.registry.errors import SiteLocked

log = logging.getLogger(__name__)

LOCK_FILE = "site.lock"


class SiteLock:
    """An exclusive, non-blocking lock on a site folder."""

    def __init__(self, home: Path, what: str = "synthmed") -> None:
        self.path = Path(home) / LOCK_FILE
        self.what = what
        self._fh: IO[str] | None = None

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def acquire(self) -> "SiteLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            held = self.holder()
            pid = held.split()[0] if held != "unknown" else "unknown"
            raise SiteLocked(
                f"the site {self.path.parent} is locked by PID {pid} ({held}); "
                f"only one daemon or sync may write a site at a time",
                hint="stop that process first (or let it finish); the daemon syncs on its own schedule",
                pid=pid, lock_path=str(self.path),
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()} {self.what}\n")
        fh.flush()
        self._fh = fh
        log.debug("locked %s", self.path)
        return self

    def release(self) -> None:
        if self._fh is None:
            return
        try:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        finally:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "SiteLock":
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
