"""``synthmed catalog rebuild``: recreate the catalog from the upstream mirrors (at their
accepted commits, from the state files) and the store. Test runs and job history are
carried over from the old catalog when it can still be read."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any, Callable

from synthmed.registry.catalog import Catalog
from synthmed.registry.errors import CatalogError
from synthmed.registry.settings import Settings
from synthmed.registry.stamps import utcnow
from synthmed.registry.artefacts.store import Store

from .state import read_state
from .sync import _config_fields, apply_changes
from .upstreams import ACCEPTED_REF, UpstreamRepo

log = logging.getLogger(__name__)

_KEPT = ("tests", "sync_runs", "evaluations", "audits", "sanity_checks")


def _saved_history(old: Catalog) -> dict[str, list[dict[str, Any]]]:
    """Test runs and job history of the catalog as opened (and so migrated: test runs of an
    older generation are tied to their upstream and package sha256 by the migration, while
    its models table still tells which)."""
    try:
        out = {}
        for table in _KEPT:
            cur = old.conn.execute(f"SELECT * FROM {table} ORDER BY id")
            out[table] = [dict(zip([c[0] for c in cur.description], r)) for r in cur.fetchall()]
        return out
    except sqlite3.DatabaseError as exc:
        log.warning("the old catalog %s cannot be read (%s); test and job history start afresh", old.path, exc)
        return {}


def _open_fresh(path: Path) -> Catalog:
    try:
        cat = Catalog.open(path, readonly=False)
        cat.conn.execute("PRAGMA quick_check").fetchone()
        return cat
    except (CatalogError, sqlite3.DatabaseError) as exc:
        log.warning("the catalog %s is unusable (%s); recreating the file", path, exc)
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return Catalog.open(path, readonly=False)


def rebuild_catalog(settings: Settings, path: Path | None = None,
                    progress: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Recreate the catalog at ``path`` (default: the site's) in one transaction."""
    target = path or settings.catalog_path
    cat = _open_fresh(target)
    history = _saved_history(cat)
    summary: dict[str, Any] = {"catalog": str(target), "upstreams": {}, "blobs": 0}
    try:
        with cat.transaction():
            cat.drop_tables()
            cat.create_tables()
            for table, rows in history.items():
                if rows:
                    cat.db.table(table).insert_all(rows)
            for order, u in enumerate(settings.upstreams):
                repo = UpstreamRepo.for_upstream(settings.upstreams_dir, u.name)
                state = read_state(settings, u.name) or {}
                if not repo.exists():
                    summary["upstreams"][u.name] = "never synced"
                    continue
                try:
                    accepted = state.get("accepted_commit") or repo.rev(ACCEPTED_REF)
                    if not accepted or not repo.has_commit(accepted):
                        summary["upstreams"][u.name] = "no accepted commit"
                        continue
                    fields = dict(_config_fields(u, order))
                    if state.get("subfolder", u.subfolder) != u.subfolder:
                        summary["upstreams"][u.name] = "subfolder changed since the last sync; sync it again"
                    progress(f"{u.name}: loading {accepted[:12]}")
                    n, skipped = apply_changes(cat, u, repo, None, accepted)
                    cat.federation.put_upstream(u.name, **fields, accepted_commit=accepted,
                                                accepted_at=state.get("accepted_at") or utcnow(),
                                                commit_time=repo.commit_time(accepted), last_status="ok",
                                                last_reason=f"{len(skipped)} invalid record(s) skipped" if skipped else None)
                    summary["upstreams"][u.name] = {"commit": accepted, "records": n, "skipped": len(skipped)}
                finally:
                    repo.close()
            store = Store(settings.store_dir)
            for sha in store.iter_blobs():
                cat.artefacts.set_artefact(sha, state="verified", size=store.blob_path(sha).stat().st_size,
                                           source="store")
                summary["blobs"] += 1
            versions = len(cat.models.list_models(all_versions=True))
            cat.jobs.record_run("rebuild", "ok", reason=f"{versions} versions")
    finally:
        cat.close()
    return summary
