"""Site commands: init, sync, daemon run, status, search, show, catalog rebuild, export, import."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from synthmed.registry.errors import CatalogError, ConfigError, SiteNotFound
from synthmed.registry.settings import Settings, default_home

from .common import add_json_flag, print_json, print_table, settings_from_args
from .quality_text import quality_lines
from .show_text import indented_table, output_rows, parameter_rows

if TYPE_CHECKING:
    from synthmed.daemon.sync import SyncResult


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _site(args: argparse.Namespace, **overrides: Any) -> Settings:
    settings = settings_from_args(args, **overrides)
    if not settings.site_file.exists():
        raise SiteNotFound(f"no site at {settings.home} (no site.toml)",
                           hint=f"create one: `synthmed init {settings.home} --upstream NAME=URL`, "
                                "or point --site / SYNTHMED_HOME at an existing site")
    return settings


# -- init ------------------------------------------------------------------------------

def cmd_init(args: argparse.Namespace) -> int:
    from synthmed.registry.authoring.site_config import init_site, parse_upstream_spec

    home = Path(args.dir or args.site or default_home()).expanduser().resolve()
    specs = [parse_upstream_spec(s) for s in args.upstream or []]
    path = init_site(home, specs, name=args.name, force=args.force, branch=args.branch, subfolder=args.subfolder)
    print(f"wrote {path}")
    print(f"next: `synthmed --site {home} sync`, then `synthmed --site {home} daemon run`")
    return 0


# -- sync / daemon ---------------------------------------------------------------------

#: exit statuses of `synthmed sync` (docs/sites.md), the most serious one when several apply
SYNC_OK, SYNC_UPSTREAM_FAILED, SYNC_RECORDS_REFUSED, SYNC_ARTEFACTS_FAILED = 0, 1, 4, 5
SYNC_EXIT_HELP = """exit status:
  0  every upstream synced, no record refused, every selected artefact fetched and verified
  1  an upstream could not be synced (fetch failed, not a fast-forward, unsigned commits:
     its previous state keeps serving), or the command itself failed (an `error:` line)
  2  the command line was wrong
  4  a record was refused (invalid, or a rewrite of a merged version: the version as
     accepted keeps being served); the rest of its upstream synced
  5  an artefact could not be fetched or verified by the mirror step (`synthmed status`)"""


def sync_exit_status(results: "Sequence[SyncResult]", mirror_failed: int) -> int:
    """The exit status of `synthmed sync` for these results (see SYNC_EXIT_HELP)."""
    if any(r.status != "ok" for r in results):
        return SYNC_UPSTREAM_FAILED
    if any(r.skipped for r in results):
        return SYNC_RECORDS_REFUSED
    return SYNC_ARTEFACTS_FAILED if mirror_failed else SYNC_OK


def cmd_sync(args: argparse.Namespace) -> int:
    from synthmed.daemon.lock import SiteLock
    from synthmed.daemon.sync import sync_all
    from synthmed.registry.catalog import Catalog

    settings = _site(args)
    for name in args.accept_rewrite or ():
        settings.upstream(name)  # an unknown name is an error naming the known ones
    if not settings.upstreams:
        print(f"warning: {settings.site_file} names no upstreams, so there is nothing to sync\n"
              f"  hint: add an [[upstreams]] table (name, url) to it, or recreate it with "
              f"`synthmed init {settings.home} --force --upstream NAME=URL`", file=sys.stderr)
    progress = (lambda m: None) if args.quiet else _progress
    with SiteLock(settings.home, "synthmed sync"), Catalog.open(settings.catalog_path, readonly=False) as cat:
        results = sync_all(settings, cat, only=args.upstream or None, accept_rewrite=tuple(args.accept_rewrite or ()),
                           progress=progress)
        mirror = None
        not_mirrored: list[str] = []
        if not args.no_mirror:
            from synthmed.daemon.jobs import JobContext, mirror_job  # the store, packages and formats: only to mirror

            ctx = JobContext(settings, cat, progress)
            mirror = mirror_job(ctx)
            not_mirrored = ctx.failed
    if args.json:
        print_json({"upstreams": [r.as_dict() for r in results], "mirror": mirror, "not_mirrored": not_mirrored,
                    "exit_status": sync_exit_status(results, len(not_mirrored))})
    else:
        for r in results:
            line = f"{r.upstream}: {r.status}"
            if r.new_commit:
                line += f" at {r.new_commit[:12]} ({r.changed} changed)"
            if r.reason:
                line += f": {r.reason}"
            print(line)
            if r.status == "failed":
                print(f"  hint: check upstream {r.upstream!r} (url, branch) in {settings.site_file} and the "
                      "network, then sync again", file=sys.stderr)
            for path, why in r.skipped:
                print(f"  skipped {path}: {why.splitlines()[-1].strip()}")
        if mirror:
            print(f"mirror: {mirror}")
            for ref in not_mirrored:
                print(f"  not mirrored {ref}: see `synthmed status` for why")
    return sync_exit_status(results, len(not_mirrored))


def cmd_daemon_run(args: argparse.Namespace) -> int:
    from synthmed.daemon.service import run_daemon

    settings = _site(args, sync_interval_minutes=args.sync_interval)
    if not args.quiet and not args.verbose:  # a service logs its jobs: site.log_level (default INFO)
        logging.getLogger().setLevel(getattr(logging, settings.log_level.upper(), logging.INFO))
    return run_daemon(settings, once=args.once, progress=_progress if args.once else (lambda m: None),
                      only=args.job or None, loader=lambda: _site(args, sync_interval_minutes=args.sync_interval))


# -- status / search / show ------------------------------------------------------------

def _open_catalog(settings: Settings) -> Any:
    from synthmed.registry.catalog import Catalog

    return Catalog.open(settings.catalog_path, readonly=True)


def cmd_status(args: argparse.Namespace) -> int:
    from synthmed.daemon.status import format_status, site_status

    settings = _site(args, stale_after_hours=args.stale_after)
    broken: CatalogError | None = None
    try:
        cat = _open_catalog(settings)
    except CatalogError as exc:
        cat = None
        broken = exc if settings.catalog_path.exists() else None
    try:
        st = site_status(settings, cat)
    finally:
        if cat is not None:
            cat.close()
    if broken is not None:  # a catalog that exists but cannot be read is not "no catalog yet"
        st["warnings"] = [w for w in st.get("warnings", []) if not str(w).startswith("no catalog yet")]
        st["warnings"].append(f"{broken.message}; `synthmed catalog rebuild` recreates it")
    if args.json:
        print_json(st)
    else:
        print(format_status(st))
    # the health check for monitoring: 0 healthy, 3 unhealthy (1 stays "synthmed itself failed")
    return 0 if st["health"]["ok"] else 3


def _short(values: list[str], n: int = 3) -> str:
    return ",".join(values[:n]) + (f",+{len(values) - n}" if len(values) > n else "")


def cmd_search(args: argparse.Namespace) -> int:
    settings = _site(args)
    with _open_catalog(settings) as cat:
        if args.datasets:
            from .dataset_site_cmds import print_datasets

            return print_datasets(cat.datasets.search(" ".join(args.query), modality=args.modality,
                                                      anatomy=args.anatomy, model=args.model, license=args.license,
                                                      upstream=args.upstream, limit=args.limit), args.json)
        if args.upstream is not None:
            known = [str(r["name"]) for r in cat.federation.upstream_rows()]
            if args.upstream not in known:
                raise ConfigError(f"--upstream {args.upstream!r}: this site has no upstream of that name",
                                  hint=f"known upstreams: {', '.join(known) or 'none'}")
        if args.limit < 0:
            raise ConfigError(f"--limit {args.limit}: must be 0 or more", hint="e.g. --limit 20 (default 50)")
        runnable: dict[str, Any] = {}
        if args.runnable:
            from synthmed.registry.packages import runnable_upstreams
            from synthmed.registry.artefacts.store import Store

            runnable = {"runnable": True, "code_upstreams": runnable_upstreams(settings),
                        "held_blobs": set(Store(settings.store_dir).iter_blobs())}
        from synthmed.registry.measuring import ranking as rankings

        ranking = rankings.choose(cat, args.rank, args.rank_key) if args.rank else None
        if args.rank_key and not args.rank:
            raise ConfigError("--rank-key needs --rank METRIC", hint="e.g. --rank fd --rank-key 3f2a9c")
        found = rankings.search(cat, " ".join(args.query), modality=args.modality, anatomy=args.anatomy,
                                architecture=args.architecture, license=args.license, rank=ranking,
                                limit=args.limit, upstream=args.upstream, **runnable)
        tests = cat.tests.last_flags(found)
        if args.json:
            items = [{**e.as_dict(), "last_test": tests.get(e.qualified_ref)} for e in found]
            if ranking is not None:
                for it, e in zip(items, found):
                    it["rank_value"] = e.score
                print_json({"ranking": ranking.as_dict(), "models": items})
            else:
                print_json(items)
            return 0
        rows = []
        for e in found:
            t = tests.get(e.qualified_ref)
            rows.append({"ref": e.qualified_ref, "title": str(e.record.data.get("title", ""))[:48],
                         "modality": _short(e.record.data.get("modality", [])),
                         "state": e.artefact_state,
                         "test": "-" if t is None else ("passed" if t["passed"] else "FAILING"),
                         **({"score": "-" if e.score is None else e.score} if args.rank else {})})
        print_table(rows, ["ref", "title", "modality", "state", "test"] + (["score"] if args.rank else []))
        if ranking is not None:
            print(ranking.describe())
            for k in ranking.other_keys:
                print(f"  other key {str(k['key'])[:12]}: {k['models']} model(s), reference {k['reference']}, "
                      f"extractor {k['extractor']}")
        if args.rank and found and all(e.score is None for e in found):
            print(f"warning: none of these models reports or has measured the metric {args.rank!r}\n"
                  "  hint: metric names are those in the records' metrics (`synthmed show REF` lists them) "
                  "or those `synthmed evaluate` measures (fd, kid, precision, recall, density, coverage, cmmd, "
                  "ms_ssim_diversity)", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    settings = _site(args)
    with _open_catalog(settings) as cat:
        entry = cat.models.resolve(args.ref, allow_yanked=True)  # shown, never served: generate still refuses it
        versions = [{"version": e.version, "status": e.status, "upstream": e.upstream}
                    for e in cat.models.rows_for_id(entry.id)]
        tests = cat.tests.tests_of(entry.upstream, entry.id, entry.version, entry.record.sha256, limit=5)
        evals = cat.evaluations.evaluations_of(entry.upstream, entry.id, entry.version, entry.record.sha256)
        audits = cat.audits.latest_of(entry.upstream, entry.id, entry.version, entry.record.sha256)
    data = entry.as_dict(full=True)
    data["evaluations"] = [{**e, "params": json.loads(e["params"]), "provenance": json.loads(e["provenance"])}
                           for e in evals]
    data["audits"] = audits
    data["versions"] = versions
    data["shadows"] = list(entry.shadows)
    data["tests"] = tests
    if entry.status == "yanked":
        data["yanked"] = True
    if args.json:
        print_json(data)
        return 0
    rec = entry.record.data
    if entry.status == "yanked":
        reason = entry.status_reason or "no reason given"
        print(f"*** YANKED: {entry.qualified_ref} is withdrawn and is never served or run: {reason} ***")
        live = [v for v in versions if v["status"] != "yanked" and v["upstream"] == entry.upstream]
        if live:
            print(f"    use another version: {', '.join(v['version'] for v in live)}")
        print()
    print(f"{rec.get('title') or entry.id}")
    if rec.get("summary"):
        print(f"  {rec['summary']}")
    print()
    arch = rec.get("architecture") or {}
    pkg = rec.get("package") or {}
    art = pkg.get("artefact") or {}
    lines = [
        ("ref", entry.qualified_ref),
        ("status", entry.status + (f" ({entry.status_reason})" if entry.status_reason else "")),
        ("modality", ", ".join(rec.get("modality") or []) or "-"),
        ("anatomy", ", ".join(rec.get("anatomy") or []) or "-"),
        ("architecture", " / ".join(str(arch[k]) for k in ("family", "name") if arch.get(k)) or "-"),
        ("license", rec.get("license") or "-"),
        ("package", f"{pkg.get('format', '?')}, "
                    + (f"sha256 {str(art['sha256'])[:12]}..." if art.get("sha256") else "not pinned (never run)")
                    + (f", {art['size']} bytes" if art.get("size") else "")),
        ("artefact", entry.artefact_state),
    ]
    if tests:
        t = tests[0]
        lines.append(("last test", f"{'passed' if t['passed'] else 'FAILED'} at {t['finished']}"
                      + (f": {t['reason']}" if t["reason"] else "") + " (this upstream's package)"))
    else:
        lines.append(("last test", "none for this upstream's package"))
    lines.append(("versions", ", ".join(f"{v['upstream']}/{v['version']} ({v['status']})" for v in versions)))
    if entry.shadows:
        lines.append(("shadows", f"{', '.join(entry.shadows)} (same id, lower priority)"))
    for k, v in lines:
        print(f"{k + ':':<14}{v}")
    print()
    params = parameter_rows(entry.record.inputs)
    print("parameters:" + ("" if params else " none"))
    if params:
        indented_table(params, ["name", "type", "default", "allowed", "description"])
    if entry.record.array_inputs:
        from synthmed.registry.array_inputs import describe as describe_input

        print("array inputs (--input NAME=FOLDER, one file per sample):")
        indented_table([{"name": str(a["name"]), "takes": describe_input(a),
                          "medigan_arg": str(a.get("medigan_arg", ""))} for a in entry.record.array_inputs],
                        ["name", "takes", "medigan_arg"])
    print("outputs:")
    indented_table(output_rows(list(entry.record.outputs)), ["name", "kind", "dims", "shape", "dtype", "range",
                                                             "spacing_mm"])
    print()
    for line in quality_lines(evals, audits):
        print(line)
    print(f"the full record and state: `synthmed show {entry.qualified_ref} --json`")
    return 0


# -- catalog / export / import ---------------------------------------------------------

def cmd_catalog_rebuild(args: argparse.Namespace) -> int:
    from synthmed.daemon.lock import SiteLock
    from synthmed.daemon.rebuild import rebuild_catalog

    settings = _site(args)
    with SiteLock(settings.home, "synthmed catalog rebuild"):
        summary = rebuild_catalog(settings, progress=_progress)
    if args.json:
        print_json(summary)
    else:
        for name, s in summary["upstreams"].items():
            print(f"{name}: {s}")
        print(f"blobs: {summary['blobs']}; catalog {summary['catalog']} rebuilt")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from synthmed.daemon.bundle import export_bundle
    from synthmed.daemon.lock import SiteLock
    from synthmed.registry.catalog import Catalog
    from synthmed.registry.errors import SiteLocked

    settings = _site(args)
    lock = SiteLock(settings.home, "synthmed export")
    try:
        lock.acquire()
    except SiteLocked as exc:  # the daemon runs: export a consistent snapshot without stopping it
        _progress(f"export: {exc.message.split(';')[0]}; exporting a snapshot while it runs")
        with Catalog.open(settings.catalog_path, readonly=True) as cat:
            manifest = export_bundle(settings, cat, Path(args.dir), progress=_progress, exclusive=False)
    else:
        try:
            with Catalog.open(settings.catalog_path, readonly=False) as cat:
                manifest = export_bundle(settings, cat, Path(args.dir), progress=_progress)
        finally:
            lock.release()
    if args.json:
        print_json(manifest)
    else:
        print(f"exported {len(manifest['upstreams'])} upstream(s) and {len(manifest['blobs'])} blob(s) to {args.dir}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from synthmed.daemon.bundle import import_bundle
    from synthmed.daemon.lock import SiteLock
    from synthmed.registry.catalog import Catalog

    settings = _site(args)
    with SiteLock(settings.home, "synthmed import"), Catalog.open(settings.catalog_path, readonly=False) as cat:
        summary = import_bundle(settings, cat, Path(args.dir), progress=_progress)
    if args.json:
        print_json(summary)
    else:
        for r in summary["upstreams"]:
            print(f"{r['upstream']}: {r['status']} at {str(r['new_commit'])[:12]} ({r['changed']} changed)")
        print(f"{summary['blobs']} blob(s) imported")
    return 0


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("init", help="create a site folder with a commented site.toml")
    p.add_argument("dir", nargs="?", help="site folder (default: --site, $SYNTHMED_HOME or the user data dir)")
    p.add_argument("--upstream", action="append", metavar="NAME=URL[#BRANCH[:SUBFOLDER]]",
                   help="an upstream index (repeatable; the first gets the highest priority)")
    p.add_argument("--branch", help="branch for upstreams that do not name one (default: the repo's, else main)")
    p.add_argument("--subfolder", help="index subfolder for upstreams that do not name one (local repos: detected)")
    p.add_argument("--name", help="the site's name")
    p.add_argument("--force", action="store_true", help="overwrite an existing site.toml")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("sync", help="sync the upstream indexes and mirror the selected models now",
                       epilog=SYNC_EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", action="append", metavar="NAME", help="only this upstream (repeatable)")
    p.add_argument("--accept-rewrite", action="append", metavar="NAME",
                   help="accept a non-fast-forward update of this upstream (a rewritten history)")
    p.add_argument("--no-mirror", action="store_true", help="only sync the indexes")
    add_json_flag(p)
    p.set_defaults(func=cmd_sync)

    d = sub.add_parser("daemon", help="the site's sync service")
    dsub = d.add_subparsers(dest="daemon_command", metavar="COMMAND")
    p = dsub.add_parser("run", help="run the scheduled jobs (sync, mirror, scrub, gc, ...) in the foreground")
    p.add_argument("--once", action="store_true", help="run every job once and exit")
    p.add_argument("--job", action="append", metavar="NAME", help="only this job (repeatable)")
    p.add_argument("--sync-interval", type=int, metavar="MINUTES", help="override schedules.sync_interval_minutes")
    p.set_defaults(func=cmd_daemon_run)

    p = sub.add_parser("status", help="upstream heads and ages, blobs, last job runs, failures")
    p.add_argument("--stale-after", type=float, metavar="HOURS", help="override site.stale_after_hours")
    add_json_flag(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("search", help="search the catalog")
    p.add_argument("query", nargs="*", help="free text (any punctuation is fine)")
    p.add_argument("--modality")
    p.add_argument("--anatomy")
    p.add_argument("--architecture", help="family (gan, diffusion, ...) or name (DCGAN, ...)")
    p.add_argument("--license")
    p.add_argument("--upstream")
    p.add_argument("--rank", metavar="METRIC",
                   help="order by a metric, best first: this site's measurements (synthmed evaluate) under one "
                        "comparability key, else the records' values of one source; never mixed")
    p.add_argument("--rank-key", metavar="KEY", help="with --rank: the comparability key (or a prefix) to rank within")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--runnable", action="store_true",
                   help="only models this site can run now: pinned, not yanked, allow_code, package in the store")
    p.add_argument("--datasets", action="store_true",
                   help="search the published datasets instead of the models (text, --modality, --anatomy, "
                        "--model, --license, --upstream)")
    p.add_argument("--model", help="with --datasets: only datasets made by this model id")
    add_json_flag(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("show", help="one model: a summary (parameters, outputs, state, last test); --json: all")
    p.add_argument("ref", help="ID, ID@VERSION, UPSTREAM/ID or UPSTREAM/ID@VERSION")
    add_json_flag(p)
    p.set_defaults(func=cmd_show)

    c = sub.add_parser("catalog", help="catalog maintenance")
    csub = c.add_subparsers(dest="catalog_command", metavar="COMMAND")
    p = csub.add_parser("rebuild", help="recreate catalog.db from the upstream mirrors and the store")
    add_json_flag(p)
    p.set_defaults(func=cmd_catalog_rebuild)

    p = sub.add_parser("export", help="write a bundle (indexes + selected blobs) for an air-gapped site")
    p.add_argument("dir")
    add_json_flag(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="take in a bundle written by `synthmed export`, verifying every hash")
    p.add_argument("dir")
    add_json_flag(p)
    p.set_defaults(func=cmd_import)
