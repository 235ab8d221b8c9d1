"""The site catalog: a SQLite database (rollback journal, so that a user who cannot write the
site can still read it) derived from the upstream mirrors and the store.

One writer (the daemon, or ``synthmed sync`` holding the site lock); any number of
read-only readers (``Catalog.open(path)`` opens it with ``mode=ro``). Tables:

- ``upstreams``: one row per upstream: configuration, the last accepted commit, the last
  attempt and its outcome
- ``models``: one row per upstream + id + version, with the record JSON; ``models_fts``
  (FTS5) indexes the id (and its parts), title, summary, description, modality, anatomy,
  generates, tags and architecture; ``facets`` and ``metrics`` serve filters and ranking
- ``record_problems``: records skipped by a sync, with the reason
- ``accepted_versions``: every version each upstream's branch ever carried, with the
  digests of its immutable fields as first accepted (kept when the file is deleted)
- ``artefacts``: blobs and their state; ``tests``: model test runs; ``sync_runs``: every
  job run and every failure, with its reason

The generation of the layout is ``PRAGMA user_version``; :data:`GENERATION` is the one
this code writes. The catalog is derived data: ``synthmed catalog rebuild`` recreates it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Collection, Iterable, Iterator, Mapping, Sequence

import sqlite_utils

from . import catalog_schema as schema
from .accepted import AcceptedVersion
from .catalog_entry import CatalogEntry
from .catalog_schema import FTS_COLUMNS, GENERATION, LIST_FIELDS
from .errors import CatalogError
from .ranking import Ranking, choose
from .records import Record
from .resolve import resolve_ref
from .semver import version_key
from .stamps import utcnow

log = logging.getLogger(__name__)

__all__ = ["Catalog", "CatalogEntry", "GENERATION", "FTS_COLUMNS", "fts_query", "version_key"]

#: what a row of the models table needs, joined with its upstream and artefact
_ENTRY_SELECT = """SELECT m.pk, m.upstream, m.id, m.version, m.path, u.accepted_commit AS commit_sha, m.status,
    m.status_reason, m.verified, m.sha256, m.record, u.subfolder, u.priority, u.ord,
    a.state AS artefact_state"""
_ENTRY_FROM = """ FROM models m JOIN upstreams u ON u.name = m.upstream
    LEFT JOIN artefacts a ON a.sha256 = m.sha256"""


def fts_query(text: str) -> str:
    """A free-text query made safe for FTS5: every word becomes a quoted prefix term.

    Punctuation never reaches FTS5 as syntax: ``mass-like`` becomes the phrase
    ``"mass-like"*`` (FTS5's tokenizer splits it inside the quotes), a stray double quote is
    doubled inside the term, and a term without a letter or digit (``*``) is dropped. Returns ``""``
    when nothing searchable is left. Control characters (NUL included, which SQLite would take
    as the end of the string) are bad input and count as spaces.
    """
    terms = []
    text = "".join(" " if ch < " " or ch == "\x7f" else ch for ch in text)
    for word in text.split():
        if not any(ch.isalnum() for ch in word):
            continue
        terms.append('"' + word.replace('"', '""') + '"*')
    return " ".join(terms)


def _joined(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _arch_text(data: Mapping[str, Any]) -> str:
    arch = data.get("architecture") or {}
    return " ".join(str(arch[k]) for k in ("family", "name") if arch.get(k))


class Catalog:
    """The site catalog. Open with :meth:`open`; writers use :meth:`transaction`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool) -> None:
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self.path = Path(path).resolve()
        self.readonly = readonly
        self._repo_paths: dict[str, Path] = {}

    # -- opening --------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str, readonly: bool = True) -> "Catalog":
        p = Path(path)
        if readonly:
            if not p.exists():
                raise CatalogError(
                    f"no catalog at {p}",
                    hint="run `synthmed sync` (or `synthmed catalog rebuild`) on this site first",
                )
            try:
                conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True,
                                       isolation_level=None, check_same_thread=False, timeout=30)
                generation = conn.execute("PRAGMA user_version").fetchone()[0]
                conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
                conn.execute("PRAGMA mmap_size=1073741824")  # read pages through mmap, no read() calls
            except sqlite3.DatabaseError as exc:
                raise CatalogError(f"cannot read the catalog {p}: {exc}",
                                   hint="run `synthmed catalog rebuild` to recreate it") from exc
            if generation != GENERATION:
                conn.close()
                raise CatalogError(
                    f"the catalog {p} is of generation {generation}, this synthmed reads generation {GENERATION}",
                    hint="run `synthmed sync` with this version to migrate it, or `synthmed catalog rebuild`",
                )
            return cls(conn, p, True)
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(p, isolation_level=None, check_same_thread=False, timeout=30)
            # a rollback journal, not WAL: WAL readers need write access to the -shm file (or the
            # folder), so researchers who may only read the site could not open it at all
            # ("the daemon writes, researchers read"); writers are few and short. TRUNCATE
            # (not DELETE) spares each commit an unlink and a folder fsync (bench/sync.py)
            conn.execute("PRAGMA journal_mode=TRUNCATE")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: big syncs and rebuilds stay in memory
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"cannot open the catalog {p} for writing: {exc}",
                               hint="is the disk full or the file corrupt? `synthmed catalog rebuild` recreates it") from exc
        cat = cls(conn, p, False)
        cat.migrate()
        return cat

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def site_home(self) -> Path:
        return self.path.parent

    def generation(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Bring the layout to :data:`GENERATION` (creating it on an empty file)."""
        gen = self.generation()
        if gen > GENERATION:
            raise CatalogError(
                f"the catalog {self.path} is of generation {gen}, newer than this synthmed ({GENERATION})",
                hint="upgrade synthmed, or run `synthmed catalog rebuild` to recreate it for this version",
            )
        if gen == GENERATION:
            return
        with self.transaction():
            schema.upgrade(self.conn, gen, str(self.path))

    def create_tables(self) -> None:
        schema.create_tables(self.conn)

    def drop_tables(self) -> None:
        schema.drop_tables(self.conn)

    @contextmanager
    def transaction(self) -> Iterator["Catalog"]:
        """One atomic write (nested calls become savepoints)."""
        self._writable()
        with self.db.atomic():
            yield self

    @contextmanager
    def reading(self) -> Iterator["Catalog"]:
        """One consistent view for several reads (a deferred read transaction; keep it short:
        a writer waits for it to end)."""
        if self.conn.in_transaction:
            yield self
            return
        self.conn.execute("BEGIN")
        try:
            yield self
        finally:
            self.conn.execute("COMMIT")

    def _writable(self) -> None:
        if self.readonly:
            raise CatalogError(f"the catalog {self.path} is open read-only",
                               hint="only the daemon (or `synthmed sync`) writes the catalog")

    # -- upstreams --------------------------------------------------------------------

    def upstream_rows(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM upstreams ORDER BY priority, ord, name")
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def upstream_row(self, name: str) -> dict[str, Any] | None:
        cur = self.conn.execute("SELECT * FROM upstreams WHERE name = ?", (name,))
        row = cur.fetchone()
        return dict(zip([c[0] for c in cur.description], row)) if row else None

    def put_upstream(self, name: str, **fields: Any) -> None:
        """Insert or update one upstream's row (only the given fields change)."""
        self._writable()
        if self.upstream_row(name) is None:
            self.conn.execute("INSERT INTO upstreams (name) VALUES (?)", (name,))
        if fields:
            cols = ", ".join(f"{k} = ?" for k in fields)
            self.conn.execute(f"UPDATE upstreams SET {cols} WHERE name = ?", (*fields.values(), name))

    def drop_upstream(self, name: str) -> int:
        """Forget an upstream and every record of it; returns the number of records removed."""
        self._writable()
        pks = [r[0] for r in self.conn.execute("SELECT pk FROM models WHERE upstream = ?", (name,))]
        self._delete_pks(pks)
        self.conn.execute("DELETE FROM record_problems WHERE upstream = ?", (name,))
        self.conn.execute("DELETE FROM accepted_versions WHERE upstream = ?", (name,))
        self.conn.execute("DELETE FROM upstreams WHERE name = ?", (name,))
        return len(pks)

    # -- accepted versions (registry/accepted.py) ----------------------------------------

    def accepted_versions(self, upstream: str) -> dict[tuple[str, str], AcceptedVersion]:
        """The bound immutable fields of every version ``upstream`` ever carried."""
        cur = self.conn.execute("SELECT * FROM accepted_versions WHERE upstream = ?", (upstream,))
        cols = [c[0] for c in cur.description]
        found = (AcceptedVersion.from_row(dict(zip(cols, r))) for r in cur.fetchall())
        return {v.key: v for v in found}

    def put_accepted(self, upstream: str, versions: Iterable[AcceptedVersion]) -> None:
        self._writable()
        rows = [v.as_row(upstream) for v in versions]
        if rows:
            cols = list(rows[0])
            self.conn.executemany(
                f"INSERT OR REPLACE INTO accepted_versions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [tuple(r[c] for c in cols) for r in rows])

    def clear_accepted(self, upstream: str) -> None:
        self._writable()
        self.conn.execute("DELETE FROM accepted_versions WHERE upstream = ?", (upstream,))

    def repo_path(self, upstream: str) -> Path:
        """Where the upstream's git mirror lives (``<site>/upstreams/<name>``)."""
        return self.site_home / "upstreams" / upstream

    # -- models: writing ----------------------------------------------------------------

    def _delete_pks(self, pks: Sequence[int]) -> None:
        for i in range(0, len(pks), 500):
            chunk = list(pks[i:i + 500])
            marks = ",".join("?" * len(chunk))
            self.conn.execute(f"DELETE FROM facets WHERE model IN ({marks})", chunk)
            self.conn.execute(f"DELETE FROM metrics WHERE model IN ({marks})", chunk)
            self.conn.execute(f"DELETE FROM models WHERE pk IN ({marks})", chunk)

    def clear_upstream_models(self, upstream: str) -> None:
        self._writable()
        pks = [r[0] for r in self.conn.execute("SELECT pk FROM models WHERE upstream = ?", (upstream,))]
        self._delete_pks(pks)
        self.conn.execute("DELETE FROM record_problems WHERE upstream = ?", (upstream,))

    def upsert_record(self, upstream: str, path: str, record: Record, commit: str) -> None:
        """Store one valid record (replacing the same upstream/id/version or path)."""
        self._writable()
        data = record.data
        old = [r[0] for r in self.conn.execute(
            "SELECT pk FROM models WHERE upstream = ? AND id = ? AND version = ? "
            "UNION SELECT pk FROM models WHERE upstream = ? AND path = ?",
            (upstream, record.id, record.version, upstream, path))]
        self._delete_pks(old)
        cur = self.conn.execute(
            """INSERT INTO models (upstream, id, version, path, commit_sha, status, status_reason,
                verified, sha256, size, license, title, summary, description, modality, anatomy,
                generates, tags, architecture, record, ident)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            (upstream, record.id, record.version, path, commit, record.status, data.get("status_reason"),
             1 if record.verified else 0, record.sha256, record.size, data.get("license"),
             data.get("title", ""), data.get("summary", ""), data.get("description", ""),
             *(_joined(data.get(f)) for f in LIST_FIELDS), _arch_text(data),
             json.dumps(data, sort_keys=True, separators=(",", ":")), schema.id_terms(record.id)),
        )
        pk = cur.lastrowid
        facets: set[tuple[str, str]] = set()
        for f in ("modality", "anatomy"):
            facets.update((f, str(v).lower()) for v in data.get(f) or [])
        arch = data.get("architecture") or {}
        facets.update(("architecture", str(arch[k]).lower()) for k in ("family", "name") if arch.get(k))
        if data.get("license"):
            facets.add(("license", str(data["license"]).lower()))
        facets.add(("upstream", upstream))
        self.conn.executemany("INSERT INTO facets (model, field, value) VALUES (?,?,?)",
                              [(pk, f, v) for f, v in sorted(facets)])
        best: dict[str, tuple[int, int]] = {}
        rows = []
        for i, m in enumerate(data.get("metrics") or []):
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
        self.conn.executemany(
            "INSERT INTO metrics (model, name, value, better, source, preferred) VALUES (?,?,?,?,?,?)", rows)
        self.conn.execute("DELETE FROM record_problems WHERE upstream = ? AND path = ?", (upstream, path))

    def delete_path(self, upstream: str, path: str) -> str | None:
        """Remove the record stored from ``path``; returns its id, if there was one."""
        self._writable()
        rows = self.conn.execute("SELECT pk, id FROM models WHERE upstream = ? AND path = ?",
                                 (upstream, path)).fetchall()
        self._delete_pks([r[0] for r in rows])
        self.conn.execute("DELETE FROM record_problems WHERE upstream = ? AND path = ?", (upstream, path))
        return str(rows[0][1]) if rows else None

    def id_at_path(self, upstream: str, path: str) -> str | None:
        row = self.conn.execute("SELECT id FROM models WHERE upstream = ? AND path = ?", (upstream, path)).fetchone()
        return str(row[0]) if row else None

    def stored_record(self, upstream: str, model_id: str, version: str) -> dict[str, Any] | None:
        """The record JSON stored for one upstream/id/version, if any."""
        row = self.conn.execute("SELECT record FROM models WHERE upstream = ? AND id = ? AND version = ?",
                                (upstream, model_id, version)).fetchone()
        return json.loads(row[0]) if row else None

    def set_problem(self, upstream: str, path: str, commit: str, reason: str) -> None:
        self._writable()
        self.conn.execute(
            "INSERT OR REPLACE INTO record_problems (upstream, path, commit_sha, reason, seen_at) VALUES (?,?,?,?,?)",
            (upstream, path, commit, reason, utcnow()))

    def problems(self, upstream: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT upstream, path, commit_sha, reason, seen_at FROM record_problems"
        args: tuple[Any, ...] = ()
        if upstream:
            sql += " WHERE upstream = ?"
            args = (upstream,)
        cur = self.conn.execute(sql + " ORDER BY upstream, path", args)
        return [dict(zip([c[0] for c in cur.description], r)) for r in cur.fetchall()]

    def refresh_latest(self, upstream: str, ids: Iterable[str]) -> None:
        """Mark the latest non-yanked version of each id (semver order) as ``is_latest``."""
        self._writable()
        for model_id in set(ids):
            rows = self.conn.execute("SELECT pk, version, status FROM models WHERE upstream = ? AND id = ?",
                                     (upstream, model_id)).fetchall()
            live = [r for r in rows if r[2] != "yanked"]
            latest = max(live, key=lambda r: version_key(r[1]))[0] if live else None
            for pk, _, _ in rows:
                self.conn.execute("UPDATE models SET is_latest = ? WHERE pk = ? AND is_latest != ?",
                                  (1 if pk == latest else 0, pk, 1 if pk == latest else 0))

    # -- artefacts ----------------------------------------------------------------------

    def set_artefact(self, sha256: str, *, state: str, size: int | None = None, source: str | None = None,
                     reason: str | None = None, verified_at: str | None = None) -> None:
        self._writable()
        now = utcnow()
        if state == "verified" and verified_at is None:
            verified_at = now
        self.conn.execute(
            """INSERT INTO artefacts (sha256, size, state, verified_at, source, reason, updated_at)
               VALUES (?,?,?,?,?,?,?)
               ON CONFLICT (sha256) DO UPDATE SET size = coalesce(excluded.size, size), state = excluded.state,
                 verified_at = coalesce(excluded.verified_at, verified_at),
                 source = coalesce(excluded.source, source), reason = excluded.reason,
                 updated_at = excluded.updated_at""",
            (sha256, size, state, verified_at, source, reason, now))

    def delete_artefact(self, sha256: str) -> None:
        self._writable()
        self.conn.execute("DELETE FROM artefacts WHERE sha256 = ?", (sha256,))

    def artefacts(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM artefacts ORDER BY sha256")
        return [dict(zip([c[0] for c in cur.description], r)) for r in cur.fetchall()]

    def needed_blobs(self) -> set[str]:
        """sha256 of every blob a non-yanked record of any upstream needs."""
        return {r[0] for r in self.conn.execute(
            "SELECT DISTINCT sha256 FROM models WHERE status != 'yanked' AND sha256 IS NOT NULL")}

    # -- runs and tests -------------------------------------------------------------------

    def record_run(self, job: str, status: str, *, upstream: str | None = None, subject: str | None = None,
                   reason: str | None = None, started: str | None = None, old_commit: str | None = None,
                   new_commit: str | None = None, changed: int | None = None) -> None:
        """Log one job run, or one failure inside it (``subject`` names the model or blob)."""
        self._writable()
        self.conn.execute(
            """INSERT INTO sync_runs (job, upstream, subject, started, finished, status, reason,
               old_commit, new_commit, changed) VALUES (?,?,?,?,?,?,?,?,?,?)""",
            (job, upstream, subject, started or utcnow(), utcnow(), status, reason, old_commit, new_commit, changed))

    def runs(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql = "SELECT * FROM sync_runs"
        args: list[Any] = []
        if job:
            sql += " WHERE job = ?"
            args.append(job)
        cur = self.conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [dict(zip([c[0] for c in cur.description], r)) for r in cur.fetchall()]

    def last_runs(self) -> list[dict[str, Any]]:
        """The last summary run (no subject) of each job, per upstream where it has one."""
        cur = self.conn.execute(
            """SELECT * FROM sync_runs WHERE id IN (
                 SELECT max(id) FROM sync_runs WHERE subject IS NULL GROUP BY job, coalesce(upstream, ''))
               ORDER BY job, upstream""")
        return [dict(zip([c[0] for c in cur.description], r)) for r in cur.fetchall()]

    def record_test(self, *, model_id: str, version: str, passed: bool, upstream: str, sha256: str | None,
                    started: str | None = None, finished: str | None = None, reason: str | None = None,
                    report_path: str | None = None, throughput: float | None = None,
                    peak_memory_mb: float | None = None, runner_version: str | None = None,
                    env_hash: str | None = None) -> int:
        """Store one model test run of ``upstream``'s ``model_id@version`` with package
        ``sha256``: a result belongs to that package from that upstream, nothing else."""
        self._writable()
        cur = self.conn.execute(
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
        cur = self.conn.execute(
            """SELECT * FROM tests WHERE upstream = ? AND model_id = ? AND version = ? AND sha256 = ?
               ORDER BY id DESC LIMIT ?""", (upstream, model_id, version, sha256, limit))
        return [dict(zip([c[0] for c in cur.description], r)) for r in cur.fetchall()]

    def test_row(self, test_id: int) -> dict[str, Any] | None:
        """One test run by its id (``tests.id``), or None."""
        cur = self.conn.execute("SELECT * FROM tests WHERE id = ?", (int(test_id),))
        row = cur.fetchone()
        return dict(zip([c[0] for c in cur.description], row)) if row else None

    def last_tests(self, ref: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The latest test run of each model version the catalog holds, matched by
        upstream, id, version and package sha256 (a run of another upstream's package, or of
        a package no longer held, is not shown); or the runs of one ``id@version`` of any
        upstream (each row names its upstream and sha256)."""
        if ref:
            model_id, _, version = ref.partition("@")
            cur = self.conn.execute(
                "SELECT * FROM tests WHERE model_id = ? AND (? = '' OR version = ?) ORDER BY id DESC LIMIT ?",
                (model_id, version, version, limit))
        else:
            cur = self.conn.execute(
                """SELECT t.* FROM tests t WHERE t.id IN (SELECT max(id) FROM tests
                     GROUP BY upstream, model_id, version, sha256)
                   AND EXISTS (SELECT 1 FROM models m WHERE m.upstream = t.upstream AND m.id = t.model_id
                     AND m.version = t.version AND m.sha256 = t.sha256)
                   ORDER BY t.model_id, t.version, t.upstream LIMIT ?""", (limit,))
        return [dict(zip([c[0] for c in cur.description], r)) for r in cur.fetchall()]

    def failing_models(self) -> list[dict[str, Any]]:
        """The last test of each held version (see :meth:`last_tests`) that failed; ``qualified_ref``
        names the upstream."""
        return [{**t, "qualified_ref": f"{t['upstream']}/{t['ref']}"}
                for t in self.last_tests(limit=1_000_000) if not t["passed"]]

    # -- evaluations (synthmed evaluate; registry/evaluate.py) ------------------------------

    def ranking(self, metric: str, key: str | None = None) -> Ranking:
        """Which values ranking by ``metric`` compares (see :mod:`synthmed.registry.ranking`)."""
        return choose(self, metric, key)


    def record_evaluation(self, *, run: str, upstream: str, model_id: str, version: str, sha256: str,
                          values: Mapping[str, tuple[float, str]], key: str, reference: str, extractor: str,
                          params: Mapping[str, Any], provenance: Mapping[str, Any], finished: str | None = None) -> None:
        """Store the metric values (name -> (value, better)) of one evaluation run."""
        self._writable()
        when = finished or utcnow()
        self.conn.executemany(
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
        cur = self.conn.execute(
            """SELECT * FROM evaluations WHERE id IN (SELECT max(id) FROM evaluations
                 WHERE upstream = ? AND model_id = ? AND version = ? AND sha256 = ?
                 GROUP BY metric, key, params) ORDER BY key, metric, params""", (upstream, model_id, version, sha256))
        return [dict(zip([c[0] for c in cur.description], r)) for r in cur.fetchall()]

    def evaluation_keys(self, metric: str) -> list[dict[str, Any]]:
        """Comparability keys holding ``metric`` values of models the catalog serves, the
        most populated first: ``key``, ``models`` (count), ``reference``, ``extractor``, ``last``."""
        cur = self.conn.execute(
            """SELECT e.key, count(DISTINCT e.upstream || '/' || e.model_id) AS models, max(e.reference) AS reference,
                      max(e.extractor) AS extractor, max(e.finished) AS last
               FROM evaluations e JOIN models m ON m.upstream = e.upstream AND m.id = e.model_id
                 AND m.version = e.version AND m.sha256 = e.sha256 AND m.is_latest = 1
               WHERE e.metric = ? GROUP BY e.key ORDER BY models DESC, last DESC""", (metric.lower(),))
        return [dict(zip([c[0] for c in cur.description], r)) for r in cur.fetchall()]

    def evaluation_summary(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest evaluation run of each served version and comparability key: fd,
        precision and recall, with reference, extractor and key (for ``synthmed status``)."""
        cur = self.conn.execute(
            """SELECT e.upstream, e.model_id, e.version, e.key, e.reference, e.extractor, e.finished,
                      max(CASE WHEN e.metric = 'fd' THEN e.value END) AS fd,
                      max(CASE WHEN e.metric = 'precision' THEN e.value END) AS precision,
                      max(CASE WHEN e.metric = 'recall' THEN e.value END) AS recall
               FROM evaluations e JOIN models m ON m.upstream = e.upstream AND m.id = e.model_id
                 AND m.version = e.version AND m.sha256 = e.sha256 AND m.is_latest = 1
               WHERE e.run IN (SELECT run FROM evaluations WHERE id IN (
                 SELECT max(id) FROM evaluations GROUP BY upstream, model_id, version, sha256, key))
               GROUP BY e.run ORDER BY e.key, fd LIMIT ?""", (limit,))
        return [dict(zip([c[0] for c in cur.description], r)) for r in cur.fetchall()]

    def measured_values(self, metric: str, key: str) -> dict[tuple[str, str], dict[str, Any]]:
        """(upstream, id) -> the latest row of ``metric`` under comparability ``key`` for the
        served (latest) version of each model; with several parameter sets, the best value."""
        cur = self.conn.execute(
            """SELECT e.* FROM evaluations e JOIN models m ON m.upstream = e.upstream AND m.id = e.model_id
                 AND m.version = e.version AND m.sha256 = e.sha256 AND m.is_latest = 1
               WHERE e.id IN (SELECT max(id) FROM evaluations WHERE metric = ? AND key = ?
                              GROUP BY upstream, model_id, version, sha256, params)""", (metric.lower(), key))
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for r in cur.fetchall():
            row = dict(zip([c[0] for c in cur.description], r))
            k = (row["upstream"], row["model_id"])
            old = out.get(k)
            sign = 1 if row["better"] == "lower" else -1
            if old is None or sign * row["value"] < sign * old["value"]:
                out[k] = row
        return out

    # -- reading ------------------------------------------------------------------------

    def _entry(self, row: sqlite3.Row | tuple[Any, ...], cols: Sequence[str], score: float | None = None) -> CatalogEntry:
        r = dict(zip(cols, row))
        state = r["artefact_state"] or "missing"
        if not r["verified"]:
            state = "unverified"
        upstream = r["upstream"]
        repo = self._repo_paths.get(upstream)
        if repo is None:
            repo = self._repo_paths[upstream] = self.repo_path(upstream)
        return CatalogEntry(
            upstream=upstream, id=r["id"], version=r["version"],
            record=Record(data=json.loads(r["record"]), path=f"{upstream}:{r['path']}@{str(r['commit_sha'])[:12]}"),
            index_repo=repo, index_commit=r["commit_sha"],
            index_subfolder=r["subfolder"] or "", artefact_state=state, status=r["status"],
            status_reason=r["status_reason"], priority=int(r["priority"]), path=r["path"],
            score=score if score is None else float(score),
        )

    def _entries(self, sql: str, args: Sequence[Any]) -> list[CatalogEntry]:
        cur = self.conn.execute(sql, tuple(args))
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
        return [r[0] for r in self.conn.execute("SELECT DISTINCT id FROM models ORDER BY id")]

    def resolve(self, ref: str, *, allow_yanked: bool = False) -> CatalogEntry:
        """``id``, ``id@1.0.0``, ``upstream/id``, ``upstream/id@1.0.0`` -> one servable entry
        (or, with ``allow_yanked``, a yanked one, for showing it: see :func:`resolve_ref`)."""
        return resolve_ref(self, ref, allow_yanked=allow_yanked)

    def list_models(self, *, all_versions: bool = False) -> list[CatalogEntry]:
        """The latest non-yanked version of every model of every upstream (or every version)."""
        where = "" if all_versions else " WHERE m.is_latest = 1"
        return self._entries(_ENTRY_SELECT + _ENTRY_FROM + where + " ORDER BY m.id, u.priority, u.ord, m.version", ())

    def count_models(self) -> dict[str, int]:
        row = self.conn.execute(
            """SELECT count(*), sum(is_latest), sum(status = 'yanked'), sum(verified = 0) FROM models""").fetchone()
        return {"versions": row[0] or 0, "models": row[1] or 0, "yanked": row[2] or 0, "unverified": row[3] or 0}

    def search(self, query: str = "", *, modality: str | None = None, anatomy: str | None = None,
               architecture: str | None = None, license: str | None = None, rank: str | Ranking | None = None,
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
        ``rank`` (a metric name, or a :class:`~synthmed.registry.ranking.Ranking` from
        :meth:`ranking`), results are ordered by that metric, best first, comparing only
        values of one basis (this site's measurements under one comparability key, or else
        the records' values of one source); models without such a value come last.
        """
        match = fts_query(query or "")
        if query and query.strip() and not match:
            return []  # only punctuation: nothing to match
        # phase 1: the ordered page of matching row ids, touching only narrow columns (the
        # record JSON is never carried through the sort; the FTS index holds only the latest
        # non-yanked rows, so a text query needs no join to filter them); phase 2: the full
        # rows of that page
        args: list[Any] = []
        if match:
            key = "f.rowid"
            frm = " FROM models_fts f"
            where = ["f.models_fts MATCH ?"]
            args.append(match)
        else:
            key = "m.pk"
            frm = " FROM models m"
            where = ["m.is_latest = 1"]
        select = f"SELECT {key}"
        order: list[str] = []
        if rank:
            ranking = rank if isinstance(rank, Ranking) else self.ranking(rank)
            sign = "" if ranking.better == "lower" else "-"
            if ranking.basis == "measured":
                select += ", rv.v"
                frm += (f" LEFT JOIN models rm ON rm.pk = {key} LEFT JOIN (SELECT json_extract(value, '$[0]') AS up, "
                        "json_extract(value, '$[1]') AS mid, json_extract(value, '$[2]') AS v FROM json_each(?)) rv "
                        "ON rv.up = rm.upstream AND rv.mid = rm.id")
                args.insert(0, json.dumps([[u, i, v] for (u, i), v in ranking.values.items()]))
                order.append(f"rv.v IS NULL, {sign}rv.v")
            else:
                agg = "min" if ranking.better == "lower" else "max"
                sub = (f"(SELECT {agg}(r.value) FROM metrics r WHERE r.model = {key} AND r.name = ? "
                       "AND r.source = ?)")
                select += f", {sub} AS rvalue"
                args[0:0] = [ranking.metric, ranking.source or ""]
                order.append(f"rvalue IS NULL, {sign}rvalue")
        else:
            select += ", NULL"
        if match and not rank:  # bm25 costs a computation per match: only when it decides the order
            order.append("f.rank")
        for fname, value in (("modality", modality), ("anatomy", anatomy), ("architecture", architecture),
                             ("license", license), ("upstream", upstream)):
            if value:
                if match:  # a lookup per match (with `IN`, FTS5 would run the MATCH once per listed id)
                    where.append(f"EXISTS (SELECT 1 FROM facets WHERE field = ? AND value = ? AND model = {key})")
                else:  # the facet's rows drive the query
                    where.append(f"{key} IN (SELECT model FROM facets WHERE field = ? AND value = ?)")
                args.extend([fname, value.strip().lower()])
        if runnable:
            cond = ["r.verified = 1", "r.status != 'yanked'"]
            if code_upstreams is not None:
                cond.append("r.upstream IN (SELECT value FROM json_each(?))")
                args.append(json.dumps(sorted(code_upstreams)))
            if held_blobs is not None:
                cond.append("r.sha256 IN (SELECT value FROM json_each(?)) AND coalesce(a.state, '') != 'corrupt'")
                args.append(json.dumps(sorted(held_blobs)))
            else:
                cond.append("a.state = 'verified'")
            where.append(f"EXISTS (SELECT 1 FROM models r LEFT JOIN artefacts a ON a.sha256 = r.sha256 "
                         f"WHERE r.pk = {key} AND {' AND '.join(cond)})")
        order.append("m.id" if not match else key)
        sql = f"{select}{frm} WHERE {' AND '.join(where)} ORDER BY {', '.join(order)} LIMIT ?"
        args.append(int(limit))
        try:
            page = self.conn.execute(sql, tuple(args)).fetchall()
        except sqlite3.OperationalError as exc:  # pragma: no cover - a bug if it happens
            raise CatalogError(f"search failed for {query!r}: {exc}", hint="report this as a bug") from exc
        if not page:
            return []
        pks = [p[0] for p in page]
        cur = self.conn.execute(
            _ENTRY_SELECT + _ENTRY_FROM + f" WHERE m.pk IN ({','.join('?' * len(pks))})", pks)
        cols = [c[0] for c in cur.description]
        rows = {row[0]: row for row in cur.fetchall()}
        return [self._entry(rows[pk], cols, score) for pk, score in page if pk in rows]

    def snapshot(self) -> dict[str, Any]:
        """A comparable view of the derived content: what a rebuild must equal. Leaves out
        times, row ids and the commit at which each record last changed (a rebuild only
        knows the accepted commit)."""
        models = sorted(self.conn.execute(
            "SELECT upstream, id, version, path, status, is_latest, verified, sha256, record, ident FROM models"))
        ups = sorted(self.conn.execute("SELECT name, accepted_commit, subfolder FROM upstreams"))
        facets = sorted(self.conn.execute(
            "SELECT m.upstream, m.id, m.version, f.field, f.value FROM facets f JOIN models m ON m.pk = f.model"))
        fts = self.conn.execute("SELECT count(*) FROM models_fts_docsize").fetchone()[0]
        arts = sorted(self.conn.execute("SELECT sha256, state FROM artefacts"))
        problems = sorted(self.conn.execute("SELECT upstream, path FROM record_problems"))
        accepted = sorted(self.conn.execute("SELECT * FROM accepted_versions"))
        return {"models": models, "upstreams": ups, "facets": facets, "fts_rows": fts,
                "artefacts": arts, "problems": problems, "accepted": accepted}
