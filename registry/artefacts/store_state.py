"""The store's verified state: ``state.db`` remembers which blobs hashed to their name.

A blob is hashed on its first open; :class:`VerifiedState` then remembers it by (inode,
size, mtime), so later opens cost nothing until the file changes. It is a memo, never the
truth: when ``state.db`` cannot be read or written (a read-only store), the blob is simply
hashed again.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)


class VerifiedState:
    """``state.db`` of one store: sha256 -> (inode, size, mtime_ns) when it last verified."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _db(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("CREATE TABLE IF NOT EXISTS verified (sha256 TEXT PRIMARY KEY, ino INTEGER, size INTEGER, "
                    "mtime_ns INTEGER, verified_at REAL)")
        return con

    def get(self, sha256: str) -> tuple[int, int, int] | None:
        """The (inode, size, mtime_ns) the blob had when it last verified; None if unknown."""
        if not self.path.exists():
            return None
        try:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            try:
                row = con.execute("SELECT ino, size, mtime_ns FROM verified WHERE sha256 = ?", (sha256,)).fetchone()
            finally:
                con.close()
        except sqlite3.Error as exc:
            log.debug("store state unreadable (%s); verifying", exc)
            return None
        return (int(row[0]), int(row[1]), int(row[2])) if row else None

    def put(self, sha256: str, st: os.stat_result) -> None:
        """Remember that the file with stat ``st`` hashed to ``sha256``."""
        try:
            con = self._db()
            try:
                with con:
                    con.execute("INSERT OR REPLACE INTO verified VALUES (?, ?, ?, ?, ?)",
                                (sha256, st.st_ino, st.st_size, st.st_mtime_ns, time.time()))
            finally:
                con.close()
        except sqlite3.Error as exc:  # a read-only store: verify again next time
            log.debug("cannot remember blob %s as verified: %s", sha256, exc)

    def delete(self, sha256: str) -> None:
        if not self.path.exists():
            return
        try:
            con = self._db()
            try:
                with con:
                    con.execute("DELETE FROM verified WHERE sha256 = ?", (sha256,))
            finally:
                con.close()
        except sqlite3.Error as exc:
            log.debug("cannot forget blob %s: %s", sha256, exc)
