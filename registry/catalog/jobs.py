"""The ``sync_runs`` table: a log of every job run (sync, mirror, scrub, gc, prune, test,
nightly, import, rebuild) and of every failure inside one, with its reason."""

from __future__ import annotations

from typing import Any

from ..stamps import utcnow
from .base import Handle, dict_rows

DDL = (
    """CREATE TABLE IF NOT EXISTS sync_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, upstream TEXT, subject TEXT,
        started TEXT, finished TEXT, status TEXT NOT NULL, reason TEXT,
        old_commit TEXT, new_commit TEXT, changed INTEGER)""",
    "CREATE INDEX IF NOT EXISTS sync_runs_job ON sync_runs (job, id)",
)


class JobStore:
    """The log of job runs (``catalog.jobs``)."""

    def __init__(self, handle: Handle) -> None:
        self._h = handle

    def record_run(self, job: str, status: str, *, upstream: str | None = None, subject: str | None = None,
                   reason: str | None = None, started: str | None = None, old_commit: str | None = None,
                   new_commit: str | None = None, changed: int | None = None) -> None:
        """Log one job run, or one failure inside it (``subject`` names the model or blob)."""
        self._h.writable()
        self._h.conn.execute(
            """INSERT INTO sync_runs (job, upstream, subject, started, finished, status, reason,
               old_commit, new_commit, changed) VALUES (?,?,?,?,?,?,?,?,?,?)""",
            (job, upstream, subject, started or utcnow(), utcnow(), status, reason, old_commit, new_commit, changed))

    def runs(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql = "SELECT * FROM sync_runs"
        args: list[Any] = []
        if job:
            sql += " WHERE job = ?"
            args.append(job)
        return dict_rows(self._h.conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)))

    def last_runs(self) -> list[dict[str, Any]]:
        """The last summary run (no subject) of each job, per upstream where it has one."""
        return dict_rows(self._h.conn.execute(
            """SELECT * FROM sync_runs WHERE id IN (
                 SELECT max(id) FROM sync_runs WHERE subject IS NULL GROUP BY job, coalesce(upstream, ''))
               ORDER BY job, upstream"""))
