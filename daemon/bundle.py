"""Air-gapped sites: ``synthmed export DIR`` and ``synthmed import DIR``.

A bundle folder holds::

    manifest.json               format, upstreams (config, accepted commit, bundle sha256), blobs
    upstreams/<name>.bundle     git bundle of the upstream's accepted commit
    blobs/<sha256>              the selected, verified blobs (model packages and published
                                datasets' artefacts, as the mirror policy selects them)

The manifest is written last, so an interrupted export is never importable, and a failed
export removes what it wrote. Import is all or nothing: it checks everything in a staging
folder inside the site before it changes anything (the manifest's fields, with every
upstream name, URL, branch and subfolder checked as in site.toml; every bundle's and
blob's sha256; each bundle with ``git bundle verify``; that every blob is needed by a
record at the bundled commits; fast-forward, signature and immutability rules as for a
sync). Only then are blobs added to the store (hashed again by the store), the indexes
synced from the staged bundles and site.toml replaced. An upstream an import adds gets
``url = "bundle:"``: it is updated by imports only, never fetched from the exporter's URL.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import git

from synthmed.registry import atomic
from synthmed.registry.catalog import Catalog
from synthmed.registry.errors import BundleError, ConfigError, SyncRefused
from synthmed.registry.hashing import hash_path
from synthmed.registry.settings import SITE_FILE, Settings, Upstream, read_site_toml, settings_from_toml
from synthmed.registry.authoring.site_config import render_site_toml, upstream_toml
from synthmed.registry.stamps import utcnow
from synthmed.registry.artefacts.store import Store
from synthmed.registry.upstream_check import (BUNDLE_URL, check_branch, check_commit, check_name, check_signer,
                                              check_subfolder, check_url, redact_url)

from .dataset_mirror import dataset_selected
from .dataset_sync import datasets_prefix
from .jobs import mirror_candidates, selected
from .sync import SUBSTITUTION, ImmutableChanged, apply_changes, models_prefix, signers_file, sync_upstream
from .upstreams import ACCEPTED_REF, UpstreamRepo

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "synthmed-bundle/1"


class _DryRun(Exception):
    """Rolls back a trial application of a bundle's changes."""
CHUNK = 1 << 20


def export_bundle(settings: Settings, catalog: Catalog, dest: Path,
                  progress: Callable[[str], None] = lambda m: None, *, exclusive: bool = True) -> dict[str, Any]:
    """Write the upstream indexes (git bundles) and the selected verified blobs to ``dest``.

    ``dest`` may be relative (to the current folder). An export that fails leaves no
    partial export: a folder it made is removed again, and a folder that was empty before
    is emptied again.

    ``exclusive=False`` exports while the daemon runs (the caller does not hold the site
    lock): nothing of the site is written, the catalog is read in one short read
    transaction (a consistent snapshot of the accepted commits and the selected blobs), and
    each git bundle is checked to hold the snapshot's commit; an upstream the daemon moves
    meanwhile makes the export take a fresh snapshot (three tries).
    """
    dest = Path(dest).expanduser().absolute()
    if dest.exists() and not dest.is_dir():
        raise BundleError(f"{dest} is a file, not a folder", hint="export into a new or empty folder")
    if dest.exists() and any(dest.iterdir()):
        raise BundleError(f"{dest} is not empty", hint="export into a new or empty folder")
    blocker = next((p for p in dest.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise BundleError(f"cannot export to {dest}: {blocker} is a file, not a folder",
                          hint="export into a new or empty folder")
    made = dest  # the highest folder this export creates (None: dest existed, empty)
    while not made.parent.exists():
        made = made.parent
    top: Path | None = None if dest.exists() else made
    try:
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BundleError(f"cannot create {dest}: {exc.strerror or exc}",
                              hint="export into a folder you can write to") from None
        for attempt in range(3):
            try:
                return _export_into(settings, catalog, dest, progress, exclusive)
            except _Moved as moved:
                progress(f"export: {moved}; taking a fresh snapshot")
                for name in ("upstreams", "blobs"):
                    shutil.rmtree(dest / name, ignore_errors=True)
        raise BundleError("export: the daemon kept moving the upstreams while exporting (3 tries)",
                          hint="export again, or stop the daemon for the export")
    except BaseException:
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)  # made by this export, just now
        else:
            for name in ("upstreams", "blobs", "manifest.json"):
                p = dest / name
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                elif p.exists():
                    p.unlink()
        raise


class _Moved(Exception):
    """An upstream's accepted commit moved between the catalog snapshot and its bundle."""


def _export_into(settings: Settings, catalog: Catalog, dest: Path,
                 progress: Callable[[str], None], exclusive: bool) -> dict[str, Any]:
    (dest / "upstreams").mkdir()
    (dest / "blobs").mkdir()
    with catalog.reading():  # one snapshot: accepted commits and the blobs their records select
        rows = {r["name"]: r for r in catalog.federation.upstream_rows()}
        wanted = list(dict.fromkeys(e.record.sha256 for e in mirror_candidates(settings, catalog) if e.record.sha256))
        wanted += [d.record.sha256 for d in catalog.datasets.list_datasets(all_versions=True)  # published datasets
                   if d.status != "yanked" and dataset_selected(settings.mirror, d, catalog, selected)]
    ups = []
    for u in settings.upstreams:
        r = rows.get(u.name)
        if not r or not r["accepted_commit"]:
            log.warning("export: upstream %s was never synced; left out", u.name)
            continue
        repo = UpstreamRepo.for_upstream(settings.upstreams_dir, u.name)
        try:
            if repo.rev(ACCEPTED_REF) != r["accepted_commit"]:
                if not exclusive:  # the daemon is between its catalog commit and the ref, or moved on
                    raise _Moved(f"upstream {u.name} moved")
                repo.set_ref(ACCEPTED_REF, r["accepted_commit"])
            out = dest / "upstreams" / f"{u.name}.bundle"
            progress(f"export: {u.name} at {r['accepted_commit'][:12]}")
            repo.bundle(out)
            if not exclusive and [h[0] for h in repo.bundle_heads(out)] != [r["accepted_commit"]]:
                raise _Moved(f"upstream {u.name} moved while it was bundled")
        except git.GitCommandError as exc:
            err = (exc.stderr or str(exc)).strip().replace("\n", " ")
            raise BundleError(f"export: cannot bundle upstream {u.name!r}: {err}",
                              hint="run `synthmed sync` (or `synthmed catalog rebuild`) and export again") from None
        finally:
            repo.close()
        digest, size = hash_path(out)
        # the URL is for people reading the manifest (an import never fetches from it): no password
        ups.append({"name": u.name, "url": redact_url(u.url), "branch": u.branch, "subfolder": u.subfolder,
                    "priority": u.priority, "require_signed": u.require_signed,
                    "allowed_signers": list(u.allowed_signers), "commit": r["accepted_commit"],
                    "bundle": f"upstreams/{u.name}.bundle", "sha256": digest, "size": size})
    store = Store(settings.store_dir)
    blobs = []
    seen: set[str] = set()
    for sha in wanted:
        if sha in seen or not store.has(sha):
            continue
        seen.add(sha)
        target = dest / "blobs" / sha
        try:
            src = store.open_verified(sha) if exclusive else open(store.blob_path(sha), "rb")
        except FileNotFoundError:  # removed by the daemon's gc since the snapshot
            log.warning("export: blob %s was removed while exporting; left out", sha)
            continue
        with src, open(target, "wb") as dst:  # without the lock: hashed below, as every export is
            shutil.copyfileobj(src, dst, CHUNK)
        digest, size = hash_path(target)
        if digest != sha:
            raise BundleError(f"blob {sha} changed while it was exported", hint="run `synthmed daemon run --once --job scrub`")
        blobs.append({"sha256": sha, "size": size})
    progress(f"export: {len(ups)} upstream(s), {len(blobs)} blob(s)")
    manifest = {"format": BUNDLE_FORMAT, "created": utcnow(), "site": settings.name,
                "upstreams": ups, "blobs": blobs}
    atomic.write_json(dest / "manifest.json", manifest, sort_keys=True, mode=0o600, fsync=True, parents=True)
    return manifest


MANIFEST_MAX_BYTES = 16 << 20


def _read_manifest(src: Path) -> dict[str, Any]:
    if not src.is_dir():
        raise BundleError(f"{src} is not a folder: a bundle is the folder `synthmed export DIR` writes",
                          hint="give the bundle's folder (the one holding manifest.json)")
    path = src / "manifest.json"
    try:
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise BundleError(f"{path} is not a regular file", hint="export again with `synthmed export DIR`")
        if path.exists() and path.stat().st_size > MANIFEST_MAX_BYTES:
            raise BundleError(f"{path} is larger than {MANIFEST_MAX_BYTES} bytes: not a manifest synthmed writes",
                              hint="export again with `synthmed export DIR`")
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path} is missing: not a synthmed bundle, or an interrupted export",
                          hint="export again with `synthmed export DIR`") from None
    except (ValueError, RecursionError) as exc:
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
    """The manifest fields import reads, with their types and, for everything that reaches
    git or the filesystem (names, URLs, branches, subfolders, commits, hashes, paths), the
    same checks as site.toml (a hand-edited or hostile manifest is an error, not a KeyError
    and never a git option or a path outside the bundle)."""
    problems: list[str] = []
    need = {"upstreams": ("name", "url", "branch", "commit", "bundle", "sha256"), "blobs": ("sha256",)}
    for section, keys in need.items():
        items = data.get(section, [])
        if not isinstance(items, list):
            problems.append(f"$.{section}: must be a list")
            continue
        for i, item in enumerate(items):
            where = f"$.{section}[{i}]"
            if not isinstance(item, dict):
                problems.append(f"{where}: must be an object")
                continue
            bad = [k for k in keys if not isinstance(item.get(k), str) or not item.get(k)]
            problems.extend(f"{where}.{k}: missing or not a string" for k in bad)
            for k in ("size", "priority"):
                required = section == "blobs" and k == "size"
                v = item.get(k)
                if (required or k in item) and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                    problems.append(f"{where}.{k}: missing or not a whole number of 0 or more")
            checks: list[tuple[str, Callable[[Any, str], Any]]] = [("sha256", _check_sha256)]
            if section == "upstreams":
                checks += [("name", check_name), ("url", check_url), ("branch", check_branch),
                           ("commit", check_commit), ("subfolder", check_subfolder)]
            for k, check in checks:
                if k in bad or (k == "subfolder" and k not in item):
                    continue
                try:
                    check(item[k], f"{where}.{k}")
                except ConfigError as exc:
                    problems.append(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
            if section != "upstreams":
                continue
            if "name" not in bad and "bundle" not in bad and item["bundle"] != f"upstreams/{item['name']}.bundle":
                problems.append(f"{where}.bundle: {item['bundle']!r} must be 'upstreams/<name>.bundle' "
                                f"('upstreams/{item['name']}.bundle')")
            if "require_signed" in item and not isinstance(item["require_signed"], bool):
                problems.append(f"{where}.require_signed: must be true or false")
            signers = item.get("allowed_signers", [])
            if not isinstance(signers, list):
                problems.append(f"{where}.allowed_signers: must be a list of strings")
            else:
                for j, line in enumerate(signers):
                    try:
                        check_signer(line, f"{where}.allowed_signers[{j}]")
                    except ConfigError as exc:
                        problems.append(exc.message)
    names = [u.get("name") for u in data.get("upstreams", []) if isinstance(u, dict)] \
        if isinstance(data.get("upstreams", []), list) else []
    dupes = sorted({str(n) for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"$.upstreams: {', '.join(map(repr, dupes))} listed more than once")
    return problems


def _check_sha256(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ConfigError(f"{where}: {str(value)[:80]!r} is not a sha256 (64 lower-case hexadecimal digits)")
    return value


def _check_file(src: Path, rel: str, sha: str, size: int | None, problems: list[str],
                copy_to: Path | None = None) -> None:
    """Check one file of the bundle against the manifest; with ``copy_to``, hash a private
    copy instead (so what was checked is what is used)."""
    p = src / rel
    if ".." in Path(rel).parts or Path(rel).is_absolute():
        problems.append(f"{rel}: path leaves the bundle")
        return
    if p.is_symlink() or not p.is_file():
        problems.append(f"{rel}: missing, or not a regular file")
        return
    if copy_to is not None:
        copy_to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, copy_to)
        p = copy_to
    digest, n = hash_path(p)
    if digest != sha:
        problems.append(f"{rel}: hashes to {digest}, the manifest says {sha} (tampered or damaged)")
    elif size is not None and n != size:
        problems.append(f"{rel}: {n} bytes, the manifest says {size}")


def _refuse(src: Path, problems: list[str], verb: str = "was refused") -> BundleError:
    return BundleError(f"the bundle {src} {verb}; nothing was imported:\n"
                       + "\n".join(f"  - {p}" for p in problems),
                       hint="export it again from the source site and copy it over again", problems=problems)


class _Staging:
    """A private folder inside the site for one import (made here, removed afterwards)."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=".import-staging-", dir=home))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _staged_repo(staging: Path, live: UpstreamRepo, name: str) -> UpstreamRepo:
    """A bare repository in the staging folder that sees the live mirror's objects (read
    only, through git's alternates), so ancestry is checked without touching the mirror."""
    repo = UpstreamRepo(staging / "mirrors" / name).ensure()
    if live.exists():
        alt = repo.path / "objects" / "info" / "alternates"
        alt.parent.mkdir(parents=True, exist_ok=True)
        alt.write_text(str((live.path / "objects").absolute()) + "\n")
    return repo


def import_bundle(settings: Settings, catalog: Catalog, src: Path,
                  progress: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Verify a bundle completely, then take in its blobs and indexes; BundleError on any problem.

    All or nothing: every check runs against copies in a staging folder inside the site
    before anything of the site changes; a refused bundle leaves the site as it was.
    ``src`` may be relative (to the current folder).
    """
    src = Path(src).expanduser().absolute()
    manifest = _read_manifest(src)
    with _Staging(settings.home) as staging:
        plan, new_toml = _verify(settings, catalog, src, manifest, staging)
        return _commit(settings, catalog, src, manifest, plan, new_toml, staging, progress)


def _verify(settings: Settings, catalog: Catalog, src: Path, manifest: dict[str, Any],
            staging: Path) -> tuple[list[tuple[Upstream, dict[str, Any], Path]], str | None]:
    """Every check of an import, against staged copies; raises BundleError listing every problem."""
    problems: list[str] = []
    staged: dict[str, Path] = {}
    for mu in manifest.get("upstreams", []):
        staged[mu["name"]] = staging / "bundles" / f"{mu['name']}.bundle"
        _check_file(src, mu["bundle"], mu["sha256"], mu.get("size"), problems, copy_to=staged[mu["name"]])
    for b in manifest.get("blobs", []):
        _check_file(src, f"blobs/{b['sha256']}", b["sha256"], b.get("size"), problems)
    listed = {b["sha256"] for b in manifest.get("blobs", [])}
    extra = sorted(p.name for p in (src / "blobs").glob("*") if p.name not in listed) if (src / "blobs").is_dir() else []
    if extra:
        problems.append(f"blobs/ holds files the manifest does not list: {', '.join(extra[:5])}")
    if problems:
        raise _refuse(src, problems, "failed verification")

    # upstreams: the site's own configuration, or the bundle's added to site.toml with
    # url = "bundle:" (updated by imports only: an import never makes a site reach out)
    plan: list[tuple[Upstream, dict[str, Any], Path]] = []
    to_add: list[Upstream] = []
    known = {u.name: u for u in settings.upstreams}
    for mu in manifest.get("upstreams", []):
        u = known.get(mu["name"]) or Upstream(
            name=mu["name"], url=BUNDLE_URL, branch=mu["branch"], subfolder=check_subfolder(mu.get("subfolder", ""), "subfolder"),
            priority=int(mu.get("priority", 100)), require_signed=bool(mu.get("require_signed")),
            allowed_signers=tuple(mu.get("allowed_signers", ())))
        if mu["name"] not in known:
            to_add.append(u)
        plan.append((u, mu, staged[mu["name"]]))

    needed: set[str] = set()
    for u, mu, bundle in plan:
        live = UpstreamRepo.for_upstream(settings.upstreams_dir, u.name)
        if (live.path.exists() or live.path.is_symlink()) and not live.exists() \
                and not UpstreamRepo.made_by_synthmed(live.path):
            problems.append(f"{u.name}: {live.path} is in the way: not a git mirror, and synthmed did not make it "
                            "(move it away and import again)")
            continue
        repo = _staged_repo(staging, live, u.name)
        try:
            new = repo.fetch_bundle(bundle)
            if new != mu["commit"]:
                problems.append(f"{mu['bundle']}: holds {new[:12]}, the manifest says {mu['commit'][:12]}")
                continue
            row = catalog.federation.upstream_row(u.name)
            accepted = row["accepted_commit"] if row else (live.rev(ACCEPTED_REF) if live.exists() else None)
            if accepted and accepted != new and not (repo.has_commit(accepted) and repo.is_ancestor(accepted, new)):
                problems.append(f"{u.name}: {new[:12]} does not descend from the accepted {accepted[:12]} "
                                "(a rewritten history or an older bundle)")
            if u.require_signed and accepted != new:
                bad = repo.unsigned_commits(accepted, new, signers_file(settings, u, staging))
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
            for c in repo.files(new, models_prefix(u.subfolder)) + repo.files(new, datasets_prefix(u.subfolder)):
                if c.path.endswith(".json") and c.blob:
                    for _, data in repo.read_blobs([c.blob]):
                        try:
                            parsed = json.loads(data)
                            art = parsed["package"]["artefact"] if "package" in parsed else parsed["artefact"]
                            if art.get("sha256"):
                                needed.add(str(art["sha256"]))
                        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                            pass
        except SyncRefused as exc:
            problems.append(f"{u.name}: {exc.message}")
        except git.GitCommandError as exc:
            problems.append(f"{u.name}: git: {(exc.stderr or str(exc)).strip()}")
        finally:
            repo.close()
    stray = sorted(listed - needed)
    if stray:
        problems.append(f"blob(s) no record of the bundled indexes needs: {', '.join(s[:12] for s in stray[:5])}")
    new_toml: str | None = None
    if to_add and not problems:
        path = settings.site_file
        old = path.read_text() if path.exists() else render_site_toml([], settings.home.name)
        new_toml = old.rstrip("\n") + "\n" + "".join(
            upstream_toml(u, f"added by `synthmed import` from {src} on {utcnow()}; updated only by imports "
                             f"(the exporting site followed {redact_url(str(mu['url']))})")
            for u in to_add for mu in manifest["upstreams"] if mu["name"] == u.name)
        tmp = staging / SITE_FILE
        tmp.write_text(new_toml)
        try:
            settings_from_toml(settings.home, read_site_toml(tmp))
        except ConfigError as exc:
            problems.append(f"site.toml with the new upstreams would be invalid: {exc.message}")
    if problems:
        raise _refuse(src, problems)
    return plan, new_toml


def _commit(settings: Settings, catalog: Catalog, src: Path, manifest: dict[str, Any],
            plan: list[tuple[Upstream, dict[str, Any], Path]], new_toml: str | None, staging: Path,
            progress: Callable[[str], None]) -> dict[str, Any]:
    """Everything was verified: blobs into the store (hashed again), the indexes synced from
    the staged bundles, then site.toml replaced in one rename."""

    listed = {b["sha256"] for b in manifest.get("blobs", [])}
    store = Store(settings.store_dir)
    for b in manifest.get("blobs", []):
        res = store.add_file(src / "blobs" / b["sha256"])
        if res.sha256 != b["sha256"]:  # pragma: no cover - checked above; changed since?
            store.remove(res.sha256)
            raise BundleError(f"blobs/{b['sha256']} changed during the import")
        progress(f"import: blob {b['sha256'][:12]} ({b['size']} bytes)")
    new_settings = settings
    if new_toml is not None:
        new_settings = settings_from_toml(settings.home, read_site_toml(staging / SITE_FILE))
        new_settings = replace(settings, upstreams=new_settings.upstreams)
    staged = {u.name: bundle for u, _, bundle in plan}
    results = []
    for order, u in enumerate(new_settings.upstreams):
        if u.name not in staged:
            continue
        synced = sync_upstream(new_settings, catalog, u, order, bundle=staged[u.name], progress=progress)
        if synced.status != "ok":  # pragma: no cover - checked in the dry run
            raise BundleError(f"{u.name}: {synced.reason}")
        results.append(synced.as_dict())
    if new_toml is not None:
        atomic.write_text(settings.site_file, new_toml)
    with catalog.transaction():
        for b in manifest.get("blobs", []):
            catalog.artefacts.set_artefact(b["sha256"], state="verified", size=b["size"], source=f"import:{src}")
        catalog.jobs.record_run("import", "ok", reason=f"{len(results)} upstream(s), {len(listed)} blob(s) from {src}")
    added = [u.name for u, _, _ in plan if u.name not in {k.name for k in settings.upstreams}]
    return {"upstreams": results, "blobs": len(listed), "added_upstreams": added}
