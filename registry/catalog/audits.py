"""The ``audits`` table: one row per memorisation audit run on this site (``synthmed audit``
and the nightly job; :mod:`synthmed.registry.measuring.audit`), keyed like test runs and
evaluations by upstream, id, version and package sha256.

A row holds the verdict, the names of the sets (a stored reference set's name, or
``dir:`` and the first digits of a folder's identity), the extractor, the sample count and
first seed, the parameters, the audit's key (a hash of how it was measured), ``summary``
(the reasons, the numbers and the near-copies as seeds and training indices: statistics
only, never an image or a file name) and the full ``provenance``. Generation 6 of the
layout; ``synthmed catalog rebuild`` keeps the rows."""

from __future__ import annotations

import json
from typing import Any, Mapping

from ..errors import CatalogError
from ..stamps import utcnow
from .base import Handle, dict_rows

DDL = (
    """CREATE TABLE IF NOT EXISTS audits (
        id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, upstream TEXT NOT NULL,
        model_id TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('pass', 'review', 'fail')), training TEXT NOT NULL,
        holdout TEXT, extractor TEXT NOT NULL, n INTEGER NOT NULL, seed INTEGER NOT NULL, params TEXT NOT NULL,
        key TEXT NOT NULL, summary TEXT NOT NULL, provenance TEXT NOT NULL, finished TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audits_model ON audits (upstream, model_id, version, sha256, id)",
)

#: an audit row joined with the served (latest) version it was made for
_SERVED = """FROM audits a JOIN models m ON m.upstream = a.upstream AND m.id = a.model_id
                 AND m.version = a.version AND m.sha256 = a.sha256 AND m.is_latest = 1"""


def _decoded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ``params``, ``summary`` and ``provenance`` parsed (a damaged one is left as text)."""
    for r in rows:
        for k in ("params", "summary", "provenance"):
            try:
                r[k] = json.loads(r[k]) if isinstance(r.get(k), str) else r.get(k)
            except ValueError:
                pass
    return rows


class AuditStore:
    """Memorisation audits run on this site (``catalog.audits``)."""

    def __init__(self, handle: Handle) -> None:
        self._h = handle

    def record_audit(self, *, run: str, upstream: str, model_id: str, version: str, sha256: str, verdict: str,
                     training: str, holdout: str | None, extractor: str, n: int, seed: int,
                     params: Mapping[str, Any], key: str, summary: Mapping[str, Any],
                     provenance: Mapping[str, Any], finished: str | None = None) -> None:
        self._h.writable()
        if verdict not in ("pass", "review", "fail"):
            raise CatalogError(f"audit verdict {verdict!r} is not pass, review or fail")
        self._h.conn.execute(
            """INSERT INTO audits (run, upstream, model_id, version, sha256, verdict, training, holdout, extractor,
               n, seed, params, key, summary, provenance, finished) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            (run, upstream, model_id, version, sha256, verdict, training, holdout, extractor, int(n), int(seed),
             json.dumps(dict(params), sort_keys=True), key, json.dumps(dict(summary), sort_keys=True),
             json.dumps(dict(provenance), sort_keys=True), finished or utcnow()))

    def audits_of(self, upstream: str, model_id: str, version: str, sha256: str | None,
                  limit: int = 20) -> list[dict[str, Any]]:
        """The audits of one upstream's version with package ``sha256``, newest first."""
        if not sha256:
            return []
        return _decoded(dict_rows(self._h.conn.execute(
            """SELECT * FROM audits WHERE upstream = ? AND model_id = ? AND version = ? AND sha256 = ?
               ORDER BY id DESC LIMIT ?""", (upstream, model_id, version, sha256, limit))))

    def latest_of(self, upstream: str, model_id: str, version: str, sha256: str | None) -> list[dict[str, Any]]:
        """The newest audit of each (training set, key, parameters) of one version: what its verdict is now."""
        seen: set[tuple[str, str, str]] = set()
        out = []
        for r in self.audits_of(upstream, model_id, version, sha256, limit=200):
            k = (r["training"], r["key"], json.dumps(r["params"], sort_keys=True))
            if k not in seen:
                seen.add(k)
                out.append(r)
        return out

    def has_audit(self, upstream: str, model_id: str, version: str, sha256: str, key: str,
                  params: Mapping[str, Any]) -> bool:
        """Whether this version was audited under ``key`` with these parameters."""
        row = self._h.conn.execute(
            """SELECT 1 FROM audits WHERE upstream = ? AND model_id = ? AND version = ? AND sha256 = ? AND key = ?
               AND params = ? LIMIT 1""",
            (upstream, model_id, version, sha256, key, json.dumps(dict(params), sort_keys=True))).fetchone()
        return row is not None

    def audit_summary(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest audit of each served version against each training set (for ``synthmed
        status``): verdict, training and held-out set, n, key, time and the headline numbers; fails first."""
        rows = dict_rows(self._h.conn.execute(
            f"""SELECT a.upstream, a.model_id, a.version, a.verdict, a.training, a.holdout, a.extractor, a.n, a.key,
                       a.summary, a.finished {_SERVED}
               WHERE a.id IN (SELECT max(id) FROM audits GROUP BY upstream, model_id, version, sha256, training)
               ORDER BY CASE a.verdict WHEN 'fail' THEN 0 WHEN 'review' THEN 1 ELSE 2 END, a.upstream, a.model_id
               LIMIT ?""", (limit,)))
        for r in _decoded(rows):
            s = r.pop("summary")
            vals = s.get("values", {}) if isinstance(s, dict) else {}
            r["near_copy_fraction"] = vals.get("near_copy_fraction")
            r["near_copy_uninformative"] = bool(vals.get("near_copy_uninformative"))
            r["reasons"] = s.get("reasons", []) if isinstance(s, dict) else []
        return rows
