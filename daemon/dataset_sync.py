"""The sync of an upstream's published datasets (``datasets/<id>/<version>.json``, #24).

Run inside the sync's catalog transaction, after the model records (:func:`.sync.apply_changes`
calls it), so the datasets change at the same commit point as the models. Like a model
record, a dataset record is

- **validated**: an invalid one is skipped with its reason (``record_problems``, shown by
  ``status``), never stopping the sync;
- **bound** to its first appearance on the upstream's first-parent history (the digest of
  every field outside ``MUTABLE_FIELDS``: :func:`~synthmed.registry.dataset_records.immutable_digest`,
  kept in ``dataset_accepted`` even once the file is deleted): a rewrite of a merged version
  is refused and the version as accepted keeps being served;
- **tied to its model**: a dataset whose ``model`` id@version is not held by the *same*
  upstream, or held with another package sha256, is skipped with that reason.

The datasets of an upstream are read from scratch whenever the catalog has not applied
them through the commit the models start from (a fresh sync, a rebuild, a catalog
migrated to generation 9); otherwise only the changed files and the new commits are read,
and the files skipped before (a dataset whose model was not there yet) are tried again.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Any, Mapping

from synthmed.registry.accepted import history_changes
from synthmed.registry.catalog import Catalog
from synthmed.registry.dataset_records import (DATASETS_DIR, DatasetRecord, immutable_changes, immutable_digest,
                                               load_dataset_bytes)
from synthmed.registry.errors import Problem, RecordError
from synthmed.registry.records import MAX_RECORD_BYTES
from synthmed.registry.settings import Upstream

from .upstreams import Change, UpstreamRepo

log = logging.getLogger(__name__)


def datasets_prefix(subfolder: str) -> str:
    sub = subfolder.strip("/")
    return f"{sub}/{DATASETS_DIR}/" if sub else f"{DATASETS_DIR}/"


def _rel(path: str, subfolder: str) -> str:
    sub = subfolder.strip("/")
    return path[len(sub) + 1:] if sub and path.startswith(sub + "/") else path


def _load(repo: UpstreamRepo, blob: str, where: str, rel: str) -> DatasetRecord:
    size = repo.blob_size(blob)
    if size > MAX_RECORD_BYTES:
        raise RecordError([Problem(where, "$", f"the record is too large ({size} bytes; at most {MAX_RECORD_BYTES})")])
    return load_dataset_bytes(dict(repo.read_blobs([blob]))[blob], where, rel)


def _bind_history(catalog: Catalog, u: Upstream, repo: UpstreamRepo, hist: list[tuple[str, str, str]]) -> None:
    """Bind every dataset version first seen in ``hist`` (``(commit, path, blob)``, oldest first)."""
    bound = catalog.datasets.bindings(u.name)
    for commit, path, blob in hist:
        rel = _rel(path, u.subfolder)
        parts = PurePosixPath(rel).parts
        if len(parts) != 3 or not rel.endswith(".json"):
            continue
        try:
            record = _load(repo, blob, f"{u.name}:{path}@{commit[:12]}", rel)
        except (RecordError, ValueError, KeyError, TypeError, RecursionError):
            continue  # an invalid file binds nothing (it is skipped where it is applied)
        if (record.id, record.version) not in bound:
            row = {"digest": immutable_digest(record.data), "commit_sha": commit, "path": rel, "blob": blob}
            bound[(record.id, record.version)] = row
            catalog.datasets.bind(u.name, record.id, record.version, digest=row["digest"], commit=commit, path=rel,
                                  blob=blob)


def _model_problem(catalog: Catalog, u: Upstream, record: DatasetRecord) -> str | None:
    model = record.model
    held = catalog.models.stored_record(u.name, str(model["id"]), str(model["version"]))
    if held is None:
        return (f"its model {record.model_ref} is not in upstream {u.name!r}'s index (a dataset must name a model "
                f"version the same index holds)")
    sha = ((held.get("package") or {}).get("artefact") or {}).get("sha256")
    if sha != model["sha256"]:
        return (f"its model {record.model_ref} has package sha256 {str(sha)[:12] if sha else 'none (unpinned)'}... "
                f"in upstream {u.name!r}, the dataset names {str(model['sha256'])[:12]}...: the items were not made "
                f"by the model this index holds")
    return None


def _apply_one(catalog: Catalog, u: Upstream, repo: UpstreamRepo, c: Change, rel: str, where: str, new: str,
               bound: Mapping[tuple[str, str], Mapping[str, Any]], touched: set[str]) -> str | None:
    """Apply one changed dataset file; the reason it was skipped, or None."""
    gone = catalog.datasets.delete_path(u.name, rel) if c.status == "D" else catalog.datasets.held_at_path(u.name, rel)
    if gone:
        touched.add(gone)
    if c.status == "D":
        log.warning("%s: %s was deleted upstream (dataset versions should be yanked, not deleted)", u.name, rel)
        return None
    if len(PurePosixPath(rel).parts) != 3:
        return f"{where}: $: a dataset record must be at {DATASETS_DIR}/<id>/<version>.json"
    try:
        record = _load(repo, c.blob or "", where, rel)
    except RecordError as exc:
        catalog.datasets.delete_path(u.name, rel)
        return str(exc.message)
    held = bound.get((record.id, record.version))
    if held is not None and held["digest"] != immutable_digest(record.data):
        first = _load(repo, held["blob"], f"{u.name}:{held['path']}@{held['commit_sha'][:12]}", held["path"])
        fields = ", ".join(immutable_changes(first.data, record.data)) or "immutable fields"
        if catalog.datasets.held_at_path(u.name, rel) is None:  # a fresh sync: serve it as first accepted
            catalog.datasets.upsert(u.name, rel, first, held["commit_sha"])
            touched.add(record.id)
        return (f"{where}: $: dataset {record.ref} was accepted at commit {held['commit_sha'][:12]} with other "
                f"{fields} (a merged dataset version is immutable; publish a new version instead); the version as "
                f"accepted keeps being served")
    problem = _model_problem(catalog, u, record)
    if problem is not None:
        catalog.datasets.delete_path(u.name, rel)
        return f"{where}: $.model: {problem}"
    catalog.datasets.upsert(u.name, rel, record, new)
    touched.add(record.id)
    return None


def apply_datasets(catalog: Catalog, u: Upstream, repo: UpstreamRepo, base: str | None,
                   new: str) -> tuple[int, list[tuple[str, str]]]:
    """Bring the upstream's datasets from ``base`` to ``new`` (inside the caller's transaction);
    returns (dataset files changed, [(path, reason)] skipped)."""
    prefix = datasets_prefix(u.subfolder)
    incremental = base is not None and catalog.datasets.synced_commit(u.name) == base
    if incremental:
        # every commit of the range is walked (a version added and removed again in it is
        # bound all the same), and the files that differ are applied (deletions too)
        hist = history_changes(repo.g, [f"{base}..{new}"], prefix)
        changes = repo.changes(str(base), new, prefix)
        # a record skipped before (its model not there yet, say) is tried again at every new
        # commit, not only when its own file changes
        waiting = catalog.models.problem_paths(u.name, f"{DATASETS_DIR}/") - {_rel(c.path, u.subfolder) for c in changes}
        if waiting:
            changes += [c for c in repo.files(new, prefix) if _rel(c.path, u.subfolder) in waiting]
    else:
        catalog.datasets.clear_upstream(u.name)
        hist = history_changes(repo.g, [new], prefix)
        changes = repo.files(new, prefix)
    _bind_history(catalog, u, repo, hist)
    bound = catalog.datasets.bindings(u.name) if changes else {}
    touched: set[str] = set()
    skipped: list[tuple[str, str]] = []
    changed = 0
    for c in changes:
        rel = _rel(c.path, u.subfolder)
        if not rel.endswith(".json"):
            continue
        changed += 1
        where = f"{u.name}:{c.path}@{new[:12]}"
        try:
            with catalog.transaction():  # a savepoint: one record never holds back the others
                reason = _apply_one(catalog, u, repo, c, rel, where, new, bound, touched)
        except Exception as exc:  # noqa: BLE001
            log.exception("%s: %s could not be applied", u.name, rel)
            reason = f"{where}: $: could not be processed ({type(exc).__name__}: {str(exc)[:200]})"
        if reason is None:
            catalog.models.clear_problem(u.name, rel)
        else:
            log.warning("%s: skipping a dataset record: %s", u.name, reason)
            catalog.models.set_problem(u.name, rel, new, reason)
            skipped.append((rel, reason))
    catalog.datasets.refresh_latest(u.name, touched)
    catalog.datasets.set_synced(u.name, new)
    return changed, skipped
