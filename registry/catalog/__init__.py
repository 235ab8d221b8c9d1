"""The site catalog: a SQLite database (rollback journal, so that a user who cannot write the
site can still read it) derived from the upstream mirrors and the store.

One writer (the daemon, or ``synthmed sync`` holding the site lock); any number of
read-only readers (``Catalog.open(path)`` opens it with ``mode=ro``). :class:`Catalog`
opens the file, migrates it and hands out one store per concern, all over the same
connection, so one :meth:`Catalog.transaction` covers writes to any of them:

- ``federation`` (:mod:`.federation`): upstreams and the versions each ever carried
- ``models`` (:mod:`.models`): records, the served version of each id, FTS search
  (:mod:`.search`), facets and metrics, reference resolution (:mod:`.resolve`), the
  records a sync skipped
- ``artefacts`` (:mod:`.artefacts`): blobs and their state
- ``tests`` (:mod:`.tests`): model test runs
- ``evaluations`` (:mod:`.evaluations`): values measured on this site
- ``audits`` (:mod:`.audits`): memorisation audits run on this site
- ``datasets`` (:mod:`.datasets`): published synthetic datasets, their search and the
  versions each upstream bound
- ``sanity`` (:mod:`.sanity`): extractor sanity checks on this site's reference sets
- ``jobs`` (:mod:`.jobs`): every job run and every failure, with its reason

Each store's module holds its own tables; :mod:`.schema` assembles them and migrates
between generations. The generation of the layout is ``PRAGMA user_version``;
:data:`GENERATION` is the one this code writes. The catalog is derived data:
``synthmed catalog rebuild`` recreates it. Which values a ranked search compares is
decided above the catalog (:mod:`synthmed.registry.measuring.ranking`).
"""

from __future__ import annotations

import secrets
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import CatalogError
from ..semver import version_key
from . import schema
from .artefacts import ArtefactStore
from .audits import AuditStore
from .base import Handle
from .datasets import DatasetEntry, DatasetStore
from .entry import CatalogEntry
from .evaluations import EvaluationStore
from .federation import FederationStore
from .jobs import JobStore
from .models import FTS_COLUMNS, ModelStore
from .schema import GENERATION
from .sanity import SanityStore
from .search import ScoreOrder, fts_query
from .tests import ModelTestStore

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["Catalog", "CatalogEntry", "DatasetEntry", "GENERATION", "FTS_COLUMNS", "ScoreOrder", "fts_query", "version_key"]


def _open_readonly(p: Path) -> sqlite3.Connection:
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
    return conn


def _open_writable(p: Path) -> sqlite3.Connection:
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
    return conn


class Catalog:
    """The site catalog. Open with :meth:`open`; writers use :meth:`transaction`; read and
    write through its stores (``federation``, ``models``, ``artefacts``, ``tests``,
    ``evaluations``, ``audits``, ``datasets``, ``sanity``, ``jobs``)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool) -> None:
        self.conn = conn
        self._db: "sqlite_utils.Database | None" = None
        self.path = Path(path).resolve()
        self.readonly = readonly
        self._handle = Handle(conn, self.path, readonly)
        self.models = ModelStore(self._handle)
        self.federation = FederationStore(self._handle, self.models)
        self.artefacts = ArtefactStore(self._handle)
        self.tests = ModelTestStore(self._handle)
        self.evaluations = EvaluationStore(self._handle)
        self.audits = AuditStore(self._handle)
        self.datasets = DatasetStore(self._handle)
        self.sanity = SanityStore(self._handle)
        self.jobs = JobStore(self._handle)

    # -- opening --------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str, readonly: bool = True) -> "Catalog":
        p = Path(path)
        if readonly:
            return cls(_open_readonly(p), p, True)
        cat = cls(_open_writable(p), p, False)
        cat.migrate()
        return cat

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db(self) -> "sqlite_utils.Database":
        """The connection wrapped by sqlite-utils (bulk inserts of a rebuild), imported on
        first use: a search or a sync never pays for it."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    @property
    def site_home(self) -> Path:
        return self._handle.site_home

    # -- the layout -------------------------------------------------------------------

    def generation(self) -> int:
        return schema.generation(self.conn)

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

    # -- transactions -----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator["Catalog"]:
        """One atomic write (nested calls become savepoints): committed when the block
        ends, rolled back (to the savepoint) when it raises."""
        self._handle.writable()
        conn = self.conn
        if conn.in_transaction:
            name = f"synthmed_{secrets.token_hex(8)}"
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                if conn.in_transaction:  # an error may already have ended the whole transaction
                    conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    conn.execute(f"RELEASE SAVEPOINT {name}")
                raise
            conn.execute(f"RELEASE SAVEPOINT {name}")
            return
        conn.execute("BEGIN")
        try:
            yield self
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

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

    def snapshot(self) -> dict[str, Any]:
        """A comparable view of the derived content: what a rebuild must equal. Leaves out
        times, row ids and the commit at which each record last changed (a rebuild only
        knows the accepted commit)."""
        conn = self.conn
        models = sorted(conn.execute(
            "SELECT upstream, id, version, path, status, is_latest, verified, sha256, record, ident FROM models"))
        ups = sorted(conn.execute("SELECT name, accepted_commit, subfolder FROM upstreams"))
        facets = sorted(conn.execute(
            "SELECT m.upstream, m.id, m.version, f.field, f.value FROM facets f JOIN models m ON m.pk = f.model"))
        fts = conn.execute("SELECT count(*) FROM models_fts_docsize").fetchone()[0]
        arts = sorted(conn.execute("SELECT sha256, state FROM artefacts"))
        problems = sorted(conn.execute("SELECT upstream, path FROM record_problems"))
        accepted = sorted(conn.execute("SELECT * FROM accepted_versions"))
        datasets = sorted(conn.execute("SELECT upstream, id, version, path, status, is_latest, sha256, record "
                                       "FROM datasets"))
        return {"datasets": datasets, "models": models, "upstreams": ups, "facets": facets, "fts_rows": fts,
                "artefacts": arts, "problems": problems, "accepted": accepted}
