"""The ``artefacts`` table: every blob the site knows of and its state (``verified``,
``missing``, ``corrupt``), with its size, where it came from and why it is in that state."""

from __future__ import annotations

from typing import Any

from ..stamps import utcnow
from .base import Handle, dict_rows

DDL = (
    """CREATE TABLE IF NOT EXISTS artefacts (
        sha256 TEXT PRIMARY KEY, size INTEGER, state TEXT NOT NULL, verified_at TEXT,
        source TEXT, reason TEXT, updated_at TEXT)""",
)


class ArtefactStore:
    """The state of each blob (``catalog.artefacts``)."""

    def __init__(self, handle: Handle) -> None:
        self._h = handle

    def set_artefact(self, sha256: str, *, state: str, size: int | None = None, source: str | None = None,
                     reason: str | None = None, verified_at: str | None = None) -> None:
        self._h.writable()
        now = utcnow()
        if state == "verified" and verified_at is None:
            verified_at = now
        self._h.conn.execute(
            """INSERT INTO artefacts (sha256, size, state, verified_at, source, reason, updated_at)
               VALUES (?,?,?,?,?,?,?)
               ON CONFLICT (sha256) DO UPDATE SET size = coalesce(excluded.size, size), state = excluded.state,
                 verified_at = coalesce(excluded.verified_at, verified_at),
                 source = coalesce(excluded.source, source), reason = excluded.reason,
                 updated_at = excluded.updated_at""",
            (sha256, size, state, verified_at, source, reason, now))

    def delete_artefact(self, sha256: str) -> None:
        self._h.writable()
        self._h.conn.execute("DELETE FROM artefacts WHERE sha256 = ?", (sha256,))

    def rows(self) -> list[dict[str, Any]]:
        """Every blob's row, by sha256."""
        return dict_rows(self._h.conn.execute("SELECT * FROM artefacts ORDER BY sha256"))
