"""``synthmed evaluate`` and ``synthmed reference add|list``: measured, comparable quality."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from synthmed.registry.errors import ConfigError

from .common import add_json_flag, print_json, print_table, settings_from_args


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "evaluate", help="measure models against a reference set (FD, KID, precision/recall, density/coverage, ...)",
        description="Generate N samples of each model, compute their features with a pinned extractor and compare "
                    "them with a reference set of real images: Fréchet distance (fd; frd with the frd-radiomics "
                    "extractor), KID, precision and recall (k=3), density and coverage (k=5), RBF MMD (mmd_rbf; "
                    "cmmd only on a CLIP extractor), MS-SSIM diversity. Values are stored in the catalog with their "
                    "provenance and comparability key (shown by `show`, used by `search --rank`). "
                    "With --sanity REFERENCE instead: known-answer checks of the extractors on that reference "
                    "set (two halves of it against degraded copies and a flat-image model), stored; evaluate "
                    "then uses the best-passing extractor for that set by default.")
    p.add_argument("refs", nargs="*", metavar="REF", help="model reference(s): ID, ID@VERSION, UPSTREAM/ID[@VERSION]")
    p.add_argument("--reference", metavar="NAME|DIR",
                   help="a reference set of this site (synthmed reference add) or a folder of images")
    p.add_argument("--sanity", metavar="NAME|DIR",
                   help="check the extractors on this reference set instead of measuring models: its two halves "
                        "must score better than degraded copies, distances must grow with the degradation, a "
                        "flat-image model must rank last (-n: images per half)")
    p.add_argument("--extractor", metavar="REF|FILE", action="append",
                   help="feature extractor: ID[@VERSION] from the site's indexes, or a record file (default: the "
                        "one that passed the most sanity checks on the reference set, else randconv-224; with "
                        "--sanity, repeatable, default every extractor the site can run offline)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes extracting radiomic features (default: every core)")
    p.add_argument("-n", "--num-samples", type=int, metavar="N",
                   help="samples per model (default 500); with --sanity, images per half (default half the set, "
                        "at most 250)")
    p.add_argument("--seed", type=int, default=0, help="first seed (samples use seed .. seed+N-1)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a model parameter (repeatable)")
    p.add_argument("--output", metavar="NAME", help="the output to evaluate (default: the first 2-D image; a 3-D "
                                                    "output with --extractor frd-radiomics, against NIfTI volumes)")
    p.add_argument("--kid-subsets", type=int, default=100, metavar="K", help="KID subsets (default 100)")
    p.add_argument("--kid-subset-size", type=int, default=1000, metavar="M",
                   help="KID subset size (default 1000, capped at the smaller set)")
    p.add_argument("--report", type=Path, metavar="DIR", help="also write evaluation.json and evaluation.md here")
    p.add_argument("--no-record", action="store_true", help="leave the catalog alone")
    add_json_flag(p)
    p.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("reference", help="site-local reference sets of real images (never exported)")
    rs = r.add_subparsers(dest="reference_command", metavar="ACTION")
    a = rs.add_parser("add", help="hash a folder of images into a reference set and compute its features",
                      description="The images stay where they are; the manifest (paths and sha256) and the "
                                  "features are stored under <site>/references/NAME/ and never leave the site.")
    a.add_argument("name", metavar="NAME")
    a.add_argument("dir", type=Path, metavar="DIR")
    a.add_argument("--replace", action="store_true", help="make an existing set again from DIR")
    a.add_argument("--masks", type=Path, metavar="MASKDIR",
                   help="each image's mask at the same relative path under MASKDIR: FRD then measures the mask "
                        "region, and a model is measured on the mask it makes of its output")
    a.add_argument("--extractor", metavar="REF|FILE", help="compute features with this extractor now "
                                                            "(default: randconv-224)")
    a.add_argument("--workers", type=int, metavar="N",
                   help="processes extracting radiomic features (default: every core)")
    add_json_flag(a)
    a.set_defaults(func=cmd_reference_add)
    ls = rs.add_parser("list", help="the site's reference sets")
    add_json_flag(ls)
    ls.set_defaults(func=cmd_reference_list)

    def _usage(args: argparse.Namespace) -> int:
        r.print_help()
        return 2
    r.set_defaults(func=_usage)


def _progress(args: argparse.Namespace) -> Any:
    quiet = args.json or getattr(args, "quiet", False)

    def progress(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)
    return progress


def _catalog(settings: Any, readonly: bool = True) -> Any:
    from synthmed.registry.catalog import Catalog

    if not settings.catalog_path.exists():
        from ..site import no_site_error

        raise no_site_error(settings)
    return Catalog.open(settings.catalog_path, readonly=readonly)


def _check_workers(args: argparse.Namespace) -> None:
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give 1 or more processes", hint="or leave it out to use every core")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from synthmed.registry.measuring.evaluate import REPORT_COLUMNS, MetricSettings, evaluate, write_report
    from synthmed.registry.measuring.extractors import open_extractor
    from synthmed.registry.measuring.reference_sets import open_reference
    from synthmed.registry.measuring.sanity import ExtractorChoice, open_chosen
    from synthmed.registry.runner import parse_param_args

    if args.sanity is not None:
        from .sanity_cmds import cmd_sanity

        return cmd_sanity(args)
    if not args.refs or args.reference is None:
        raise ConfigError("evaluate needs model reference(s) and --reference NAME|DIR",
                          hint="e.g. synthmed evaluate ihc-patch-dcgan --reference ihc-heldout; or check the "
                               "extractors on a reference set: synthmed evaluate --sanity ihc-heldout")
    if args.extractor and len(args.extractor) > 1:
        raise ConfigError(f"--extractor given {len(args.extractor)} times; evaluate measures with one extractor",
                          hint="run evaluate once per extractor (several are taken only with --sanity)")
    if args.num_samples is None:
        args.num_samples = 500
    if args.num_samples < 10:
        raise ConfigError(f"-n {args.num_samples}: at least 10 samples are needed", hint="e.g. -n 500 (the default)")
    _check_workers(args)
    if args.kid_subsets < 1 or args.kid_subset_size < 2:
        raise ConfigError("--kid-subsets must be >= 1 and --kid-subset-size >= 2")
    if args.report is not None and args.report.exists() and not args.report.is_dir():
        raise ConfigError(f"--report {args.report}: it is a file, not a folder")
    settings = settings_from_args(args)
    progress = _progress(args)
    ms = MetricSettings(kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size)
    with _catalog(settings) as cat:
        entries = [cat.models.resolve(r) for r in args.refs]
        params = [parse_param_args(e.record, args.param) for e in entries]
        reference = open_reference(settings, args.reference)
        if args.extractor:
            extractor = open_extractor(cat, settings, args.extractor[0], workers=args.workers)
            choice = ExtractorChoice(extractor.record.ref, f"{extractor.record.ref}: named with --extractor")
        else:  # the best-passing extractor of the set's stored sanity checks, else the default
            extractor, choice = open_chosen(cat, settings, reference, workers=args.workers)
    progress(f"evaluate: extractor {extractor.record.summary()}")
    progress(f"evaluate: extractor {choice.why}")
    evals = []
    for entry, prm in zip(entries, params):
        progress(f"evaluate: {entry.qualified_ref} against {reference.label} with {extractor.record.ref}")
        ev = evaluate(settings, entry, reference, extractor, n=args.num_samples, seed=args.seed,
                      params=prm, output=args.output, ms=ms, progress=progress)
        ev.choice = choice
        evals.append(ev)
    if not args.no_record:
        with _catalog(settings, readonly=False) as wcat:
            for ev in evals:
                ev.store(wcat)
    if args.report is not None:
        write_report(evals, [], args.report)
    if args.json:
        print_json([e.as_dict() for e in evals])
        return 0
    cols = [c for c in REPORT_COLUMNS if any(c in e.values for e in evals)]
    rows = [{"model": e.ref, **{c: "-" if c not in e.values else f"{e.values[c]:.4g}" for c in cols}} for e in evals]
    print_table(rows, ["model", *cols])
    keys = sorted({e.key for e in evals})
    print(f"comparability key: {', '.join(k[:12] for k in keys)} (reference {reference.label}, "
          f"{len(reference.files)} images; extractor {extractor.record.summary()}; n {args.num_samples}, seeds "
          f"{args.seed}..{args.seed + args.num_samples - 1})")
    print(f"extractor {choice.why}")
    if not args.no_record:
        first = cols[0] if cols else "fd"  # the distance this extractor reports: fd, or frd for radiomics
        print(f"stored in the catalog: `synthmed show REF` lists them, `synthmed search --rank {first}` ranks by them")
    if args.report is not None:
        print(f"report: {args.report / 'evaluation.md'}")
    return 0


def cmd_reference_add(args: argparse.Namespace) -> int:
    from synthmed.registry.measuring.evaluate import config_key
    from synthmed.registry.measuring.extractors import open_extractor
    from synthmed.registry.measuring.reference_sets import add_reference, check_new_reference

    _check_workers(args)
    settings = settings_from_args(args)
    check_new_reference(settings, args.name, args.dir, replace=args.replace)  # before the extractor loads torch
    with _catalog(settings) as cat:
        extractor = open_extractor(cat, settings, args.extractor, workers=args.workers)
    ref = add_reference(settings, args.name, args.dir, replace=args.replace, extractor=extractor,
                        config_key=config_key(extractor), progress=_progress(args), masks=args.masks)
    out = {"name": ref.name, "n": len(ref.files), "identity": ref.identity, "folder": str(ref.folder),
           "extractor": extractor.record.ref, "extractor_says": extractor.record.summary()}
    if args.json:
        print_json(out)
    else:
        print(f"reference set {ref.name}: {len(ref.files)} images, identity {ref.identity[:12]}, features with "
              f"{extractor.record.summary()}; stored in {ref.folder} (never exported)")
    return 0


def cmd_reference_list(args: argparse.Namespace) -> int:
    from synthmed.registry.measuring.reference_sets import reference_summaries

    rows = reference_summaries(settings_from_args(args))
    if args.json:
        print_json(rows)
        return 0
    print_table([{**r, "identity": r["identity"][:12], "features": len(r["features"])} for r in rows],
                ["name", "n", "identity", "features", "source"])
    return 0
