"""The ``evaluations`` table: one row per metric value measured on this site by
``synthmed evaluate`` (:mod:`synthmed.registry.measuring.evaluate`), keyed like test runs by
upstream, id, version and package sha256; ``key`` is the comparability key (a hash of
everything in ``provenance`` that is not a value), ``run`` groups the metrics of one
evaluation."""

from __future__ import annotations

import json
from typing import Any, Mapping

from ..stamps import utcnow
from .base import Handle, dict_rows

DDL = (
    """CREATE TABLE IF NOT EXISTS evaluations (
        id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, upstream TEXT NOT NULL,
        model_id TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL, metric TEXT NOT NULL,
        value REAL NOT NULL, better TEXT NOT NULL, key TEXT NOT NULL, reference TEXT NOT NULL,
        extractor TEXT NOT NULL, params TEXT NOT NULL, provenance TEXT NOT NULL, finished TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS evaluations_key ON evaluations (metric, key, upstream, model_id, version, sha256, id)",
    "CREATE INDEX IF NOT EXISTS evaluations_model ON evaluations (upstream, model_id, version, sha256, id)",
)

#: an evaluation row joined with the served (latest) version it was measured for
_SERVED = """FROM evaluations e JOIN models m ON m.upstream = e.upstream AND m.id = e.model_id
                 AND m.version = e.version AND m.sha256 = e.sha256 AND m.is_latest = 1"""


class EvaluationStore:
    """Values measured on this site (``catalog.evaluations``)."""

    def __init__(self, handle: Handle) -> None:
        self._h = handle

    def record_evaluation(self, *, run: str, upstream: str, model_id: str, version: str, sha256: str,
                          values: Mapping[str, tuple[float, str]], key: str, reference: str, extractor: str,
                          params: Mapping[str, Any], provenance: Mapping[str, Any], finished: str | None = None) -> None:
        """Store the metric values (name -> (value, better)) of one evaluation run."""
        self._h.writable()
        when = finished or utcnow()
        self._h.conn.executemany(
            """INSERT INTO evaluations (run, upstream, model_id, version, sha256, metric, value, better, key,
               reference, extractor, params, provenance, finished) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            [(run, upstream, model_id, version, sha256, name.lower(), float(v), better, key, reference, extractor,
              json.dumps(dict(params), sort_keys=True), json.dumps(dict(provenance), sort_keys=True), when)
             for name, (v, better) in values.items()])

    def evaluations_of(self, upstream: str, model_id: str, version: str, sha256: str | None) -> list[dict[str, Any]]:
        """The latest value of each (metric, comparability key, params) measured for one
        upstream's version with package ``sha256``."""
        if not sha256:
            return []
        return dict_rows(self._h.conn.execute(
            """SELECT * FROM evaluations WHERE id IN (SELECT max(id) FROM evaluations
                 WHERE upstream = ? AND model_id = ? AND version = ? AND sha256 = ?
                 GROUP BY metric, key, params) ORDER BY key, metric, params""", (upstream, model_id, version, sha256)))

    def evaluation_keys(self, metric: str) -> list[dict[str, Any]]:
        """Comparability keys holding ``metric`` values of models the catalog serves, the
        most populated first: ``key``, ``models`` (count), ``reference``, ``extractor``, ``last``."""
        return dict_rows(self._h.conn.execute(
            f"""SELECT e.key, count(DISTINCT e.upstream || '/' || e.model_id) AS models, max(e.reference) AS reference,
                      max(e.extractor) AS extractor, max(e.finished) AS last
               {_SERVED}
               WHERE e.metric = ? GROUP BY e.key ORDER BY models DESC, last DESC""", (metric.lower(),)))

    def evaluation_summary(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest evaluation run of each served version and comparability key: fd,
        precision and recall, with reference, extractor and key (for ``synthmed status``)."""
        return dict_rows(self._h.conn.execute(
            f"""SELECT e.upstream, e.model_id, e.version, e.key, e.reference, e.extractor, e.finished,
                      max(CASE WHEN e.metric = 'fd' THEN e.value END) AS fd,
                      max(CASE WHEN e.metric = 'precision' THEN e.value END) AS precision,
                      max(CASE WHEN e.metric = 'recall' THEN e.value END) AS recall
               {_SERVED}
               WHERE e.run IN (SELECT run FROM evaluations WHERE id IN (
                 SELECT max(id) FROM evaluations GROUP BY upstream, model_id, version, sha256, key))
               GROUP BY e.run ORDER BY e.key, fd LIMIT ?""", (limit,)))

    def measured_values(self, metric: str, key: str) -> dict[tuple[str, str], dict[str, Any]]:
        """(upstream, id) -> the latest row of ``metric`` under comparability ``key`` for the
        served (latest) version of each model; with several parameter sets, the best value."""
        rows = dict_rows(self._h.conn.execute(
            f"""SELECT e.* {_SERVED}
               WHERE e.id IN (SELECT max(id) FROM evaluations WHERE metric = ? AND key = ?
                              GROUP BY upstream, model_id, version, sha256, params)""", (metric.lower(), key)))
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            k = (row["upstream"], row["model_id"])
            old = out.get(k)
            sign = 1 if row["better"] == "lower" else -1
            if old is None or sign * row["value"] < sign * old["value"]:
                out[k] = row
        return out
