"""Upstream sync: fetch, check (fast-forward, signatures), validate changed records, and
update the catalog from the git diff, so the cost follows the change, not the index size.

Crash safety: the catalog transaction is the commit point of a sync. Before it, nothing
the site serves has changed (a fetch only moves ``refs/synthmed/fetched``); after it, the
state file and the ``accepted`` ref are brought in line, and the next sync reconciles them
from the catalog if a kill came in between.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Collection, Sequence

from synthmed.registry import accepted as history, records
from synthmed.registry.accepted import AcceptedVersion
from synthmed.registry.catalog import Catalog
from synthmed.registry.errors import ConfigError, Problem, RecordError, SyncRefused
from synthmed.registry.record_paths import layout_hint, parse_record_relpath, record_relpaths, twin_relpath
from synthmed.registry.records import Record, load_record_bytes
from synthmed.registry.redact import redact_text, redact_url
from synthmed.registry.settings import Settings, Upstream
from synthmed.registry.stamps import utcnow
from synthmed.registry.upstream_check import BUNDLE_URL, check_url

from .dataset_sync import apply_datasets
from .state import read_state, write_state
from .upstreams import ACCEPTED_REF, Change, UpstreamRepo, resolve_url

log = logging.getLogger(__name__)

#: called with one line of progress text
MessageProgress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class SyncResult:
    upstream: str
    status: str  # ok | refused | failed
    reason: str | None = None
    old_commit: str | None = None
    new_commit: str | None = None
    changed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"upstream": self.upstream, "status": self.status, "reason": self.reason,
                "old_commit": self.old_commit, "new_commit": self.new_commit, "changed": self.changed,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


def models_prefix(subfolder: str) -> str:
    return f"{subfolder.strip('/')}/models/" if subfolder.strip("/") else "models/"


def _config_fields(u: Upstream, order: int) -> dict[str, object]:
    # the catalogue never stores a token: the URL is kept redacted (the fetch uses settings' URL)
    return {"url": redact_url(u.url), "branch": u.branch, "subfolder": u.subfolder, "priority": u.priority, "ord": order}


class ImmutableChanged(SyncRefused):
    """A merged version's package, inputs or outputs changed upstream (no longer raised by
    :func:`apply_changes`, which skips such a record; kept for callers that catch it)."""


#: in the reason of a record skipped because it would substitute an accepted version
SUBSTITUTION = "a merged version is immutable"

#: a record file larger than this is not read at all (registry.records bounds the parse too)
MAX_RECORD_BYTES = records.MAX_RECORD_BYTES


def _reader(repo: UpstreamRepo) -> Callable[[str], bytes | None]:
    def read(blob: str) -> bytes | None:
        if repo.blob_size(blob) > MAX_RECORD_BYTES:
            return None
        return dict(repo.read_blobs([blob]))[blob]
    return read


#: (id, version) -> (commit, blob) of the last appearance of a version that agreed with its binding
LastGood = dict[tuple[str, str], tuple[str, str]]


def update_bound(catalog: Catalog, u: Upstream, repo: UpstreamRepo, base: str | None, new: str, *,
                 incremental: bool, cache: dict[str, Record | None],
                 also: Collection[str] = (), good: LastGood | None = None) -> dict[tuple[str, str], AcceptedVersion]:
    """Fold the records of the upstream's first-parent history into the catalog's
    ``accepted_versions`` (registry/accepted.py): the commits ``base..new`` when
    ``incremental`` (the table is complete through ``base``), else the whole history of
    ``new`` from scratch. Returns the bound versions: every one when not incremental, else
    those the new commits touch and those at the paths ``also`` (the changed record files),
    read from the catalog by key, so the cost follows the change, not the index size. ``good``
    is filled with the last appearance of each version (in the commits walked) that agreed
    with its binding."""
    prefix = models_prefix(u.subfolder)
    sub = u.subfolder.strip("/")
    at = f"{sub}/" if sub else ""
    if incremental and base is not None:
        rev_range = [f"{base}..{new}"]
        hist = history.history_changes(repo.g, rev_range, prefix)
        keys = {k for k in (parse_record_relpath(p[len(at):]) for p in [*(h[1] for h in hist), *also]) if k}
        bound = catalog.federation.accepted_versions(u.name, keys)
    else:
        catalog.federation.clear_accepted(u.name)
        bound = {}
        hist = history.history_changes(repo.g, [new], prefix)
    before = dict(bound)
    blobs = {(commit, path): blob for commit, path, blob in hist}
    for outcome, v in history.walk_history(hist, at, _reader(repo), bound, cache=cache):
        if outcome != "conflict":
            if good is not None:
                good[v.key] = (v.commit, blobs[(v.commit, f"{at}{v.path}")])
        else:
            # history only: the version stays bound to its first appearance, and its file as it
            # is now is checked (and skipped with a warning) when the record is applied; a change
            # an index reverted long ago is no news to an admin on every fresh sync
            log.info("%s: history: %s at %s changed the immutable fields of %s@%s (bound at %s); that commit's "
                     "version of the file was not accepted", u.name, v.path, v.commit[:12], v.id, v.version,
                     bound[v.key].commit[:12])
    catalog.federation.put_accepted(u.name, [v for k, v in bound.items() if before.get(k) != v])
    catalog.federation.put_upstream(u.name, bound_commit=new)
    return bound


def apply_changes(catalog: Catalog, u: Upstream, repo: UpstreamRepo, base: str | None, new: str,
                  check_immutable: bool = True) -> tuple[int, list[tuple[str, str]]]:
    """Bring the catalog's records of ``u`` from commit ``base`` (None: nothing) to ``new``.

    Must run inside a catalog transaction. Returns (records changed, [(path, reason)] of
    records skipped). First the upstream's accepted versions are brought up to ``new``
    (:func:`update_bound`); then each changed record is validated and compared with its
    version's bound immutable fields: a record whose version was accepted before (even
    if its file was deleted since) with another package, inputs or outputs is skipped
    with a problem, like an invalid one. Each record is applied in a savepoint of its own,
    and *any* failure while applying one record skips that record only: one record never
    holds back the rest of the upstream's update.

    ``check_immutable=False`` (an admin accepted a rewritten history): the accepted
    versions are recomputed from the new history alone, forgetting the rewritten one.
    """
    prefix = models_prefix(u.subfolder)
    sub = u.subfolder.strip("/")
    row = catalog.federation.upstream_row(u.name)
    incremental = (check_immutable and base is not None and row is not None and row.get("bound_commit") == base)
    cache: dict[str, Record | None] = {}
    changes: list[Change] = repo.files(new, prefix) if base is None else repo.changes(base, new, prefix)
    at = f"{sub}/" if sub else ""
    changes, present = _with_twins(repo, new, at, changes, complete=base is None)
    good: LastGood = {}
    bound = update_bound(catalog, u, repo, base, new, incremental=incremental, cache=cache,
                         also=[c.path for c in changes if c.status != "D"], good=good)
    keep = _Keeper(catalog, u, repo, base, new, good, cache)
    if base is None:
        catalog.models.clear_upstream_models(u.name)
    touched: set[str] = set()
    skipped: list[tuple[str, str]] = []
    changed = 0
    for c in changes:
        rel = c.path[len(sub) + 1:] if sub else c.path  # models/<id>/<version>.json
        if not rel.endswith(".json"):
            continue
        changed += 1
        where = f"{u.name}:{c.path}@{new[:12]}"
        try:
            with catalog.transaction():  # a savepoint: a failure undoes this record's writes only
                if c.status == "D" and twin_relpath(rel) not in present:  # (a move to the other layout is no news)
                    log.warning("%s: %s was deleted upstream (versions should be yanked, not deleted)", u.name, rel)
                reason = (_held_flat(catalog, u, rel, where, present, at) if c.status != "D" else None) or \
                    _apply_one(catalog, u, repo, c, rel, where, new, bound, cache, touched, keep)
        except Exception as exc:  # noqa: BLE001 - one record must never hold back the others
            log.exception("%s: %s could not be applied", u.name, rel)
            reason = f"{where}: $: could not be processed ({type(exc).__name__}: {str(exc)[:200]})"
            catalog.models.delete_path(u.name, rel)
        if reason is not None:
            log.warning("%s: skipping a record: %s", u.name, reason)
            catalog.models.set_problem(u.name, rel, new, reason)
            skipped.append((rel, reason))
    catalog.models.refresh_latest(u.name, touched)
    d_changed, d_skipped = apply_datasets(catalog, u, repo, base if incremental else None, new)
    return changed + d_changed, skipped + d_skipped


def _with_twins(repo: UpstreamRepo, new: str, at: str, changes: list[Change],
                complete: bool) -> tuple[list[Change], set[str]]:
    """The changed files, plus the same version's file in the other layout where it is a file at
    ``new`` and unchanged (registry/record_paths.py); and the record paths (relative to the
    index folder) that are files at ``new`` among all of these. A version held at both paths is
    served from the flat one, so deleting either file must look at the other. ``complete``:
    ``changes`` lists every file at ``new`` (a fresh sync), so there is nothing to look up."""
    known = {c.path: c for c in changes}
    ask: list[str] = []
    for c in changes if not complete else ():
        twin = twin_relpath(c.path[len(at):])
        if twin is not None and at + twin not in known:
            ask.append(at + twin)
    found = repo.blobs_at(new, sorted(set(ask))) if ask else {}
    changes = changes + [Change("M", p, b) for p, b in sorted(found.items())]
    return changes, {c.path[len(at):] for c in changes if c.status != "D"}


def _held_flat(catalog: Catalog, u: Upstream, rel: str, where: str, present: set[str], at: str) -> str | None:
    """Why a sharded record is not applied: its version is also at its flat path (which is
    served); None otherwise."""
    key = parse_record_relpath(rel)
    if key is None or rel == (flat := record_relpaths(*key)[0]) or flat not in present:
        return None
    catalog.models.delete_path(u.name, rel)
    return (f"{where}: $: {key[0]}@{key[1]} is also at {at}{flat}, which is served: an index holds each version "
            "once (remove one of the two files)")


@dataclass
class _Keeper:
    """Withholding a rewrite never withdraws what was accepted: a record that would change a
    merged version's immutable fields is refused, and the version keeps being served as it
    was last accepted (its last appearance that agreed with its binding), unless its file
    was deleted upstream since (a deletion withdraws it, as it would have at a sync in
    between). Incremental and fresh syncs reach the same catalog."""

    catalog: Catalog
    u: Upstream
    repo: UpstreamRepo
    base: str | None
    new: str
    good: LastGood
    cache: dict[str, Record | None]

    def accepted(self, key: tuple[str, str], rel: str, path: str, touched: set[str]) -> str | None:
        """Keep ``key`` served as last accepted; the commit it is served at, or None."""
        good = self.good.get(key)
        held = self.catalog.models.stored_commit(self.u.name, rel)
        since = good[0] if good else (held if self.base is not None else None)
        if since is None or self._deleted_since(since, path):
            touched.update(filter(None, [self.catalog.models.delete_path(self.u.name, rel)]))
            return None
        record = self.cache.get(good[1]) if good else None
        if good is not None and record is not None:
            self.catalog.models.upsert_record(self.u.name, rel, record, good[0])
            touched.add(record.id)
            return good[0]
        return held  # the row the site holds stays as it is

    def _deleted_since(self, commit: str, path: str) -> bool:
        out = str(self.repo.g.execute(["git", "log", "--first-parent", "--diff-filter=D", "--format=%H",
                                       f"{commit}..{self.new}", "--", path]))
        return bool(out.strip())


def _apply_one(catalog: Catalog, u: Upstream, repo: UpstreamRepo, c: Change, rel: str, where: str, new: str,
               bound: dict[tuple[str, str], AcceptedVersion], cache: dict[str, Record | None],
               touched: set[str], keep: "_Keeper") -> str | None:
    """Apply one changed record file; the reason it was skipped, or None."""
    gone = catalog.models.delete_path(u.name, rel) if c.status == "D" else catalog.models.id_at_path(u.name, rel)
    if gone:
        touched.add(gone)
    if c.status == "D":
        return None
    if len(PurePosixPath(rel).parts) != 3:
        catalog.models.delete_path(u.name, rel)
        return f"{where}: $: not a record path: {layout_hint()}"
    blob = c.blob or ""
    record = cache.get(blob)
    if record is None:
        try:
            size = repo.blob_size(blob)
            if size > MAX_RECORD_BYTES:
                raise RecordError([Problem(where, "$", f"the record is too large ({size} bytes; at most "
                                                       f"{MAX_RECORD_BYTES})")])
            record = load_record_bytes(dict(repo.read_blobs([blob]))[blob], where, rel)
        except RecordError as exc:
            catalog.models.delete_path(u.name, rel)
            return str(exc.message)
    mine = AcceptedVersion.of(record.data, new, rel)
    held = bound.get(mine.key)
    fields = history.conflict(held, mine) if held is not None else []
    if held is None:  # pragma: no cover - every valid record of new's history is bound
        catalog.models.delete_path(u.name, rel)
        return f"{where}: $: not in the upstream's accepted history"
    if fields:
        kept = keep.accepted(mine.key, rel, c.path, touched)
        serving = (f"; the version as accepted at commit {kept[:12]} keeps being served" if kept else
                   "; nothing is served for it")
        return (f"{where}: $: {record.ref} was accepted at commit {held.commit[:12]} with another "
                f"{', '.join(fields)} ({SUBSTITUTION}, even once deleted; publish a new version instead){serving}")
    catalog.models.upsert_record(u.name, rel, record, new)
    touched.add(record.id)
    return None


def signers_file(settings: Settings, u: Upstream, folder: Path | None = None) -> Path:
    """Write the upstream's allowed signers (ssh allowed-signers format) under the site
    (or in ``folder``: an import's staging folder)."""
    path = (folder or settings.upstreams_dir) / f"{u.name}.allowed_signers"
    text = "".join(line.strip() + "\n" for line in u.allowed_signers)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def _refuse(catalog: Catalog, u: Upstream, order: int, started: str, reason: str,
            old: str | None, new: str | None, status: str = "refused") -> SyncResult:
    reason = redact_text(reason)
    log.error("%s: sync %s: %s", u.name, status, reason)
    with catalog.transaction():
        catalog.federation.put_upstream(u.name, **_config_fields(u, order), last_attempt=started, last_status=status,
                                        last_reason=reason)
        catalog.jobs.record_run("sync", status, upstream=u.name, reason=reason, started=started,
                                old_commit=old, new_commit=new)
    return SyncResult(u.name, status, reason, old, new)


def sync_upstream(settings: Settings, catalog: Catalog, u: Upstream, order: int = 0, *,
                  accept_rewrite: bool = False, progress: MessageProgress = _quiet,
                  bundle: Path | None = None) -> SyncResult:
    """Sync one upstream (from its URL, or from a git ``bundle`` on import)."""
    started = utcnow()
    if bundle is None and u.url == BUNDLE_URL:
        row = catalog.federation.upstream_row(u.name)
        at = row["accepted_commit"] if row else None
        progress(f"{u.name}: updated only by `synthmed import` (url = {BUNDLE_URL!r}); nothing to fetch")
        return SyncResult(u.name, "ok", f"updated only by `synthmed import` (url = {BUNDLE_URL!r})", at, at, 0)
    repo = UpstreamRepo.for_upstream(settings.upstreams_dir, u.name).ensure()
    try:
        row = catalog.federation.upstream_row(u.name)
        db_accepted: str | None = row["accepted_commit"] if row else None
        state = read_state(settings, u.name) or {}
        accepted = db_accepted or state.get("accepted_commit") or repo.rev(ACCEPTED_REF)
        # reconcile the state file and ref with the catalog (a kill may have come in between)
        if db_accepted and repo.has_commit(db_accepted):
            if state.get("accepted_commit") != db_accepted:
                write_state(settings, u, db_accepted, row["accepted_at"] if row else None)
            if repo.rev(ACCEPTED_REF) != db_accepted:
                repo.set_ref(ACCEPTED_REF, db_accepted)
        same_layout = row is not None and (row["subfolder"] or "") == u.subfolder
        base = db_accepted if (db_accepted and same_layout and repo.has_commit(db_accepted)) else None

        try:  # the URL as written (resolve_url makes a path absolute): Upstreams can be made in code
            check_url(u.url, f"upstream {u.name!r}, url", site_home=settings.home)
        except ConfigError as exc:
            return _refuse(catalog, u, order, started, f"{exc.message} ({exc.hint})", accepted, None, status="failed")
        url = resolve_url(u.url, settings.home)
        progress(f"{u.name}: fetching {u.branch} from {bundle or redact_url(url)}")
        try:
            new = repo.fetch_bundle(bundle) if bundle else repo.fetch(url, u.branch)
        except SyncRefused as exc:
            return _refuse(catalog, u, order, started, exc.message, accepted, None, status="failed")

        if accepted and new == accepted and base == new:
            with catalog.transaction():
                if row is not None and row.get("bound_commit") != new:  # a catalog migrated from generation 2
                    update_bound(catalog, u, repo, None, new, incremental=False, cache={})
                if catalog.datasets.synced_commit(u.name) != new:  # a catalog migrated from generation 8
                    apply_datasets(catalog, u, repo, None, new)
                catalog.federation.put_upstream(u.name, **_config_fields(u, order), last_attempt=started, last_status="ok",
                                                last_reason=None, accepted_at=utcnow())
                catalog.jobs.record_run("sync", "ok", upstream=u.name, started=started, old_commit=new,
                                        new_commit=new, changed=0)
            progress(f"{u.name}: up to date at {new[:12]}")
            return SyncResult(u.name, "ok", None, new, new, 0)

        fast_forward = True
        if accepted and new != accepted:
            fast_forward = repo.has_commit(accepted) and repo.is_ancestor(accepted, new)
            if not fast_forward:
                what = (f"the upstream's {u.branch} moved to {new[:12]}, which does not descend from the last "
                        f"accepted commit {accepted[:12]} (a rewritten history or a rollback)")
                if not accept_rewrite:
                    return _refuse(catalog, u, order, started,
                                   f"{what}; refused, the previous state keeps serving (to accept it: "
                                   f"`synthmed sync --accept-rewrite {u.name}`)", accepted, new)
                log.warning("%s: %s; accepted by the admin (--accept-rewrite)", u.name, what)
        if u.require_signed and new != accepted:
            signers = signers_file(settings, u)
            bad = repo.unsigned_commits(accepted if (accepted and fast_forward) else None, new, signers)
            if bad:
                listed = "; ".join(f"{sha[:12]}: {why}" for sha, why in bad[:5])
                more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
                return _refuse(catalog, u, order, started,
                               f"{len(bad)} new commit(s) not signed by an allowed signer of {u.name!r}: "
                               f"{listed}{more}; the previous state keeps serving", accepted, new)

        progress(f"{u.name}: applying {(accepted or 'nothing')[:12]} -> {new[:12]}")
        now = utcnow()
        with catalog.transaction():
            changed, skipped = _apply_and_accept(catalog, u, order, repo, base, new, accepted, started, now,
                                                 check_immutable=not accept_rewrite)
        write_state(settings, u, new, now)
        repo.set_ref(ACCEPTED_REF, new)
        progress(f"{u.name}: {changed} record file(s) changed, {len(skipped)} skipped, now at {new[:12]}")
        reason = f"{len(skipped)} record(s) skipped" if skipped else None
        return SyncResult(u.name, "ok", reason, accepted, new, changed, skipped)
    finally:
        repo.close()


def _apply_and_accept(catalog: Catalog, u: Upstream, order: int, repo: UpstreamRepo, base: str | None, new: str,
                      accepted: str | None, started: str, now: str,
                      check_immutable: bool) -> tuple[int, list[tuple[str, str]]]:
    """Inside the caller's transaction: apply the changes and record the new accepted commit."""
    changed, skipped = apply_changes(catalog, u, repo, base, new, check_immutable)
    reason = f"{len(skipped)} record(s) skipped" if skipped else None
    catalog.federation.put_upstream(u.name, **_config_fields(u, order), accepted_commit=new, accepted_at=now,
                                    commit_time=repo.commit_time(new), last_attempt=started, last_status="ok",
                                    last_reason=reason)
    catalog.jobs.record_run("sync", "ok", upstream=u.name, reason=reason, started=started,
                            old_commit=accepted, new_commit=new, changed=changed)
    for path, why in skipped:
        catalog.jobs.record_run("sync", "skipped", upstream=u.name, subject=path, reason=why, started=started,
                                new_commit=new)
    return changed, skipped


def sync_all(settings: Settings, catalog: Catalog, *, only: Sequence[str] | None = None,
             accept_rewrite: Collection[str] = (), progress: MessageProgress = _quiet) -> list[SyncResult]:
    """Sync every configured upstream; one failing upstream never stops the others."""
    names = {u.name for u in settings.upstreams}
    if only:
        for n in only:
            settings.upstream(n)  # raises ConfigError naming the known upstreams
    else:
        for row in catalog.federation.upstream_rows():
            if row["name"] not in names:
                with catalog.transaction():
                    dropped = catalog.federation.drop_upstream(row["name"])
                    catalog.datasets.clear_upstream(row["name"])
                    catalog.jobs.record_run("sync", "ok", upstream=row["name"], changed=dropped,
                                            reason="upstream removed from site.toml; its records were dropped")
                progress(f"{row['name']}: no longer in site.toml, {dropped} record(s) dropped")
    results = []
    for order, u in enumerate(settings.upstreams):
        if only and u.name not in only:
            continue
        started = utcnow()
        try:
            results.append(sync_upstream(settings, catalog, u, order, accept_rewrite=u.name in accept_rewrite,
                                         progress=progress))
        except Exception as exc:  # one upstream never stops the others
            log.exception("%s: sync failed", u.name)
            results.append(_refuse(catalog, u, order, started, f"{type(exc).__name__}: {exc}", None, None,
                                   status="failed"))
    return results
