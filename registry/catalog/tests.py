"""The ``tests`` table: model test runs (:mod:`synthmed.registry.checks.modeltest_site`), each
keyed by upstream, id, version and package sha256: a result belongs to that package from
that upstream, nothing else."""

from __future__ import annotations

from typing import Any, Iterable

from ..stamps import utcnow
from .base import Handle, dict_row, dict_rows
from .entry import CatalogEntry

DDL = (
    """CREATE TABLE IF NOT EXISTS tests (
        id INTEGER PRIMARY KEY AUTOINCREMENT, upstream TEXT, model_id TEXT NOT NULL,
        version TEXT NOT NULL, ref TEXT NOT NULL, started TEXT, finished TEXT,
        passed INTEGER NOT NULL, reason TEXT, report_path TEXT, throughput REAL,
        peak_memory_mb REAL, runner_version TEXT, env_hash TEXT, sha256 TEXT)""",
    "DROP INDEX IF EXISTS tests_ref",
    "CREATE INDEX IF NOT EXISTS tests_key ON tests (upstream, model_id, version, sha256, id)",
)


class ModelTestStore:
    """Model test runs (``catalog.tests``)."""

    def __init__(self, handle: Handle) -> None:
        self._h = handle

    def record_test(self, *, model_id: str, version: str, passed: bool, upstream: str, sha256: str | None,
                    started: str | None = None, finished: str | None = None, reason: str | None = None,
                    report_path: str | None = None, throughput: float | None = None,
                    peak_memory_mb: float | None = None, runner_version: str | None = None,
                    env_hash: str | None = None) -> int:
        """Store one model test run of ``upstream``'s ``model_id@version`` with package
        ``sha256``: a result belongs to that package from that upstream, nothing else."""
        self._h.writable()
        cur = self._h.conn.execute(
            """INSERT INTO tests (upstream, model_id, version, sha256, ref, started, finished, passed, reason,
               report_path, throughput, peak_memory_mb, runner_version, env_hash)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            (upstream, model_id, version, sha256, f"{model_id}@{version}", started or utcnow(),
             finished or utcnow(), 1 if passed else 0, reason, report_path, throughput, peak_memory_mb,
             runner_version, env_hash))
        return int(cur.lastrowid or 0)

    def tests_of(self, upstream: str, model_id: str, version: str, sha256: str | None,
                 limit: int = 5) -> list[dict[str, Any]]:
        """The test runs of one upstream's version with package ``sha256``, newest first
        (none for an unverified record: it is never run)."""
        if not sha256:
            return []
        return dict_rows(self._h.conn.execute(
            """SELECT * FROM tests WHERE upstream = ? AND model_id = ? AND version = ? AND sha256 = ?
               ORDER BY id DESC LIMIT ?""", (upstream, model_id, version, sha256, limit)))

    def last_flags(self, entries: Iterable[CatalogEntry]) -> dict[str, dict[str, Any]]:
        """The last test of each entry, by ``upstream/id@version``: ``{"passed": bool,
        "finished": ..., "reason": ...}``. Only a test of the entry's own upstream and package
        sha256 counts; versions never tested so are absent."""
        out: dict[str, dict[str, Any]] = {}
        for e in entries:
            if not e.record.sha256:
                continue
            rows = self.tests_of(e.upstream, e.id, e.version, e.record.sha256, limit=1)
            if rows:
                t = rows[0]
                out[e.qualified_ref] = {"passed": bool(t["passed"]), "finished": t["finished"], "reason": t["reason"]}
        return out

    def test_row(self, test_id: int) -> dict[str, Any] | None:
        """One test run by its id (``tests.id``), or None."""
        return dict_row(self._h.conn.execute("SELECT * FROM tests WHERE id = ?", (int(test_id),)))

    def last_tests(self, ref: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The latest test run of each model version the catalog holds, matched by
        upstream, id, version and package sha256 (a run of another upstream's package, or of
        a package no longer held, is not shown); or the runs of one ``id@version`` of any
        upstream (each row names its upstream and sha256)."""
        if ref:
            model_id, _, version = ref.partition("@")
            cur = self._h.conn.execute(
                "SELECT * FROM tests WHERE model_id = ? AND (? = '' OR version = ?) ORDER BY id DESC LIMIT ?",
                (model_id, version, version, limit))
        else:
            cur = self._h.conn.execute(
                """SELECT t.* FROM tests t WHERE t.id IN (SELECT max(id) FROM tests
                     GROUP BY upstream, model_id, version, sha256)
                   AND EXISTS (SELECT 1 FROM models m WHERE m.upstream = t.upstream AND m.id = t.model_id
                     AND m.version = t.version AND m.sha256 = t.sha256)
                   ORDER BY t.model_id, t.version, t.upstream LIMIT ?""", (limit,))
        return dict_rows(cur)

    def failing_models(self) -> list[dict[str, Any]]:
        """The last test of each held version (see :meth:`last_tests`) that failed; ``qualified_ref``
        names the upstream."""
        return [{**t, "qualified_ref": f"{t['upstream']}/{t['ref']}"}
                for t in self.last_tests(limit=1_000_000) if not t["passed"]]
