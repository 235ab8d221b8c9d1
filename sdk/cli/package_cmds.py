"""``synthmed package init DIR`` (a working synthmed-1 template) and ``synthmed package test
DIR`` (the model test of a package folder, without a site)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_json_flag, print_json


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("package", help="start a model package from a template, and test a package folder",
                       description="Write a working synthmed-1 package to start from (init), and run the model "
                                   "tests a site runs on a package folder, without a site (test).")
    psub = p.add_subparsers(dest="package_command", metavar="SUBCOMMAND")
    pi = psub.add_parser("init", help="write a working synthmed-1 package (model.py, weights, metadata.json, README)",
                         description="Write a synthmed-1 package into DIR (new or empty): model.py with one "
                                     "torch.Generator per seed, a tiny network's weights (safetensors), "
                                     "metadata.json for `contribute --metadata` and a README saying what to edit.")
    pi.add_argument("dir", type=Path, metavar="DIR", help="the package folder to create (new or empty)")
    pi.add_argument("--id", dest="model_id", help="the model id (default: the folder's name)")
    pi.add_argument("--kind", choices=("image", "volume"), default="image",
                    help="what the template makes: a 2D grayscale image or a 3D volume (default: image)")
    pi.set_defaults(func=cmd_package_init)

    pt = psub.add_parser("test", help="run the model tests on a package folder, without a site",
                         description="Zip DIR reproducibly (as contribute does), build its record from the "
                                     "metadata with the zip's sha256, prepare it as a site would and run the model "
                                     "test in a worker. Prints each check; exit 1 when one fails.")
    pt.add_argument("dir", type=Path, metavar="DIR", help="the package folder")
    pt.add_argument("--metadata", type=Path, metavar="FILE", help="the metadata JSON (default: DIR/metadata.json)")
    pt.add_argument("--id", dest="model_id", help="the model id (default: the metadata's id, else the folder's name)")
    pt.add_argument("--version", help="the version (default: the metadata's version, else 0.0.0)")
    pt.add_argument("--format", dest="package_format", choices=("synthmed-1", "medigan-1"),
                    help="package format (default: the metadata's, else synthmed-1)")
    pt.add_argument("--entry-point", help="module:factory (default: the metadata's package.entry_point)")
    pt.add_argument("--timeout", type=float, metavar="S", help="timeout per request (default: the record's)")
    pt.add_argument("--device", default="cpu", help="device to test on (default: cpu)")
    pt.add_argument("--report", type=Path, metavar="DIR", help="write the model test report here")
    add_json_flag(pt)
    pt.set_defaults(func=cmd_package_test)

    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)


def cmd_package_init(args: argparse.Namespace) -> int:
    from synthmed.registry.authoring.package_template import write_template

    files = write_template(args.dir, model_id=args.model_id, kind=args.kind)
    model_id = args.model_id or args.dir.resolve().name.lower()
    print(f"wrote a synthmed-1 package into {args.dir}:")
    for f in files:
        print(f"  {f.relative_to(args.dir).as_posix()}")
    print("next:")
    print(f"  edit model.py, the weights and metadata.json (see {args.dir / 'README.md'})")
    print(f"  synthmed package test {args.dir}")
    print(f"  synthmed contribute {args.dir} --id {model_id} --version 1.0.0 --metadata {args.dir / 'metadata.json'} "
          "--index PATH/TO/INDEX-CLONE")
    return 0


def cmd_package_test(args: argparse.Namespace) -> int:
    from synthmed.registry.authoring.contribute import test_package_dir
    from synthmed.registry.errors import ContributeError

    metadata = args.metadata or args.dir / "metadata.json"
    if args.metadata is None and not metadata.is_file():
        raise ContributeError(f"{metadata}: no metadata file",
                              hint="pass --metadata FILE (the record's descriptive fields), or put metadata.json in "
                                   "the package folder (`synthmed package init` writes one)")
    quiet = args.json or getattr(args, "quiet", False)

    def progress(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    t = test_package_dir(args.dir, metadata=metadata, model_id=args.model_id, version=args.version,
                         package_format=args.package_format, entry_point=args.entry_point, timeout_s=args.timeout,
                         report_dir=args.report, device=args.device, progress=progress)
    r = t.result
    if args.json:
        print_json({"ref": r.ref, "status": r.status, "reason": r.reason, "sha256": t.sha256, "size": t.size,
                    "checks": [c.as_dict() for c in r.checks],
                    "report": str(t.report) if t.report else None})
    else:
        for c in r.checks:
            print(f"  {c.status:<4}  {c.name:<16}  {c.message}")
        print(f"{r.ref}: model test {r.status}" + (f": {r.reason}" if r.reason and r.status != "failed" else ""))
        if t.report:
            print(f"report: {t.report}")
    return 0 if r.status == "passed" else 1
