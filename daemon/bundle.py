"""Air-gapped sites: ``synthmed export DIR`` and ``synthmed import DIR``.

A bundle folder holds::

    manifest.json               format, upstreams (config, accepted commit, bundle sha256), blobs
    upstreams/<name>.bundle     git bundle of the upstream's accepted commit
    blobs/<sha256>              the selected, verified blobs

The manifest is written last, so an interrupted export is never importable. Import checks
everything before it changes anything: every bundle's and blob's sha256, that every blob
is needed by a record at the bundled commits, fast-forward and signature rules as for a
sync. Only then are blobs added to the store (hashed again by the store) and the indexes
synced from the bundles.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable

from synthmed.registry.catalog import Catalog, utcnow
from synthmed.registry.errors import BundleError, SyncRefused
from synthmed.registry.hashing import hash_path
from synthmed.registry.settings import Settings, Upstream, load_settings

from .jobs import mirror_candidates
from .state import write_json_atomic
from .sync import SUBSTITUTION, ImmutableChanged, apply_changes, signers_file, sync_upstream
from .upstreams import ACCEPTED_REF, UpstreamRepo

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "synthmed-bundle/1"


class _DryRun(Exception):
    """Rolls back a trial application of a bundle's changes."""
CHUNK = 1 << 20


def export_bundle(settings: Settings, catalog: Catalog, dest: Path,
                  progress: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Write the upstream indexes (git bundles) and the selected verified blobs to ``dest``."""
    from synthmed.registry.store import Store

    if dest.exists() and not dest.is_dir():
        raise BundleError(f"{dest} is a file, not a folder", hint="export into a new or empty folder")
    if dest.exists() and any(dest.iterdir()):
        raise BundleError(f"{dest} is not empty", hint="export into a new or empty folder")
    blocker = next((p for p in dest.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise BundleError(f"cannot export to {dest}: {blocker} is a file, not a folder",
                          hint="export into a new or empty folder")
    (dest / "upstreams").mkdir(parents=True, exist_ok=True)
    (dest / "blobs").mkdir(exist_ok=True)
    rows = {r["name"]: r for r in catalog.upstream_rows()}
    ups = []
    for u in settings.upstreams:
        r = rows.get(u.name)
        if not r or not r["accepted_commit"]:
            log.warning("export: upstream %s was never synced; left out", u.name)
            continue
        repo = UpstreamRepo(settings.upstreams_dir / u.name)
        try:
            if repo.rev(ACCEPTED_REF) != r["accepted_commit"]:
                repo.set_ref(ACCEPTED_REF, r["accepted_commit"])
            out = dest / "upstreams" / f"{u.name}.bundle"
            progress(f"export: {u.name} at {r['accepted_commit'][:12]}")
            repo.bundle(out)
        finally:
            repo.close()
        digest, size = hash_path(out)
        ups.append({"name": u.name, "url": u.url, "branch": u.branch, "subfolder": u.subfolder,
                    "priority": u.priority, "require_signed": u.require_signed,
                    "allowed_signers": list(u.allowed_signers), "commit": r["accepted_commit"],
                    "bundle": f"upstreams/{u.name}.bundle", "sha256": digest, "size": size})
    store = Store(settings.store_dir)
    blobs = []
    seen: set[str] = set()
    for e in mirror_candidates(settings, catalog):
        sha = e.record.sha256
        if not sha or sha in seen or not store.has(sha):
            continue
        seen.add(sha)
        target = dest / "blobs" / sha
        with store.open_verified(sha) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        digest, size = hash_path(target)
        if digest != sha:
            target.unlink()
            raise BundleError(f"blob {sha} changed while it was exported", hint="run `synthmed daemon run --once --job scrub`")
        blobs.append({"sha256": sha, "size": size})
    progress(f"export: {len(ups)} upstream(s), {len(blobs)} blob(s)")
    manifest = {"format": BUNDLE_FORMAT, "created": utcnow(), "site": settings.name,
                "upstreams": ups, "blobs": blobs}
    write_json_atomic(dest / "manifest.json", manifest)
    return manifest


def _read_manifest(src: Path) -> dict[str, Any]:
    if not src.is_dir():
        raise BundleError(f"{src} is not a folder: a bundle is the folder `synthmed export DIR` writes",
                          hint="give the bundle's folder (the one holding manifest.json)")
    path = src / "manifest.json"
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path} is missing: not a synthmed bundle, or an interrupted export",
                          hint="export again with `synthmed export DIR`") from None
    except ValueError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}",
                          hint="the bundle is damaged; export it again with `synthmed export DIR`") from None
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a {BUNDLE_FORMAT} manifest",
                          hint="give a folder written by `synthmed export DIR`")
    problems = _manifest_problems(data)
    if problems:
        raise BundleError(f"{path}: malformed manifest; nothing was imported:\n"
                          + "\n".join(f"  - {p}" for p in problems),
                          hint="the bundle is damaged or was edited; export it again with `synthmed export DIR`",
                          problems=problems)
    return data


def _manifest_problems(data: dict[str, Any]) -> list[str]:
    """The manifest fields import reads, with their types (a hand-edited or damaged
    manifest must be an error, not a KeyError)."""
    problems: list[str] = []
    need = {"upstreams": ("name", "url", "branch", "commit", "bundle", "sha256"), "blobs": ("sha256",)}
    for section, keys in need.items():
        items = data.get(section, [])
        if not isinstance(items, list):
            problems.append(f"$.{section}: must be a list")
            continue
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                problems.append(f"$.{section}[{i}]: must be an object")
                continue
            for k in keys:
                if not isinstance(item.get(k), str) or not item.get(k):
                    problems.append(f"$.{section}[{i}].{k}: missing or not a string")
            for k in ("size", "priority"):
                required = section == "blobs" and k == "size"
                if (required or k in item) and (not isinstance(item.get(k), int) or isinstance(item.get(k), bool)):
                    problems.append(f"$.{section}[{i}].{k}: missing or not an integer")
    return problems


def _check_file(src: Path, rel: str, sha: str, size: int | None, problems: list[str]) -> None:
    p = (src / rel)
    if ".." in Path(rel).parts or Path(rel).is_absolute():
        problems.append(f"{rel}: path leaves the bundle")
        return
    if not p.is_file():
        problems.append(f"{rel}: missing")
        return
    digest, n = hash_path(p)
    if digest != sha:
        problems.append(f"{rel}: hashes to {digest}, the manifest says {sha} (tampered or damaged)")
    elif size is not None and n != size:
        problems.append(f"{rel}: {n} bytes, the manifest says {size}")


def import_bundle(settings: Settings, catalog: Catalog, src: Path,
                  progress: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Verify a bundle completely, then take in its blobs and indexes; BundleError on any problem."""
    from synthmed.registry.store import Store

    from synthmed.registry.site_config import append_upstream

    manifest = _read_manifest(src)
    problems: list[str] = []
    for u in manifest.get("upstreams", []):
        _check_file(src, u["bundle"], u["sha256"], u.get("size"), problems)
    for b in manifest.get("blobs", []):
        _check_file(src, f"blobs/{b['sha256']}", b["sha256"], b.get("size"), problems)
    listed = {b["sha256"] for b in manifest.get("blobs", [])}
    extra = sorted(p.name for p in (src / "blobs").glob("*") if p.name not in listed) if (src / "blobs").is_dir() else []
    if extra:
        problems.append(f"blobs/ holds files the manifest does not list: {', '.join(extra[:5])}")
    if problems:
        raise BundleError(f"the bundle {src} failed verification; nothing was imported:\n"
                          + "\n".join(f"  - {p}" for p in problems),
                          hint="export it again from the source site and copy it over again", problems=problems)

    # upstreams: use the site's own configuration, or add the bundle's to site.toml
    plan: list[tuple[Upstream, dict[str, Any], int]] = []
    to_add: list[Upstream] = []
    known = {u.name: u for u in settings.upstreams}
    for mu in manifest.get("upstreams", []):
        u = known.get(mu["name"]) or Upstream(
            name=mu["name"], url=mu["url"], branch=mu["branch"], subfolder=mu.get("subfolder", ""),
            priority=int(mu.get("priority", 100)), require_signed=bool(mu.get("require_signed")),
            allowed_signers=tuple(mu.get("allowed_signers", ())))
        if mu["name"] not in known:
            to_add.append(u)
        plan.append((u, mu, 0))

    # dry run: fetch each bundle into the mirror (moves only refs/synthmed/fetched) and check
    # fast-forward and signatures exactly as a sync would; collect blob needs at the new commits
    needed: set[str] = set()
    for u, mu, _ in plan:
        repo = UpstreamRepo(settings.upstreams_dir / u.name).ensure()
        try:
            new = repo.fetch_bundle(src / mu["bundle"])
            if new != mu["commit"]:
                problems.append(f"{mu['bundle']}: holds {new[:12]}, the manifest says {mu['commit'][:12]}")
                continue
            row = catalog.upstream_row(u.name)
            accepted = row["accepted_commit"] if row else repo.rev(ACCEPTED_REF)
            if accepted and accepted != new and not (repo.has_commit(accepted) and repo.is_ancestor(accepted, new)):
                problems.append(f"{u.name}: {new[:12]} does not descend from the accepted {accepted[:12]} "
                                "(a rewritten history or an older bundle)")
            if u.require_signed and accepted != new:
                bad = repo.unsigned_commits(accepted, new, signers_file(settings, u))
                problems.extend(f"{u.name}: commit {sha[:12]}: {why}" for sha, why in bad)
            db_accepted = row["accepted_commit"] if row else None
            if db_accepted and db_accepted != new and repo.has_commit(db_accepted):
                try:  # the same immutability check as a sync, in a transaction that is rolled back
                    with catalog.transaction():
                        _, skipped = apply_changes(catalog, u, repo, db_accepted, new, check_immutable=True)
                        problems.extend(f"{u.name}: {why}" for _, why in skipped if SUBSTITUTION in why)
                        raise _DryRun
                except _DryRun:
                    pass
                except ImmutableChanged as exc:
                    problems.append(f"{u.name}: {exc.message}")
            prefix = f"{u.subfolder}/models/" if u.subfolder else "models/"
            for c in repo.files(new, prefix):
                if c.path.endswith(".json") and c.blob:
                    for _, data in repo.read_blobs([c.blob]):
                        try:
                            art = json.loads(data)["package"]["artefact"]
                            if art.get("sha256"):
                                needed.add(str(art["sha256"]))
                        except (ValueError, KeyError, TypeError):
                            pass
        except SyncRefused as exc:
            problems.append(f"{u.name}: {exc.message}")
        finally:
            repo.close()
    stray = sorted(listed - needed)
    if stray:
        problems.append(f"blob(s) no record of the bundled indexes needs: {', '.join(s[:12] for s in stray[:5])}")
    if problems:
        raise BundleError(f"the bundle {src} was refused; nothing was imported:\n"
                          + "\n".join(f"  - {p}" for p in problems), problems=problems)

    # apply: blobs into the store (the store hashes them again), then the indexes
    store = Store(settings.store_dir)
    for b in manifest.get("blobs", []):
        res = store.add_file(src / "blobs" / b["sha256"])
        if res.sha256 != b["sha256"]:  # pragma: no cover - checked above; changed since?
            store.remove(res.sha256)
            raise BundleError(f"blobs/{b['sha256']} changed during the import")
        progress(f"import: blob {b['sha256'][:12]} ({b['size']} bytes)")
    for u in to_add:
        append_upstream(settings.home, u, f"added by `synthmed import` from {src} on {utcnow()}")
    if to_add:
        settings = load_settings(settings.home, {})
    results = []
    for order, u in enumerate(settings.upstreams):
        mu = next((m for m in manifest.get("upstreams", []) if m["name"] == u.name), None)
        if mu is None:
            continue
        res = sync_upstream(settings, catalog, u, order, bundle=src / mu["bundle"], progress=progress)
        if res.status != "ok":  # pragma: no cover - checked in the dry run
            raise BundleError(f"{u.name}: {res.reason}")
        results.append(res.as_dict())
    with catalog.transaction():
        for b in manifest.get("blobs", []):
            catalog.set_artefact(b["sha256"], state="verified", size=b["size"], source=f"import:{src}")
        catalog.record_run("import", "ok", reason=f"{len(results)} upstream(s), {len(listed)} blob(s) from {src}")
    return {"upstreams": results, "blobs": len(listed), "added_upstreams": [u.name for u in to_add]}
