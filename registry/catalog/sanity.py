"""The ``sanity_checks`` table: one row per extractor and run of ``synthmed evaluate --sanity``
(:mod:`synthmed.registry.measuring.sanity`), keyed by the reference set's identity (the hash
of its file manifest: a set added again with other files is another set) and the extractor.

A row holds the set's label (its name, or ``dir:`` and the first digits of a folder's
identity), the extractor's reference and configuration key, the distance it reports (``fd``
or ``frd``), how many checks passed of how many, the checks with their values (statistics
only, never an image, a file name or a feature) and the provenance. Added in its own
generation of the layout (a new table, created by the migration's ``CREATE TABLE IF NOT
EXISTS``: nothing else changes); ``synthmed catalog rebuild`` keeps the rows."""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from ..stamps import utcnow
from .base import Handle, dict_rows

DDL = (
    """CREATE TABLE IF NOT EXISTS sanity_checks (
        id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, reference TEXT NOT NULL, identity TEXT NOT NULL,
        extractor TEXT NOT NULL, config TEXT NOT NULL, distance TEXT NOT NULL, passed INTEGER NOT NULL,
        total INTEGER NOT NULL, checks TEXT NOT NULL, provenance TEXT NOT NULL, finished TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS sanity_checks_identity ON sanity_checks (identity, extractor, id)",
)


def _decoded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        for k in ("checks", "provenance"):
            try:
                r[k] = json.loads(r[k]) if isinstance(r.get(k), str) else r.get(k)
            except ValueError:
                pass
    return rows


class SanityStore:
    """Extractor sanity checks run on this site's reference sets (``catalog.sanity``)."""

    def __init__(self, handle: Handle) -> None:
        self._h = handle

    def record_sanity(self, *, run: str, reference: str, identity: str, extractor: str, config: str,
                      distance: str, passed: int, total: int, checks: Sequence[Mapping[str, Any]],
                      provenance: Mapping[str, Any], finished: str | None = None) -> None:
        self._h.writable()
        self._h.conn.execute(
            """INSERT INTO sanity_checks (run, reference, identity, extractor, config, distance, passed, total,
               checks, provenance, finished) VALUES (?,?,?,?,?,?,?,?,?,?,?)""",
            (run, reference, identity, extractor, config, distance, int(passed), int(total),
             json.dumps([dict(c) for c in checks], sort_keys=True), json.dumps(dict(provenance), sort_keys=True),
             finished or utcnow()))

    def latest_for(self, identity: str) -> list[dict[str, Any]]:
        """The newest result of each extractor on the reference set ``identity``, the most
        checks passed first (then the extractor's reference)."""
        return _decoded(dict_rows(self._h.conn.execute(
            """SELECT * FROM sanity_checks WHERE id IN (SELECT max(id) FROM sanity_checks WHERE identity = ?
                 GROUP BY extractor) ORDER BY passed DESC, extractor""", (identity,))))
