"""``synthmed evaluate --sanity REFERENCE``: run the extractor sanity checks
(:mod:`synthmed.registry.measuring.sanity`), print their table, store them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from synthmed.registry.errors import ConfigError

from .common import print_json, print_table, settings_from_args


def _values(check: dict[str, Any], distance: str) -> str:
    v = check["values"]
    if check["check"] == "halves":
        return f"{distance} {v['halves']:.4g} (closest copy {v['closest']:.4g})"
    if check["check"] == "flat":
        return f"{distance} {v['flat']:.4g}"
    steps = ", ".join(f"{s:g}" for s in v["strengths"])
    return f"{distance} at 0, {steps}: " + " -> ".join(f"{d:.4g}" for d in v["distances"])


def sanity_rows(run: dict[str, Any]) -> list[dict[str, str]]:
    """One row per extractor and check: the values and pass/fail."""
    rows = []
    for r in run["results"]:
        for c in r["checks"]:
            rows.append({"extractor": r["extractor"], "check": c["check"], "values": _values(c, r["distance"]),
                         "result": "pass" if c["passed"] else f"FAIL: {c['detail']}"})
    return rows


def cmd_sanity(args: argparse.Namespace) -> int:
    from synthmed.registry.catalog import Catalog
    from synthmed.registry.measuring.reference_sets import open_reference
    from synthmed.registry.measuring.sanity import run_sanity

    if args.refs or args.reference is not None:
        raise ConfigError("--sanity checks extractors on a reference set; it takes no model and no --reference",
                          hint="synthmed evaluate --sanity REFERENCE [--extractor REF ...] [-n N]")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give 1 or more processes", hint="or leave it out to use every core")
    settings = settings_from_args(args)
    quiet = args.json

    def progress(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    if not settings.catalog_path.exists():
        from ..site import no_site_error

        raise no_site_error(settings)
    reference = open_reference(settings, args.sanity)
    with Catalog.open(settings.catalog_path) as cat:
        run = run_sanity(settings, cat, reference, args.extractor or [], n=args.num_samples, seed=args.seed,
                         workers=args.workers, progress=progress)
    if not args.no_record and run.results:
        with Catalog.open(settings.catalog_path, readonly=False) as wcat:
            run.store(wcat)
    out = run.as_dict()
    out["stored"] = bool(not args.no_record and run.results)
    if args.json:
        print_json(out)
        return 0
    print(f"sanity checks on {reference.label} ({len(reference.files)} images, identity {reference.identity[:12]}): "
          f"two halves of {run.n} (seed {run.seed}); each copy of half A measured against half B")
    print_table(sanity_rows(out), ["extractor", "check", "values", "result"])
    for r in out["results"]:
        print(f"{r['extractor']}: {r['passed']} of {r['total']} checks passed ({r['says']})")
    for s in out["skipped"]:
        print(f"{s['extractor']}: skipped ({s['reason']})")
    if out["stored"]:
        print(f"stored in the catalog: `synthmed evaluate MODEL --reference {args.sanity}` now uses the extractor "
              "that passed the most checks")
    return 0
