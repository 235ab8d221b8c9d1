"""The daemon's jobs besides sync: mirror, scrub, gc.

Each job takes a :class:`JobContext` and returns a one-line summary. A failing model or
blob never stops a job: each failure is recorded in ``sync_runs`` with its reason.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from synthmed.registry.catalog import Catalog, CatalogEntry
from synthmed.registry.errors import BlobCorrupt
from synthmed.registry.packages import fetch_data, prepare
from synthmed.registry.artefacts.packages_folder import PackagesFolder
from synthmed.registry.redact import redact_text, redact_url
from synthmed.registry.settings import MirrorPolicy, Settings
from synthmed.registry.stamps import utcnow
from synthmed.registry.artefacts.store import Store

from .dataset_mirror import mirror_datasets

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    settings: Settings
    catalog: Catalog
    progress: Callable[[str], None] = field(default=lambda m: None)
    accept_rewrite: tuple[str, ...] = ()
    #: the running download, for the daemon's ``daemon.json`` (None when it ends)
    report_download: Callable[[dict[str, Any] | None], None] = field(default=lambda d: None)
    #: what the job could not do (the mirror job: each ref whose artefact it could not fetch or verify)
    failed: list[str] = field(default_factory=list)


class DownloadMeter:
    """A byte-progress callback for one artefact: while it runs, every ``every_s`` seconds,
    shows bytes and rate (``JobContext.progress``, debug log) and hands the same figures to
    ``JobContext.report_download`` (the status page). The one log line of a finished
    download is the store's ("fetched ...", with its rate); a rate is shown only once it is
    measured over bytes that arrived after the first report (never a "0.00 MB/s")."""

    def __init__(self, ctx: JobContext, ref: str, sha256: str, every_s: float = 5.0) -> None:
        self.ctx, self.ref, self.sha256, self.every_s = ctx, ref, sha256, every_s
        self.start = self.last = time.monotonic()
        self.started = utcnow()
        self.first: int | None = None

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = done  # a resumed download starts past 0
        if now - self.last < self.every_s or (total is not None and done >= total):
            return
        self.last = now
        measured = done > self.first
        rate = (done - self.first) / max(now - self.start, 1e-6) if measured else None
        info = {"ref": self.ref, "sha256": self.sha256, "bytes": done, "total": total,
                "rate_bytes_per_s": round(rate) if rate is not None else None, "since": self.started}
        line = (f"mirror: {self.ref}: {done} of {total if total is not None else '?'} bytes"
                + (f" ({rate / 1e6:.2f} MB/s)" if rate is not None else ""))
        log.debug("%s", line)
        self.ctx.progress(line)
        self.ctx.report_download(info)


def selected(policy: MirrorPolicy, entry: CatalogEntry) -> bool:
    """Whether the site's mirror policy selects this model (select: any listed id,
    modality or anatomy matches, case-insensitively)."""
    if policy.policy == "all":
        return True
    if policy.policy == "none":
        return False
    data = entry.record.data
    if entry.id in policy.ids:
        return True
    mods = {str(m).lower() for m in data.get("modality", [])}
    anas = {str(a).lower() for a in data.get("anatomy", [])}
    return bool(mods & {m.lower() for m in policy.modalities} or anas & {a.lower() for a in policy.anatomies})


def mirror_candidates(settings: Settings, catalog: Catalog) -> list[CatalogEntry]:
    """Every non-yanked version the policy selects (verified or not)."""
    return [e for e in catalog.models.list_models(all_versions=True)
            if e.status != "yanked" and selected(settings.mirror, e)]


def mirror_job(ctx: JobContext) -> str:
    """Prepare (fetch, verify, unpack) the packages of the selected, pinned, non-yanked
    records, each through :func:`~synthmed.registry.packages.prepare` once."""
    started = utcnow()
    settings, catalog = ctx.settings, ctx.catalog
    store = Store(settings.store_dir)
    states = {a["sha256"]: a["state"] for a in catalog.artefacts.rows()}
    done: set[str] = set()
    fetched = failed = unverified = 0
    candidates = mirror_candidates(settings, catalog)
    for i, e in enumerate(candidates, 1):
        sha = e.record.sha256
        if not sha:
            unverified += 1
            log.debug("mirror: skipping %s: unverified (no pinned sha256)", e.qualified_ref)  # counted in the summary
            continue
        if sha in done:
            continue
        done.add(sha)
        if states.get(sha) == "verified" and store.has(sha) and (settings.packages_dir / sha).is_dir():
            continue
        ctx.progress(f"mirror: [{i}/{len(candidates)}] {e.qualified_ref}")
        try:
            package = prepare(e, settings, purpose="mirror", progress=DownloadMeter(ctx, e.qualified_ref, sha))
            if package.source not in ("store", "packages"):
                fetched += 1
                # the store logged the one line of this download, with its rate ("fetched ...")
                log.debug("mirror: %s: blob %s served by %s", e.qualified_ref, sha[:12], redact_url(package.source))
            with catalog.transaction():
                catalog.artefacts.set_artefact(sha, state="verified", size=e.record.size, source=redact_url(package.source))
        except Exception as exc:  # one model never stops the others
            failed += 1
            ctx.failed.append(e.qualified_ref)
            state = "corrupt" if isinstance(exc, BlobCorrupt) else "missing"
            reason = redact_text(" ".join(str(getattr(exc, "message", exc)).split())) or type(exc).__name__
            log.warning("mirror: %s failed: %s", e.qualified_ref, redact_text(str(exc)))
            with catalog.transaction():
                catalog.artefacts.set_artefact(sha, state=state, size=e.record.size, reason=redact_text(str(exc)))
                catalog.jobs.record_run("mirror", "failed", upstream=e.upstream, subject=e.qualified_ref,
                                        reason=f"{type(exc).__name__}: {reason}", started=started)
        finally:
            ctx.report_download(None)
    d_selected, d_fetched, d_failed = mirror_datasets(settings, catalog, started, selected, progress=ctx.progress,
                                                      failures=ctx.failed)
    fetched, failed = fetched + d_fetched, failed + d_failed
    summary = (f"{len(done)} artefact(s) selected, {fetched} fetched, {failed} failed, "
               f"{unverified} unverified record(s) skipped")
    if d_selected:
        summary += f"; {d_selected} dataset artefact(s) selected"
    with catalog.transaction():
        catalog.jobs.record_run("mirror", "failed" if failed else "ok", reason=summary, started=started,
                                changed=fetched)
    ctx.progress(f"mirror: {summary}")
    return summary


def scrub_job(ctx: JobContext) -> str:
    """Re-hash every blob and every unpacked package; quarantine corrupt blobs, remove
    changed packages, and prepare the packages of corrupt blobs again from their sources."""
    started = utcnow()
    settings, catalog = ctx.settings, ctx.catalog
    store = Store(settings.store_dir)
    report = store.verify_all()
    # unpacked packages too, before any repair: a package hard-linked to a rotten blob changed with it
    changed_packages = PackagesFolder(settings.packages_dir).verify_all(  # removed; unpacked again when next needed
        lambda sha: store.blob_path(sha) if store.has(sha) else None)
    for bad_pkg in changed_packages:
        with catalog.transaction():
            catalog.jobs.record_run("scrub", "failed", subject=bad_pkg["sha256"],
                                    reason=f"unpacked package changed on disk ({bad_pkg['reason']}); removed", started=started)
    repaired = 0
    for bad in report.corrupt:
        sha = bad.get("sha256")
        if not sha:
            continue
        with catalog.transaction():
            catalog.artefacts.set_artefact(sha, state="corrupt", reason=str(bad.get("reason")))
            catalog.jobs.record_run("scrub", "failed", subject=sha, reason=f"blob corrupt: {bad.get('reason')}",
                                    started=started)
        users = [e for e in catalog.models.list_models(all_versions=True)
                 if e.record.sha256 == sha and e.status != "yanked"]
        if not users and _refetch_dataset(settings, catalog, sha, started):
            repaired += 1
        for e in users[:1]:
            try:
                package = prepare(e, settings, purpose="mirror")
                with catalog.transaction():
                    catalog.artefacts.set_artefact(sha, state="verified", size=e.record.size, source=redact_url(package.source))
                repaired += 1
            except Exception as exc:
                with catalog.transaction():
                    catalog.jobs.record_run("scrub", "failed", upstream=e.upstream, subject=e.qualified_ref,
                                            reason=f"re-fetch of corrupt blob {sha[:12]} failed: {exc}", started=started)
    summary = (f"{report.checked} blob(s) checked, {len(report.corrupt)} corrupt, {repaired} re-fetched; "
               f"{len(changed_packages)} changed package(s) removed")
    with catalog.transaction():
        catalog.jobs.record_run("scrub", "failed" if len(report.corrupt) > repaired else "ok", reason=summary,
                                started=started, changed=len(report.corrupt))
    ctx.progress(f"scrub: {summary}")
    return summary


def _refetch_dataset(settings: Settings, catalog: Catalog, sha: str, started: str) -> bool:
    """Fetch a corrupt dataset blob again from its record's sources; whether it worked."""
    users = [d for d in catalog.datasets.list_datasets(all_versions=True)
             if d.record.sha256 == sha and d.status != "yanked"]
    for d in users[:1]:
        try:
            fetch_data(sha, int(d.record.artefact["size"]), list(d.record.artefact["sources"]), settings,
                       upstream=d.upstream, index_repo=d.index_repo, index_commit=d.index_commit,
                       index_subfolder=d.index_subfolder)
            with catalog.transaction():
                catalog.artefacts.set_artefact(sha, state="verified", source="dataset")
            return True
        except Exception as exc:
            with catalog.transaction():
                catalog.jobs.record_run("scrub", "failed", upstream=d.upstream, subject=d.qualified_ref,
                                        reason=f"re-fetch of corrupt dataset blob {sha[:12]} failed: {exc}",
                                        started=started)
    return False


def gc_job(ctx: JobContext) -> str:
    """Remove blobs (and their unpacked packages) that no non-yanked record needs."""
    started = utcnow()
    settings, catalog = ctx.settings, ctx.catalog
    store = Store(settings.store_dir)
    needed = catalog.models.needed_blobs() | catalog.datasets.needed_blobs()
    removed = 0
    for sha in list(store.iter_blobs()):
        if sha in needed:
            continue
        store.remove(sha)
        PackagesFolder(settings.packages_dir).remove(sha, drop_manifest=True)
        removed += 1
        log.info("gc: removed blob %s", sha)
    with catalog.transaction():
        for a in catalog.artefacts.rows():
            if a["sha256"] not in needed and not store.has(a["sha256"]):
                catalog.artefacts.delete_artefact(a["sha256"])
        summary = f"{removed} unneeded blob(s) removed, {len(needed)} needed"
        catalog.jobs.record_run("gc", "ok", reason=summary, started=started, changed=removed)
    ctx.progress(f"gc: {summary}")
    return summary
