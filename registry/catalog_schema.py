"""The catalog's SQLite layout: tables, the partial FTS5 index and its triggers, and
migrations between layout generations (``PRAGMA user_version``)."""

from __future__ import annotations

import logging
import re
import sqlite3

log = logging.getLogger(__name__)

#: layout generation written to PRAGMA user_version; bump it with a migration step in
#: :meth:`Catalog.migrate`. 1: first layout (FTS over every row); 2: FTS over the served
#: (latest, non-yanked) rows only, ``upstream`` facet; 3: ``accepted_versions`` (the bound
#: immutable fields of every version ever accepted), ``tests`` keyed by upstream and sha256;
#: 4: ``models.ident`` (the id, its parts split on - _ . and the parts joined) indexed by FTS;
#: 5: ``evaluations`` (values measured on this site by ``synthmed evaluate``, each with its
#: provenance and comparability key)
GENERATION = 5

FTS_COLUMNS = ("ident", "title", "summary", "description", "modality", "anatomy", "generates", "tags",
               "architecture")
LIST_FIELDS = ("modality", "anatomy", "generates", "tags")

DDL = (
    """CREATE TABLE IF NOT EXISTS upstreams (
        name TEXT PRIMARY KEY, url TEXT, branch TEXT, subfolder TEXT NOT NULL DEFAULT '',
        priority INTEGER NOT NULL DEFAULT 100, ord INTEGER NOT NULL DEFAULT 0,
        accepted_commit TEXT, accepted_at TEXT, commit_time TEXT,
        last_attempt TEXT, last_status TEXT, last_reason TEXT, bound_commit TEXT)""",
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
    """CREATE TABLE IF NOT EXISTS metrics (
        model INTEGER NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, better TEXT NOT NULL,
        source TEXT, preferred INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS metrics_name ON metrics (name, preferred, model)",
    "CREATE INDEX IF NOT EXISTS metrics_model ON metrics (model)",
    # ranking picks one source of reported values per metric (registry/ranking.py): counted from this index alone
    "CREATE INDEX IF NOT EXISTS metrics_source ON metrics (name, source, better)",
    # and search --rank reads one model's value of that source with one probe of this one
    "CREATE INDEX IF NOT EXISTS metrics_rank ON metrics (model, name, source, value)",
    """CREATE TABLE IF NOT EXISTS record_problems (
        upstream TEXT NOT NULL, path TEXT NOT NULL, commit_sha TEXT, reason TEXT NOT NULL,
        seen_at TEXT, PRIMARY KEY (upstream, path))""",
    """CREATE TABLE IF NOT EXISTS artefacts (
        sha256 TEXT PRIMARY KEY, size INTEGER, state TEXT NOT NULL, verified_at TEXT,
        source TEXT, reason TEXT, updated_at TEXT)""",
    """CREATE TABLE IF NOT EXISTS tests (
        id INTEGER PRIMARY KEY AUTOINCREMENT, upstream TEXT, model_id TEXT NOT NULL,
        version TEXT NOT NULL, ref TEXT NOT NULL, started TEXT, finished TEXT,
        passed INTEGER NOT NULL, reason TEXT, report_path TEXT, throughput REAL,
        peak_memory_mb REAL, runner_version TEXT, env_hash TEXT, sha256 TEXT)""",
    "DROP INDEX IF EXISTS tests_ref",
    "CREATE INDEX IF NOT EXISTS tests_key ON tests (upstream, model_id, version, sha256, id)",
    # every version an upstream's branch ever carried, with the digests of its immutable
    # fields as first accepted (registry/accepted.py); survives deletions of the file
    """CREATE TABLE IF NOT EXISTS accepted_versions (
        upstream TEXT NOT NULL, id TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT, size INTEGER,
        package TEXT NOT NULL, package_unpinned TEXT NOT NULL, inputs TEXT NOT NULL, outputs TEXT NOT NULL,
        commit_sha TEXT NOT NULL, path TEXT NOT NULL, PRIMARY KEY (upstream, id, version))""",
    """CREATE TABLE IF NOT EXISTS sync_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, upstream TEXT, subject TEXT,
        started TEXT, finished TEXT, status TEXT NOT NULL, reason TEXT,
        old_commit TEXT, new_commit TEXT, changed INTEGER)""",
    "CREATE INDEX IF NOT EXISTS sync_runs_job ON sync_runs (job, id)",
    # one row per metric value measured on this site (registry/evaluate.py): keyed like
    # tests by upstream, id, version and package sha256; ``key`` is the comparability key
    # (a hash of everything in ``provenance`` that is not a value), ``run`` groups the
    # metrics of one evaluation
    """CREATE TABLE IF NOT EXISTS evaluations (
        id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, upstream TEXT NOT NULL,
        model_id TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL, metric TEXT NOT NULL,
        value REAL NOT NULL, better TEXT NOT NULL, key TEXT NOT NULL, reference TEXT NOT NULL,
        extractor TEXT NOT NULL, params TEXT NOT NULL, provenance TEXT NOT NULL, finished TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS evaluations_key ON evaluations (metric, key, upstream, model_id, version, sha256, id)",
    "CREATE INDEX IF NOT EXISTS evaluations_model ON evaluations (upstream, model_id, version, sha256, id)",
)


def id_terms(model_id: str) -> str:
    """What search indexes of a model id: the id, its parts split on ``-``, ``_`` and ``.``,
    and the parts joined (``ihc-patch-dcgan ihc patch dcgan ihcpatchdcgan``), so that a
    query for the id, one of its parts or the id written without separators finds it."""
    parts = [p for p in re.split(r"[-_.]+", model_id) if p]
    return " ".join(dict.fromkeys([model_id, *parts, "".join(parts)]))


def generation(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def create_tables(conn: sqlite3.Connection) -> None:
    for stmt in DDL:
        conn.execute(stmt)
    cols = ", ".join(FTS_COLUMNS)
    new_cols = ", ".join(f"new.{c}" for c in FTS_COLUMNS)
    old_cols = ", ".join(f"old.{c}" for c in FTS_COLUMNS)
    # a partial external-content index: only the rows search serves (is_latest = 1)
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS models_fts USING fts5({cols}, content='models', "
                 "content_rowid='pk', tokenize='unicode61 remove_diacritics 2')")
    conn.execute(f"""CREATE TRIGGER IF NOT EXISTS models_fts_ai AFTER INSERT ON models
        WHEN new.is_latest = 1 BEGIN
          INSERT INTO models_fts (rowid, {cols}) VALUES (new.pk, {new_cols}); END""")
    conn.execute(f"""CREATE TRIGGER IF NOT EXISTS models_fts_ad AFTER DELETE ON models
        WHEN old.is_latest = 1 BEGIN
          INSERT INTO models_fts (models_fts, rowid, {cols}) VALUES ('delete', old.pk, {old_cols}); END""")
    conn.execute(f"""CREATE TRIGGER IF NOT EXISTS models_fts_au_old AFTER UPDATE ON models
        WHEN old.is_latest = 1 BEGIN
          INSERT INTO models_fts (models_fts, rowid, {cols}) VALUES ('delete', old.pk, {old_cols}); END""")
    conn.execute(f"""CREATE TRIGGER IF NOT EXISTS models_fts_au_new AFTER UPDATE ON models
        WHEN new.is_latest = 1 BEGIN
          INSERT INTO models_fts (rowid, {cols}) VALUES (new.pk, {new_cols}); END""")


def drop_tables(conn: sqlite3.Connection) -> None:
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
        "AND name NOT LIKE 'models_fts_%'")]
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
    create_tables(conn)
    if old:
        cols = ", ".join(FTS_COLUMNS)
        conn.execute(f"INSERT INTO models_fts (rowid, {cols}) SELECT pk, {cols} FROM models WHERE is_latest = 1")
    if gen == 1:  # the upstream facet came with generation 2
        conn.execute("INSERT INTO facets (model, field, value) SELECT pk, 'upstream', upstream FROM models")
    conn.execute(f"PRAGMA user_version={GENERATION}")
