"""``synthmed index ...``: validate, check, review, pin, shard, import-medigan."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_json_flag, print_json, settings_from_args


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("index", help="work on an index repository: validate, check, pin, import-medigan")
    isub = p.add_subparsers(dest="index_command", metavar="SUBCOMMAND")

    def show_help(_: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=show_help)

    v = isub.add_parser("validate", help="validate a whole index folder (models, extractors, datasets) or one record file")
    v.add_argument("path", nargs="?", default="index", help="index folder or record file (default: index)")
    add_json_flag(v)
    v.set_defaults(func=cmd_validate)

    c = isub.add_parser("check", help="the pull-request gate: validate changed records, enforce immutability")
    c.add_argument("--base", required=True, help="the revision the pull request targets (e.g. origin/main)")
    c.add_argument("--head", default="HEAD", help="the pull request's revision (default: HEAD)")
    c.add_argument("--repo", default=".", help="a path inside the index's git repository (default: .)")
    c.add_argument("--index-dir", default=None,
                   help="folder of the index inside the repo (default: auto: '' if models/ is at the root, else 'index')")
    add_json_flag(c)
    c.set_defaults(func=cmd_check)

    r = isub.add_parser("review", help="the gate, then a throwaway site synced from the pull request's head "
                                       "that model-tests every added or changed version")
    r.add_argument("--base", required=True, help="the revision the pull request targets (e.g. origin/main)")
    r.add_argument("--head", default="HEAD", help="the pull request's revision (default: HEAD)")
    r.add_argument("--repo", default=".", help="a path inside the index's git repository (default: .)")
    r.add_argument("--index-dir", default=None,
                   help="folder of the index inside the repo (default: auto: '' if models/ is at the root, else 'index')")
    r.add_argument("--out", required=True, type=Path,
                   help="a new folder for the review site, its copy of the index and the test report")
    r.add_argument("--timeout", type=float, default=None, help="seconds per model-test request (default: the record's)")
    add_json_flag(r)
    r.set_defaults(func=cmd_review)

    pin = isub.add_parser("pin", help="download an artefact, hash it and write sha256 and size into its record")
    pin.add_argument("ref", help="ID@VERSION")
    pin.add_argument("--index", default="index", help="index folder (default: index)")
    add_json_flag(pin)
    pin.set_defaults(func=cmd_pin)

    sh = isub.add_parser("shard", help="move the index folder's records to the sharded layout "
                                       "(models/<shard>/<id>@<version>.json), for an index of many thousand models")
    sh.add_argument("--index", default="index", help="index folder (default: index)")
    sh.add_argument("--dry-run", action="store_true", help="list the moves, make none")
    add_json_flag(sh)
    sh.set_defaults(func=cmd_shard)

    m = isub.add_parser("import-medigan", help="convert medigan's global.json entries into records")
    m.add_argument("file", help="medigan's config/global.json (or a part of it)")
    m.add_argument("--into", default="index", help="index folder to write records into (default: index)")
    m.add_argument("--commit", default=None, help="medigan commit the file comes from (kept as provenance)")
    m.add_argument("--dry-run", action="store_true", help="convert and report, write nothing")
    add_json_flag(m)
    m.set_defaults(func=cmd_import_medigan)


def cmd_validate(args: argparse.Namespace) -> int:
    from synthmed.registry import records
    from synthmed.registry.authoring.dataset_policy import validate_datasets
    from synthmed.registry.dataset_records import DATASETS_DIR
    from synthmed.registry.measuring.extractors import EXTRACTORS_DIR, load_extractor_file, validate_extractors_dir

    path = Path(args.path)
    if path.is_file() and path.parent.parent.name == EXTRACTORS_DIR:  # one extractor record
        report = records.ValidationReport()
        report.checked = 1
        try:
            if not load_extractor_file(path).verified:
                report.unverified.append(str(path))
        except records.RecordError as exc:
            report.errors.extend(exc.problems)
    elif path.is_file() and path.parent.parent.name == DATASETS_DIR:  # one dataset record, against its index
        report = records.ValidationReport()
        report.checked, report.errors, report.warnings = validate_datasets(path)
    else:
        report = records.validate_path(path)
        if path.is_dir():  # and the extractor records (synthmed-extractor/1) and datasets beside the models
            report.errors.extend(validate_extractors_dir(path))
            checked, errors, warnings = validate_datasets(path)
            report.checked += checked
            report.errors.extend(errors)
            report.warnings.extend(warnings)
    if args.json:
        print_json(report.as_dict())
        return 0 if report.ok else 1
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for e in report.errors:
        print(f"error: {e}", file=sys.stderr)
    state = "OK" if report.ok else "FAILED"
    print(f"{state}: {report.checked} record(s) checked, {len(report.errors)} error(s), "
          f"{len(report.unverified)} unverified")
    return 0 if report.ok else 1


def cmd_check(args: argparse.Namespace) -> int:
    from synthmed.registry.authoring import indexcheck

    result = indexcheck.check_index(Path(args.repo), args.base, args.head, args.index_dir)
    if args.json:
        print_json(result.as_dict())
    else:
        print(result.summary())
    return 0 if result.ok else 1


def cmd_review(args: argparse.Namespace) -> int:
    from synthmed.daemon.review import review

    progress = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr))
    result = review(Path(args.repo), args.base, args.head, args.out, index_dir=args.index_dir,
                    timeout_s=args.timeout, progress=progress)
    if args.json:
        print_json(result.as_dict())
    else:
        if not result.check.ok:
            print(result.check.summary())
            print("FAILED: the gate refused the pull request; nothing of it was run")
        elif result.sync_problems:
            for p in result.sync_problems:
                print(f"refused by the review site's sync: {p}")
            print("FAILED: the review site did not accept the pull request as it stands")
        else:
            for r in result.run.results if result.run else []:
                print(f"{r.ref}: {r.status}" + (f": {r.reason}" if r.reason else ""))
            where = result.run.report_path if result.run else None
            print(f"{'OK' if result.ok else 'FAILED'}: {len(result.tested)} version(s) tested"
                  + (f"; report: {where}" if where else ""))
    return 0 if result.ok else 1


def cmd_pin(args: argparse.Namespace) -> int:
    from synthmed.registry.authoring.pin import pin_record

    settings = settings_from_args(args)
    out = pin_record(Path(args.index), args.ref, settings)
    if args.json:
        print_json(out)
    else:
        print(f"pinned {out['id']}@{out['version']}: sha256 {out['sha256']} size {out['size']} (from {out['source']})")
    return 0


def cmd_shard(args: argparse.Namespace) -> int:
    from synthmed.registry.authoring.index_layout import shard_index

    moves = shard_index(Path(args.index), dry_run=args.dry_run)
    if args.json:
        print_json({"dry_run": args.dry_run, "moved": [{"ref": m.ref, "from": m.old, "to": m.new} for m in moves]})
    else:
        for m in moves[:20]:
            print(f"{m.old} -> {m.new}")
        if len(moves) > 20:
            print(f"... and {len(moves) - 20} more")
        verb = "would move" if args.dry_run else "moved"
        print(f"{verb} {len(moves)} record(s) to the sharded layout" +
              ("" if args.dry_run or not moves else "; commit the moves (e.g. `git add -A index && git commit`)"))
    return 0


def cmd_import_medigan(args: argparse.Namespace) -> int:
    from synthmed.registry.authoring import medigan_import

    outcomes = medigan_import.import_catalogue(Path(args.file), Path(args.into), commit=args.commit,
                                               dry_run=args.dry_run)
    summary = medigan_import.summarise(outcomes)
    if args.json:
        print_json(summary)
    else:
        for item in summary["imported"]:
            state = item["written"] or ("would write" if args.dry_run else "")
            print(f"imported {item['id']} -> {item['path']} ({state}, unverified)")
            for note in item["notes"]:
                print(f"    note: {note}")
        for item in summary["failed"]:
            print(f"NOT imported {item['id']}: {item['reason']}", file=sys.stderr)
        print(f"{len(summary['imported'])} imported, {len(summary['failed'])} not imported")
    return 0 if not summary["failed"] else 1
