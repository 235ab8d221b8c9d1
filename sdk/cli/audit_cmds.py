"""``synthmed audit``: the memorisation audit of one model (does it give back its training images?)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from synthmed.registry.errors import ConfigError

from .common import add_json_flag, print_json, settings_from_args

#: exit status by verdict (an error is 1, a usage error 2)
EXIT = {"pass": 0, "review": 3, "fail": 4}


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "audit", help="memorisation audit: does a model give back its training images? (pass / review / fail)",
        description="Generate N samples of a model and compare them with its training images (a reference set of "
                    "this site or a folder) in pixel space, after the output's window, and in a pinned extractor's "
                    "feature space: near-copies (pixel similarity to the nearest training image, best over flips "
                    "and rotations), distance to the closest training image against the training set's own "
                    "leave-one-out distances, the DCR test against a held-out set, authenticity. Prints a verdict "
                    "with the numbers behind it and stores it in the catalog (shown by `show`, `status` and the "
                    "model page). Reports carry statistics, seeds and indices only; training images never leave "
                    "the site. Exit status: 0 pass, 3 review, 4 fail, 1 error.")
    p.add_argument("ref", metavar="MODEL", help="model reference: ID, ID@VERSION, UPSTREAM/ID[@VERSION]")
    p.add_argument("--training", required=True, metavar="NAME|DIR",
                   help="the model's training images: a reference set of this site (synthmed reference add) or a folder")
    p.add_argument("--holdout", metavar="NAME|DIR",
                   help="real images of the same kind the model was NOT trained on (enables the DCR test)")
    p.add_argument("-n", "--num-samples", type=int, default=200, metavar="N", help="samples to draw (default 200)")
    p.add_argument("--seed", type=int, default=0, help="first seed (samples use seed .. seed+N-1)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a model parameter (repeatable)")
    p.add_argument("--output", metavar="NAME", help="the 2-D output to audit (default: the first image output)")
    p.add_argument("--extractor", metavar="REF|FILE",
                   help="feature extractor for the feature-space distances (default: randconv-224)")
    p.add_argument("--matches", type=Path, metavar="DIR",
                   help="write side-by-side pictures of the flagged pairs (or the closest pairs) to this private "
                        "folder outside the site; never served, never exported")
    p.add_argument("--no-record", action="store_true", help="leave the catalog alone")
    add_json_flag(p)
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from synthmed.registry.catalog import Catalog
    from synthmed.registry.measuring.audit import MIN_SAMPLES, check_matches_folder, run_audit, write_matches
    from synthmed.registry.measuring.extractors import open_extractor
    from synthmed.registry.measuring.reference_sets import open_reference
    from synthmed.registry.runner import parse_param_args

    from ..site import no_site_error

    if args.num_samples < MIN_SAMPLES:
        raise ConfigError(f"-n {args.num_samples}: an audit needs at least {MIN_SAMPLES} samples",
                          hint="e.g. -n 200 (the default)")
    settings = settings_from_args(args)
    matches = check_matches_folder(settings, args.matches) if args.matches is not None else None
    if not settings.catalog_path.exists():
        raise no_site_error(settings)
    quiet = args.json or getattr(args, "quiet", False)

    def progress(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    with Catalog.open(settings.catalog_path) as cat:
        entry = cat.models.resolve(args.ref)
        params = parse_param_args(entry.record, args.param)
        training = open_reference(settings, args.training)
        holdout = open_reference(settings, args.holdout) if args.holdout else None
        extractor = open_extractor(cat, settings, args.extractor)
    audit, pictures = run_audit(settings, entry, training, extractor, holdout=holdout, n=args.num_samples,
                                seed=args.seed, params=params, output=args.output, progress=progress)
    if not args.no_record:
        with Catalog.open(settings.catalog_path, readonly=False) as wcat:
            audit.store(wcat)
    written = write_matches(audit, pictures, matches) if matches is not None else []
    if args.json:
        print_json(audit.as_dict())
    else:
        print("\n".join(format_audit(audit.as_dict())))
        if written:
            print(f"pictures of {len(written) - 1} pair(s) in {matches} (site-local images: do not share them)")
        if not args.no_record:
            print(f"stored in the catalog: `synthmed show {entry.qualified_ref}` shows it")
    return EXIT[audit.verdict]


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.0f}%"


def format_audit(a: dict[str, Any]) -> list[str]:
    """An audit (:meth:`Audit.as_dict`, or a catalog row's summary merged in) as lines of text."""
    p, v = a["provenance"], a["values"]
    hold = p.get("holdout")
    lines = [f"memorisation audit of {a['ref']}: {a['verdict'].upper()}",
             f"  training set {p.get('training_label')} ({v['n_training']} images)"
             + (f", held-out set {p.get('holdout_label')} ({hold['n']} images)" if hold else ", no held-out set")
             + f"; {v['n_generated']} samples, seeds {p['seeds'][0]}..{p['seeds'][1]}; extractor "
               f"{p['extractor']['id']}@{p['extractor']['version']}"]
    lines += [f"  - {r}" for r in a["reasons"]]
    th = p["thresholds"]["near_copy_similarity"]
    rows = [("near-copies", f"{v['near_copies']} of {v['n_generated']} ({_pct(v['near_copy_fraction'])}) at pixel "
                            f"similarity >= {th}; training images among themselves "
                            f"{_pct(v['training_near_duplicate_fraction'])}"
                            + (" - UNINFORMATIVE (the training set's own rate is too high; it drives no verdict)"
                               if v.get("near_copy_uninformative") else "")),
            ("pixel similarity", f"max {v['pixel_similarity_max']:.3f}, median {v['pixel_similarity_median']:.3f} "
                                 f"(training leave-one-out median {v['training_loo_similarity_median']:.3f})"),
            ("pixel DCR", f"{v['pixel_dcr_ratio']:.2f}x the training set's leave-one-out distance (medians)"),
            ("feature DCR", f"{v['feature_dcr_ratio']:.2f}x the training set's leave-one-out distance (medians)"),
            ("authenticity", f"{v['authenticity']:.2f}" + (f" (held-out real images {v['holdout_authenticity']:.2f})"
                                                           if "holdout_authenticity" in v else ""))]
    if "pixel_closer_to_training" in v:
        rows.append(("DCR test", f"closer to training than to held-out: pixels {_pct(v['pixel_closer_to_training'])} "
                                 f"(p {v['pixel_dcr_p']:.2g}), features {_pct(v['feature_closer_to_training'])} "
                                 f"(p {v['feature_dcr_p']:.2g}); 50% expected"))
    if v.get("flat_samples"):
        rows.append(("flat samples", f"{v['flat_samples']} (no pattern to compare)"))
    lines += [f"  {k + ':':<18}{text}" for k, text in rows]
    near = a.get("near_copies") or []
    if near:
        shown = ", ".join(f"seed {n['seed']} ~ training #{n['training_index']} ({n['similarity']:.3f}"
                          + (f", {n['transform']})" if n["transform"] != "none" else ")") for n in near[:10])
        lines.append(f"  near-copies (training # = position in the set's manifest): {shown}"
                     + (f" and {len(near) - 10} more" if len(near) > 10 else ""))
    return lines
