"""``synthmed test REF... | --all [--report DIR]``: test models of the site in worker processes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from synthmed.registry.errors import ConfigError

from .common import add_json_flag, print_json, print_table, settings_from_args


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:

    p = sub.add_parser(
        "test", help="test models (outputs, determinism, batch invariance, parameters, speed, memory)",
        description="Run each model's `test` block from its record in a worker process with a timeout; "
                    "record the results in the site's catalog and write a report (JSON, Markdown, sample grids). "
                    "Exit status 1 when a model fails or could not be tested (status error: its package could not be "
                    "fetched, its environment built, ...); models the site's policy does not run (unverified, "
                    "allow_code = false, yanked) are skipped and do not fail the run.")
    p.add_argument("refs", nargs="*", metavar="REF", help="ID, ID@VERSION, UPSTREAM/ID or UPSTREAM/ID@VERSION")
    p.add_argument("--all", action="store_true", help="test the latest version of every model of the site")
    p.add_argument("--report", metavar="DIR", type=Path,
                   help="write the report here (default: <site>/reports/<UTC time>/)")
    p.add_argument("--timeout", type=float, metavar="S", help="seconds per worker request (default: the record's)")
    p.add_argument("--num-samples", type=int, metavar="N", help="override the record's test.num_samples")
    p.add_argument("--no-record", action="store_true", help="do not store the results in the site's catalog")
    add_json_flag(p)
    p.set_defaults(func=cmd_test)


def cmd_test(args: argparse.Namespace) -> int:
    from synthmed.registry.catalog import Catalog
    from synthmed.registry.checks.modeltest_site import (
        report_folder,
        run_tests,
        select_entries,
    )

    if bool(args.refs) == bool(args.all):
        raise ConfigError("name the models to test (REF...) or give --all, not both or neither",
                          hint="e.g. `synthmed test ihc-patch-dcgan` or `synthmed test --all --report reports/`")
    if args.num_samples is not None and args.num_samples < 1:
        raise ConfigError(f"--num-samples must be at least 1, got {args.num_samples}",
                          hint="leave it out to use each record's test.num_samples")
    if args.timeout is not None and not args.timeout > 0:
        raise ConfigError(f"--timeout {args.timeout:g}: the timeout must be above 0 seconds",
                          hint="leave it out to use each record's test.timeout_s")
    if args.report is not None and args.report.exists() and not args.report.is_dir():
        raise ConfigError(f"--report {args.report}: it is a file, not a folder",
                          hint="give a new folder, or an existing folder, for the report")
    settings = settings_from_args(args)
    if not settings.catalog_path.exists():
        from ..site import no_site_error

        raise no_site_error(settings)
    with Catalog.open(settings.catalog_path, readonly=True) as catalog:
        entries = select_entries(catalog, None if args.all else list(args.refs))
    report_dir = args.report.resolve() if args.report else report_folder(settings)
    quiet = args.json or getattr(args, "quiet", False)

    def progress(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    if args.no_record:
        run = run_tests(settings, entries, report_dir=report_dir, timeout_s=args.timeout,
                        num_samples=args.num_samples, progress=progress)
    else:
        from synthmed.registry.checks.report import summarise
        from synthmed.registry.stamps import utcnow

        started = utcnow()
        with Catalog.open(settings.catalog_path, readonly=False) as wcat:
            run = run_tests(settings, entries, report_dir=report_dir, catalog=wcat, timeout_s=args.timeout,
                            num_samples=args.num_samples, progress=progress)
            with wcat.transaction():
                wcat.jobs.record_run("test", "ok" if run.ok else "failed", started=started, changed=len(run.results),
                                     reason=f"synthmed test: {summarise(run.results)}; report {run.report_path}")
    if args.json:
        assert run.report_path is not None
        print_json(json.loads(run.report_path.read_text("utf-8")))
    else:
        rows = [{"model": r.ref, "status": r.status,
                 "samples/s": "-" if r.throughput_sps is None else f"{r.throughput_sps:.1f}",
                 "peak_mib": "-" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.0f}",
                 "reason": (r.reason or "")[:100]} for r in run.results]
        print_table(rows, ["model", "status", "samples/s", "peak_mib", "reason"])
        print(f"report: {run.report_path} (summary: {report_dir / 'summary.md'})")
    return 0 if run.ok else 1
