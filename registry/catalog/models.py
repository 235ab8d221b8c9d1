"""The records' tables: ``models`` (one row per upstream + id + version, with the record
JSON and which version is served), ``models_fts`` (FTS5 over the served rows: the id and
its parts, title, summary, description, modality, anatomy, generates, tags and
architecture), ``facets`` and ``metrics`` (filters and ranking), and ``record_problems``
(records a sync skipped, with the reason). Reading them gives :class:`CatalogEntry`
objects: listed, resolved from a reference (:mod:`.resolve`) or searched (:mod:`.search`).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping, Sequence

from ..errors import CatalogError
from ..records import Record
from .. import vocabulary
from ..stamps import utcnow
from .base import Handle, dict_rows, refresh_latest
from .entry import CatalogEntry
from .resolve import resolve_ref
from .search import WALK_FROM, Filters, ScoreOrder, candidates_query, fts_query, page_query, unvalued_query, walk_query

FTS_COLUMNS = ("ident", "title", "summary", "description", "modality", "anatomy", "generates", "tags",
               "architecture")
LIST_FIELDS = ("modality", "anatomy", "generates", "tags")


def _fts_ddl() -> tuple[str, ...]:
    cols = ", ".join(FTS_COLUMNS)
    new_cols = ", ".join(f"new.{c}" for c in FTS_COLUMNS)
    old_cols = ", ".join(f"old.{c}" for c in FTS_COLUMNS)
    delete = f"INSERT INTO models_fts (models_fts, rowid, {cols}) VALUES ('delete', old.pk, {old_cols}); END"
    insert = f"INSERT INTO models_fts (rowid, {cols}) VALUES (new.pk, {new_cols}); END"
    return (
        # a partial external-content index: only the rows search serves (is_latest = 1)
        f"CREATE VIRTUAL TABLE IF NOT EXISTS models_fts USING fts5({cols}, content='models', "
        "content_rowid='pk', tokenize='unicode61 remove_diacritics 2')",
        f"""CREATE TRIGGER IF NOT EXISTS models_fts_ai AFTER INSERT ON models
        WHEN new.is_latest = 1 BEGIN
          {insert}""",
        f"""CREATE TRIGGER IF NOT EXISTS models_fts_ad AFTER DELETE ON models
        WHEN old.is_latest = 1 BEGIN
          {delete}""",
        f"""CREATE TRIGGER IF NOT EXISTS models_fts_au_old AFTER UPDATE ON models
        WHEN old.is_latest = 1 BEGIN
          {delete}""",
        f"""CREATE TRIGGER IF NOT EXISTS models_fts_au_new AFTER UPDATE ON models
        WHEN new.is_latest = 1 BEGIN
          {insert}""",
    )


DDL = (
    """CREATE TABLE IF NOT EXISTS models (
        pk INTEGER PRIMARY KEY, upstream TEXT NOT NULL, id TEXT NOT NULL, version TEXT NOT NULL,
        path TEXT NOT NULL, commit_sha TEXT NOT NULL, status TEXT NOT NULL, status_reason TEXT,
        is_latest INTEGER NOT NULL DEFAULT 0, verified INTEGER NOT NULL, sha256 TEXT, size INTEGER,
        license TEXT, title TEXT, summary TEXT, description TEXT, modality TEXT, anatomy TEXT,
        generates TEXT, tags TEXT, architecture TEXT, record TEXT NOT NULL,
        ident TEXT NOT NULL DEFAULT '', UNIQUE (upstream, id, version))""",
    "CREATE INDEX IF NOT EXISTS models_id ON models (id)",
    "CREATE INDEX IF NOT EXISTS models_latest ON models (is_latest, id)",
    "CREATE INDEX IF NOT EXISTS models_sha ON models (sha256)",
    "CREATE INDEX IF NOT EXISTS models_path ON models (upstream, path)",
    "CREATE TABLE IF NOT EXISTS facets (model INTEGER NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS facets_fv ON facets (field, value, model)",
    "CREATE INDEX IF NOT EXISTS facets_model ON facets (model)",
    # lowest / highest: this row holds its model's lowest / highest value of the metric and
    # source (one row each), set when the record is written, so a ranked search walks them
    """CREATE TABLE IF NOT EXISTS metrics (
        model INTEGER NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, better TEXT NOT NULL,
        source TEXT, preferred INTEGER NOT NULL DEFAULT 0, lowest INTEGER NOT NULL DEFAULT 0,
        highest INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS metrics_name ON metrics (name, preferred, model)",
    "CREATE INDEX IF NOT EXISTS metrics_model ON metrics (model)",
    # search --rank over a few matches reads one model's value of a source with one probe of this one
    "CREATE INDEX IF NOT EXISTS metrics_rank ON metrics (model, name, source, value)",
    # and over many matches walks the values best first (search.walk_query)
    "CREATE INDEX IF NOT EXISTS metrics_lowest ON metrics (name, source, value, model) WHERE lowest = 1",
    "CREATE INDEX IF NOT EXISTS metrics_highest ON metrics (name, source, value DESC, model) WHERE highest = 1",
    # how many values of each metric every source and direction has (every stored version counts):
    # ranking picks one source of reported values per metric (registry/measuring/ranking.py) with one
    # probe; kept by these triggers on every write
    """CREATE TABLE IF NOT EXISTS metric_counts (
        name TEXT NOT NULL, source TEXT NOT NULL, better TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (name, source, better)) WITHOUT ROWID""",
    """CREATE TRIGGER IF NOT EXISTS metric_counts_ai AFTER INSERT ON metrics BEGIN
        INSERT INTO metric_counts (name, source, better, n) VALUES (new.name, coalesce(new.source, 'reported'),
          new.better, 1) ON CONFLICT (name, source, better) DO UPDATE SET n = n + 1; END""",
    """CREATE TRIGGER IF NOT EXISTS metric_counts_ad AFTER DELETE ON metrics BEGIN
        UPDATE metric_counts SET n = n - 1 WHERE name = old.name AND source = coalesce(old.source, 'reported')
          AND better = old.better; END""",
    """CREATE TABLE IF NOT EXISTS record_problems (
        upstream TEXT NOT NULL, path TEXT NOT NULL, commit_sha TEXT, reason TEXT NOT NULL,
        seen_at TEXT, PRIMARY KEY (upstream, path))""",
) + _fts_ddl()

#: what a row of the models table needs, joined with its upstream and artefact
_ENTRY_SELECT = """SELECT m.pk, m.upstream, m.id, m.version, m.path, u.accepted_commit AS commit_sha, m.status,
    m.status_reason, m.verified, m.sha256, m.record, u.subfolder, u.priority, u.ord,
    a.state AS artefact_state"""
_ENTRY_FROM = """ FROM models m JOIN upstreams u ON u.name = m.upstream
    LEFT JOIN artefacts a ON a.sha256 = m.sha256"""


def id_terms(model_id: str) -> str:
    """What search indexes of a model id: the id, its parts split on ``-``, ``_`` and ``.``,
    and the parts joined (``ihc-patch-dcgan ihc patch dcgan ihcpatchdcgan``), so that a
    query for the id, one of its parts or the id written without separators finds it."""
    parts = [p for p in re.split(r"[-_.]+", model_id) if p]
    return " ".join(dict.fromkeys([model_id, *parts, "".join(parts)]))


def _joined(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _arch_text(data: Mapping[str, Any]) -> str:
    arch = data.get("architecture") or {}
    return " ".join(str(arch[k]) for k in ("family", "name") if arch.get(k))


def _list_text(field: str, data: Mapping[str, Any]) -> str:
    """The full-text of a list field: modality and anatomy with the vocabulary's codes and
    names beside the record's own words (:func:`synthmed.registry.vocabulary.search_text`)."""
    if field in ("modality", "anatomy"):
        return vocabulary.search_text(field, data.get(field) or [])
    return _joined(data.get(field))


def _facets(upstream: str, data: Mapping[str, Any]) -> list[tuple[str, str]]:
    facets: set[tuple[str, str]] = set()
    facets.update(("modality", v.lower()) for v in vocabulary.facet_modalities(data.get("modality") or []))
    facets.update(("anatomy", v.lower()) for v in vocabulary.facet_anatomy(data.get("anatomy") or []))
    arch = data.get("architecture") or {}
    facets.update(("architecture", str(arch[k]).lower()) for k in ("family", "name") if arch.get(k))
    if data.get("license"):
        facets.add(("license", str(data["license"]).lower()))
    facets.add(("upstream", upstream))
    return sorted(facets)


def refresh_terms(conn: sqlite3.Connection, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> None:
    """Derive the modality and anatomy facets and full-text of stored rows again from their
    records (a catalog migration: the vocabulary changed how they are indexed)."""
    for pk, data in rows:
        conn.execute("DELETE FROM facets WHERE model = ? AND field IN ('modality', 'anatomy')", (pk,))
        conn.executemany("INSERT INTO facets (model, field, value) VALUES (?,?,?)",
                         [(pk, f, v) for f, v in _facets("", data) if f in ("modality", "anatomy")])
        # in two steps, so exactly one full-text trigger fires in each (both of an update
        # of a served row would fire, in an order SQLite does not promise): out, then back in
        latest = conn.execute("SELECT is_latest FROM models WHERE pk = ?", (pk,)).fetchone()[0]
        conn.execute("UPDATE models SET is_latest = 0 WHERE pk = ?", (pk,))
        conn.execute("UPDATE models SET modality = ?, anatomy = ?, is_latest = ? WHERE pk = ?",
                     (_list_text("modality", data), _list_text("anatomy", data), latest, pk))


def _metric_rows(pk: int, data: Mapping[str, Any]) -> list[list[Any]]:
    """The ``metrics`` rows of one record; ``preferred`` marks one value per name (a
    measured one over a reported one)."""
    best: dict[str, tuple[int, int]] = {}
    rows: list[list[Any]] = []
    for m in data.get("metrics") or []:
        try:
            value = float(m["value"])
            name = str(m["name"]).lower()
        except (KeyError, TypeError, ValueError):
            continue
        better = "lower" if m.get("better") == "lower" else "higher"
        src = str(m.get("source", "reported"))
        rows.append([pk, name, value, better, src, 0])
        rank = 1 if src == "measured" else 0  # a measured value is preferred over a reported one
        if name not in best or rank > best[name][0]:
            best[name] = (rank, len(rows) - 1)
    for _, idx in best.values():
        rows[idx][5] = 1
    mark_extremes(rows)
    return rows


def mark_extremes(rows: Sequence[list[Any]]) -> None:
    """Set the ``lowest`` and ``highest`` flags of one model's ``metrics`` rows (``[model,
    name, value, better, source, preferred]``, extended in place): for each name and source,
    the first row holding the lowest value and the first holding the highest."""
    low: dict[tuple[Any, Any, Any], int] = {}
    high: dict[tuple[Any, Any, Any], int] = {}
    for i, row in enumerate(rows):
        k = (row[0], row[1], row[4])
        if k not in low or row[2] < rows[low[k]][2]:
            low[k] = i
        if k not in high or row[2] > rows[high[k]][2]:
            high[k] = i
    lows, highs = set(low.values()), set(high.values())
    for i, row in enumerate(rows):
        del row[6:]
        row.extend([1 if i in lows else 0, 1 if i in highs else 0])


class ModelStore:
    """The records of every upstream, what is served of them and the search over them
    (``catalog.models``)."""

    def __init__(self, handle: Handle) -> None:
        self._h = handle
        self._repo_paths: dict[str, Path] = {}

    @property
    def path(self) -> Path:
        """The catalog file (named in resolution errors)."""
        return self._h.path

    # -- writing --------------------------------------------------------------------------

    def _delete_pks(self, pks: Sequence[int]) -> None:
        for i in range(0, len(pks), 500):
            chunk = list(pks[i:i + 500])
            marks = ",".join("?" * len(chunk))
            self._h.conn.execute(f"DELETE FROM facets WHERE model IN ({marks})", chunk)
            self._h.conn.execute(f"DELETE FROM metrics WHERE model IN ({marks})", chunk)
            self._h.conn.execute(f"DELETE FROM models WHERE pk IN ({marks})", chunk)

    def clear_upstream_models(self, upstream: str) -> int:
        """Remove every record and record problem of ``upstream``; returns the number of records removed."""
        self._h.writable()
        pks = [r[0] for r in self._h.conn.execute("SELECT pk FROM models WHERE upstream = ?", (upstream,))]
        self._delete_pks(pks)
        self._h.conn.execute("DELETE FROM record_problems WHERE upstream = ?", (upstream,))
        return len(pks)

    def upsert_record(self, upstream: str, path: str, record: Record, commit: str) -> None:
        """Store one valid record (replacing the same upstream/id/version or path)."""
        self._h.writable()
        conn = self._h.conn
        data = record.data
        old = [r[0] for r in conn.execute(
            "SELECT pk FROM models WHERE upstream = ? AND id = ? AND version = ? "
            "UNION SELECT pk FROM models WHERE upstream = ? AND path = ?",
            (upstream, record.id, record.version, upstream, path))]
        self._delete_pks(old)
        cur = conn.execute(
            """INSERT INTO models (upstream, id, version, path, commit_sha, status, status_reason,
                verified, sha256, size, license, title, summary, description, modality, anatomy,
                generates, tags, architecture, record, ident)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            (upstream, record.id, record.version, path, commit, record.status, data.get("status_reason"),
             1 if record.verified else 0, record.sha256, record.size, data.get("license"),
             data.get("title", ""), data.get("summary", ""), data.get("description", ""),
             *(_list_text(f, data) for f in LIST_FIELDS), _arch_text(data),
             json.dumps(data, sort_keys=True, separators=(",", ":")), id_terms(record.id)),
        )
        pk = int(cur.lastrowid or 0)
        conn.executemany("INSERT INTO facets (model, field, value) VALUES (?,?,?)",
                         [(pk, f, v) for f, v in _facets(upstream, data)])
        conn.executemany("INSERT INTO metrics (model, name, value, better, source, preferred, lowest, highest) "
                         "VALUES (?,?,?,?,?,?,?,?)",
                         _metric_rows(pk, data))
        conn.execute("DELETE FROM record_problems WHERE upstream = ? AND path = ?", (upstream, path))

    def delete_path(self, upstream: str, path: str) -> str | None:
        """Remove the record stored from ``path``; returns its id, if there was one."""
        self._h.writable()
        rows = self._h.conn.execute("SELECT pk, id FROM models WHERE upstream = ? AND path = ?",
                                    (upstream, path)).fetchall()
        self._delete_pks([r[0] for r in rows])
        self._h.conn.execute("DELETE FROM record_problems WHERE upstream = ? AND path = ?", (upstream, path))
        return str(rows[0][1]) if rows else None

    def id_at_path(self, upstream: str, path: str) -> str | None:
        row = self._h.conn.execute("SELECT id FROM models WHERE upstream = ? AND path = ?",
                                   (upstream, path)).fetchone()
        return str(row[0]) if row else None

    def stored_commit(self, upstream: str, path: str) -> str | None:
        """The commit the record stored from ``path`` was accepted at, if one is stored."""
        row = self._h.conn.execute("SELECT commit_sha FROM models WHERE upstream = ? AND path = ?",
                                   (upstream, path)).fetchone()
        return str(row[0]) if row else None

    def stored_record(self, upstream: str, model_id: str, version: str) -> dict[str, Any] | None:
        """The record JSON stored for one upstream/id/version, if any."""
        row = self._h.conn.execute("SELECT record FROM models WHERE upstream = ? AND id = ? AND version = ?",
                                   (upstream, model_id, version)).fetchone()
        return json.loads(row[0]) if row else None

    def set_problem(self, upstream: str, path: str, commit: str, reason: str) -> None:
        self._h.writable()
        self._h.conn.execute(
            "INSERT OR REPLACE INTO record_problems (upstream, path, commit_sha, reason, seen_at) VALUES (?,?,?,?,?)",
            (upstream, path, commit, reason, utcnow()))

    def problem_paths(self, upstream: str, under: str) -> set[str]:
        """The paths under ``under`` (a folder, e.g. ``datasets/``) whose records were skipped."""
        rows = self._h.conn.execute("SELECT path FROM record_problems WHERE upstream = ? AND substr(path, 1, ?) = ?",
                                    (upstream, len(under), under))
        return {str(r[0]) for r in rows}

    def clear_problem(self, upstream: str, path: str) -> None:
        """Forget why the record at ``path`` was skipped (it applied now)."""
        self._h.writable()
        self._h.conn.execute("DELETE FROM record_problems WHERE upstream = ? AND path = ?", (upstream, path))

    def problems(self, upstream: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT upstream, path, commit_sha, reason, seen_at FROM record_problems"
        args: tuple[Any, ...] = ()
        if upstream:
            sql += " WHERE upstream = ?"
            args = (upstream,)
        return dict_rows(self._h.conn.execute(sql + " ORDER BY upstream, path", args))

    def refresh_latest(self, upstream: str, ids: Iterable[str]) -> None:
        """Mark the latest non-yanked version of each id (semver order) as ``is_latest``."""
        refresh_latest(self._h, "models", upstream, ids)

    def needed_blobs(self) -> set[str]:
        """sha256 of every blob a non-yanked record of any upstream needs."""
        return {r[0] for r in self._h.conn.execute(
            "SELECT DISTINCT sha256 FROM models WHERE status != 'yanked' AND sha256 IS NOT NULL")}

    # -- reading --------------------------------------------------------------------------

    def _entry(self, row: sqlite3.Row | tuple[Any, ...], cols: Sequence[str], score: float | None = None) -> CatalogEntry:
        r = dict(zip(cols, row))
        state = r["artefact_state"] or "missing"
        if not r["verified"]:
            state = "unverified"
        upstream = r["upstream"]
        repo = self._repo_paths.get(upstream)
        if repo is None:
            repo = self._repo_paths[upstream] = self._h.repo_path(upstream)
        return CatalogEntry(
            upstream=upstream, id=r["id"], version=r["version"],
            record=Record(data=json.loads(r["record"]), path=f"{upstream}:{r['path']}@{str(r['commit_sha'])[:12]}"),
            index_repo=repo, index_commit=r["commit_sha"],
            index_subfolder=r["subfolder"] or "", artefact_state=state, status=r["status"],
            status_reason=r["status_reason"], priority=int(r["priority"]), path=r["path"],
            score=score if score is None else float(score),
        )

    def _entries(self, sql: str, args: Sequence[Any]) -> list[CatalogEntry]:
        cur = self._h.conn.execute(sql, tuple(args))
        cols = [c[0] for c in cur.description]
        has_score = "score" in cols
        return [self._entry(row, cols, row[cols.index("score")] if has_score else None) for row in cur.fetchall()]

    def rows_for_id(self, model_id: str, upstream: str | None = None) -> list[CatalogEntry]:
        """Every version of one id (of one upstream, or of all), by priority then upstream."""
        sql = _ENTRY_SELECT + _ENTRY_FROM + " WHERE m.id = ?"
        args: list[Any] = [model_id]
        if upstream:
            sql += " AND m.upstream = ?"
            args.append(upstream)
        return self._entries(sql + " ORDER BY u.priority, u.ord, u.name", args)

    def model_ids(self) -> list[str]:
        """Every model id of every upstream (any version), sorted."""
        return [r[0] for r in self._h.conn.execute("SELECT DISTINCT id FROM models ORDER BY id")]

    def upstream_names(self) -> list[str]:
        """The upstreams whose records these are, by priority (named when a reference is not found)."""
        return [r[0] for r in self._h.conn.execute("SELECT name FROM upstreams ORDER BY priority, ord, name")]

    def resolve(self, ref: str, *, allow_yanked: bool = False) -> CatalogEntry:
        """``id``, ``id@1.0.0``, ``upstream/id``, ``upstream/id@1.0.0`` -> one servable entry
        (or, with ``allow_yanked``, a yanked one, for showing it: see :func:`resolve_ref`)."""
        return resolve_ref(self, ref, allow_yanked=allow_yanked)

    def list_models(self, *, all_versions: bool = False) -> list[CatalogEntry]:
        """The latest non-yanked version of every model of every upstream (or every version)."""
        where = "" if all_versions else " WHERE m.is_latest = 1"
        return self._entries(_ENTRY_SELECT + _ENTRY_FROM + where + " ORDER BY m.id, u.priority, u.ord, m.version", ())

    def count_models(self) -> dict[str, int]:
        row = self._h.conn.execute(
            """SELECT count(*), sum(is_latest), sum(status = 'yanked'), sum(verified = 0) FROM models""").fetchone()
        return {"versions": row[0] or 0, "models": row[1] or 0, "yanked": row[2] or 0, "unverified": row[3] or 0}

    def search(self, query: str = "", *, modality: str | None = None, anatomy: str | None = None,
               architecture: str | None = None, license: str | None = None, order: ScoreOrder | None = None,
               limit: int = 50, upstream: str | None = None, runnable: bool = False,
               code_upstreams: Collection[str] | None = None,
               held_blobs: Collection[str] | None = None) -> list[CatalogEntry]:
        """Find the latest non-yanked versions matching a free-text query and filters.

        ``runnable=True`` keeps only what a site can run now: a pinned record, of an
        upstream in ``code_upstreams`` (those whose code the site runs, ``allow_code``; all
        when None), whose package is in the store: its sha256 in ``held_blobs`` (the
        store's blobs) and not marked corrupt, or, without ``held_blobs``, marked verified
        in the artefacts table. (:meth:`synthmed.Site.search` fills both from the site.)

        The query is quoted before it reaches FTS5 (see :func:`fts_query`); filters match
        case-insensitively (``architecture`` matches the family or the name). With
        ``order``, results are ordered by its values, best first, models without one last
        (a ranked search: :func:`synthmed.registry.measuring.ranking.search` chooses the values).
        """
        match = fts_query(query or "")
        if query and query.strip() and not match:
            return []  # only punctuation: nothing to match
        # filters in the vocabulary's terms ("mammography", "MMG" and "MG" are one modality)
        modality = (vocabulary.modality_code(modality) or modality) if modality else modality
        anatomy = (vocabulary.anatomy_term(anatomy) or anatomy) if anatomy else anatomy
        filters = Filters({"modality": modality, "anatomy": anatomy, "architecture": architecture,
                           "license": license, "upstream": upstream}, runnable, code_upstreams, held_blobs)
        try:
            page = self._page(match, filters, order, limit)
        except sqlite3.OperationalError as exc:  # pragma: no cover - a bug if it happens
            raise CatalogError(f"search failed for {query!r}: {exc}", hint="report this as a bug") from exc
        if not page:
            return []
        pks = [p[0] for p in page]
        cur = self._h.conn.execute(
            _ENTRY_SELECT + _ENTRY_FROM + f" WHERE m.pk IN ({','.join('?' * len(pks))})", pks)
        cols = [c[0] for c in cur.description]
        rows = {row[0]: row for row in cur.fetchall()}
        return [self._entry(rows[pk], cols, score) for pk, score in page if pk in rows]

    def _page(self, match: str, filters: Filters, order: ScoreOrder | None, limit: int) -> list[tuple[Any, Any]]:
        """``(row id, score)`` of one ordered page. A search ranked by the records' own values
        over many rows walks the values best first (:func:`walk_query`), then lists the
        rows without a value; any other sorts what matches (:func:`page_query`)."""
        conn = self._h.conn
        if order is None or order.values is not None or not self._many(match, filters):
            sql, args = page_query(match, filters, order, limit)
            return [tuple(r) for r in conn.execute(sql, tuple(args))]
        sql, args = walk_query(match, filters, order, limit)
        page = [tuple(r) for r in conn.execute(sql, tuple(args))]
        if len(page) < limit:
            sql, args = unvalued_query(match, filters, order, limit - len(page))
            page += [tuple(r) for r in conn.execute(sql, tuple(args))]
        return page

    def _many(self, match: str, filters: Filters) -> bool:
        """Whether a ranked search would sort at least :data:`WALK_FROM` rows."""
        probe = candidates_query(match, filters)
        if probe is None:
            return True
        return int(self._h.conn.execute(probe[0], tuple(probe[1])).fetchone()[0] or 0) >= WALK_FROM

    # -- the records' own metric values (read by registry/measuring/ranking.py) ------------------------

    def metric_sources(self, metric: str) -> list[tuple[str, str, int]]:
        """``(source, better, count)`` of the values records carry for ``metric`` (every stored
        version counts; one probe of ``metric_counts``, which triggers keep on every write)."""
        rows = self._h.conn.execute("SELECT source, better, n FROM metric_counts WHERE name = ? AND n > 0",
                                    (metric,)).fetchall()
        return [(str(s), str(b), int(c)) for s, b, c in rows]

    def reported_values(self, metric: str, source: str | None, better: str | None) -> dict[tuple[str, str], float]:
        """(upstream, id) -> the best value of ``metric`` with ``source`` the served version's record carries."""
        agg = "min" if better == "lower" else "max"
        rows = self._h.conn.execute(
            f"""SELECT m.upstream, m.id, {agg}(r.value) FROM metrics r JOIN models m ON m.pk = r.model
                WHERE r.name = ? AND coalesce(r.source, 'reported') = ? AND m.is_latest = 1 GROUP BY m.upstream, m.id""",
            (metric, source)).fetchall()
        return {(str(u), str(i)): float(v) for u, i, v in rows}
