"""The catalog's SQLite layout, assembled from each store's own tables (its module's
``DDL``), and the migrations between layout generations (``PRAGMA user_version``).

A new table is a new store module with its ``DDL``, listed in :data:`STORES`; a change to
an existing table bumps :data:`GENERATION` with a step in :func:`upgrade`."""

from __future__ import annotations

import json
import logging
import sqlite3

from . import artefacts, audits, datasets, evaluations, federation, jobs, models, sanity, tests
from .models import FTS_COLUMNS, id_terms, refresh_terms

log = logging.getLogger(__name__)

#: layout generation written to PRAGMA user_version; bump it with a migration step in
#: :func:`upgrade`. 1: first layout (FTS over every row); 2: FTS over the served
#: (latest, non-yanked) rows only, ``upstream`` facet; 3: ``accepted_versions`` (the bound
#: immutable fields of every version ever accepted), ``tests`` keyed by upstream and sha256;
#: 4: ``models.ident`` (the id, its parts split on - _ . and the parts joined) indexed by FTS;
#: 5: ``evaluations`` (values measured on this site by ``synthmed evaluate``, each with its
#: provenance and comparability key); 6: ``audits`` (memorisation audits run on this site, each
#: with its verdict, numbers and provenance); 7: ranking kept at write time: ``metric_counts``
#: (values per metric, source and direction, kept by triggers) and each model's
#: ``lowest``/``highest`` value of a metric and source flagged in ``metrics`` (a ranked search
#: walks them in order); 8: modality and anatomy facets and full-text in the controlled
#: vocabulary (registry/vocabulary.py), derived again from each stored record; 9: published
#: datasets (:mod:`.datasets`: ``datasets``, ``datasets_fts``, ``dataset_accepted``,
#: ``dataset_sync``), filled by the next sync of each upstream; 10: ``sanity_checks``
#: (extractor sanity checks on this site's reference sets; a new table only, so the step is the
#: ``CREATE TABLE IF NOT EXISTS`` every upgrade runs)
GENERATION = 10

#: the store modules whose ``DDL`` makes up the layout, in the order it is created
STORES = (federation, models, artefacts, tests, jobs, evaluations, audits, datasets, sanity)


def generation(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def create_tables(conn: sqlite3.Connection) -> None:
    for store in STORES:
        for stmt in store.DDL:
            conn.execute(stmt)


def drop_tables(conn: sqlite3.Connection) -> None:
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
        "AND name NOT LIKE 'models_fts_%' AND name NOT LIKE 'datasets_fts_%'")]
    for trig in [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]:
        conn.execute(f'DROP TRIGGER IF EXISTS "{trig}"')
    for name in names:
        conn.execute(f'DROP TABLE IF EXISTS "{name}"')
def _attribute_tests(conn: sqlite3.Connection, where: str) -> None:
    """Generation 2 -> 3: key each test run by upstream and package sha256. A run that
    names its upstream takes the sha256 that upstream holds for the version; a run without
    one is attached only when exactly one upstream holds the version; every other run is
    dropped rather than shown for a package it may not have tested."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(tests)")}
    if not cols:
        return
    if "upstream" not in cols:
        conn.execute("ALTER TABLE tests ADD COLUMN upstream TEXT")
    if "sha256" not in cols:
        conn.execute("ALTER TABLE tests ADD COLUMN sha256 TEXT")
    conn.execute("""UPDATE tests SET upstream = (SELECT m.upstream FROM models m
                      WHERE m.id = tests.model_id AND m.version = tests.version)
                    WHERE upstream IS NULL AND (SELECT count(*) FROM models m
                      WHERE m.id = tests.model_id AND m.version = tests.version) = 1""")
    conn.execute("""UPDATE tests SET sha256 = (SELECT m.sha256 FROM models m WHERE m.upstream = tests.upstream
                      AND m.id = tests.model_id AND m.version = tests.version)
                    WHERE sha256 IS NULL AND upstream IS NOT NULL""")
    dropped = conn.execute("DELETE FROM tests WHERE upstream IS NULL OR sha256 IS NULL").rowcount
    if dropped:
        log.warning("%s: %d test run(s) could not be tied to one upstream's package and were dropped", where, dropped)


def _drop_fts(conn: sqlite3.Connection) -> None:
    """Drop the FTS index and its triggers (those of every generation so far)."""
    for trig in ("models_ai", "models_ad", "models_au", "models_fts_ai", "models_fts_ad", "models_fts_au_old",
                 "models_fts_au_new"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trig}")
    conn.execute("DROP TABLE IF EXISTS models_fts")


def _add_ident(conn: sqlite3.Connection) -> None:
    """Generation 3 -> 4: the ``ident`` column, filled from each row's id."""
    if "ident" not in {r[1] for r in conn.execute("PRAGMA table_info(models)")}:
        conn.execute("ALTER TABLE models ADD COLUMN ident TEXT NOT NULL DEFAULT ''")
    ids = [r[0] for r in conn.execute("SELECT DISTINCT id FROM models")]
    conn.executemany("UPDATE models SET ident = ? WHERE id = ?", [(id_terms(i), i) for i in ids])


def _flag_extremes(conn: sqlite3.Connection) -> None:
    """Generation 6 -> 7: the ``lowest``/``highest`` flags of every model's metric values
    (the index counting sources is replaced by ``metric_counts``, filled after the tables)."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(metrics)")}
    if not cols:
        return
    for col in ("lowest", "highest"):
        if col not in cols:
            conn.execute(f"ALTER TABLE metrics ADD COLUMN {col} INTEGER NOT NULL DEFAULT 0")
    conn.execute("DROP INDEX IF EXISTS metrics_source")
    rows = [[m, n, v, "", s, 0, rowid] for rowid, m, n, v, s in conn.execute(
        "SELECT rowid, model, name, value, source FROM metrics ORDER BY model, rowid")]
    by_model: dict[int, list[list[object]]] = {}
    for row in rows:
        by_model.setdefault(int(row[0]), []).append(row)
    updates: list[tuple[object, object, object]] = []
    for group in by_model.values():
        rowids = [r[6] for r in group]
        models.mark_extremes(group)
        updates.extend((r[6], r[7], rowid) for r, rowid in zip(group, rowids))
    conn.executemany("UPDATE metrics SET lowest = ?, highest = ? WHERE rowid = ?", updates)


def _count_metrics(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM metric_counts")
    conn.execute("""INSERT INTO metric_counts (name, source, better, n) SELECT name, coalesce(source, 'reported'),
                    better, count(*) FROM metrics GROUP BY 1, 2, 3""")


def upgrade(conn: sqlite3.Connection, gen: int, where: str) -> None:
    """From generation ``gen`` (0: an empty file) to :data:`GENERATION`, inside the caller's transaction."""
    old = gen in (1, 2, 3) and bool(conn.execute("PRAGMA table_info(models)").fetchall())
    if gen in (1, 2):
        _attribute_tests(conn, where)
        # accepted_versions starts empty: bound_commit (the commit through which it is
        # complete) stays NULL, so the next sync of each upstream walks its whole history
        if "bound_commit" not in {r[1] for r in conn.execute("PRAGMA table_info(upstreams)")}:
            conn.execute("ALTER TABLE upstreams ADD COLUMN bound_commit TEXT")
    if old:
        log.info("migrating the catalog %s from generation %d to %d", where, gen, GENERATION)
        # generation 1 indexed every row; 2 and 3 the served rows without the id: the index
        # is made again over the served rows (generation 4's columns)
        _drop_fts(conn)
        _add_ident(conn)
    if 0 < gen < 7:
        _flag_extremes(conn)
    create_tables(conn)
    if 0 < gen < 7:
        _count_metrics(conn)
    if old:
        cols = ", ".join(FTS_COLUMNS)
        conn.execute(f"INSERT INTO models_fts (rowid, {cols}) SELECT pk, {cols} FROM models WHERE is_latest = 1")
    if gen == 1:  # the upstream facet came with generation 2
        conn.execute("INSERT INTO facets (model, field, value) SELECT pk, 'upstream', upstream FROM models")
    if 0 < gen < 8:
        _vocabulary_terms(conn)
    conn.execute(f"PRAGMA user_version={GENERATION}")


def _vocabulary_terms(conn: sqlite3.Connection) -> None:
    """Generation 7 -> 8: each stored record's modality and anatomy facets and full-text
    derived again in the controlled vocabulary (the records themselves are not touched)."""
    rows = conn.execute("SELECT pk, record FROM models").fetchall()
    refresh_terms(conn, [(int(pk), json.loads(text)) for pk, text in rows])
