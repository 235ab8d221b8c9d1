"""``synthmed contribute PACKAGE_DIR --id ID --version V --metadata FILE [--store zenodo|dvc|index]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_json_flag, add_store_flags, print_json


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "contribute", help="test, upload and record a model on a branch of the index, ready for a pull request",
        description="Validate the metadata, zip the package reproducibly, run the model test, upload the artefact "
                    "(Zenodo, a DVC remote, or the index itself for small files), write the record with its "
                    "sha256 pinned and commit it on the branch contribute/ID-VERSION of the index repository.")
    p.add_argument("package_dir", type=Path, metavar="PACKAGE_DIR", help="the folder with the model's code and weights")
    p.add_argument("--id", dest="model_id", required=True, help="the model id (lower case, e.g. ihc-patch-dcgan)")
    p.add_argument("--version", required=True, help="the semantic version of this release, e.g. 1.0.0")
    p.add_argument("--metadata", type=Path, required=True, metavar="FILE",
                   help="JSON with the record's descriptive fields (title, summary, outputs, test, ...)")
    p.add_argument("--index", type=Path, default=Path("."), metavar="DIR",
                   help="the index folder (holding models/) in a clone of the index repository (default: .)")
    p.add_argument("--base", help="the index's main branch (default: main, else master)")
    p.add_argument("--store", choices=("zenodo", "dvc", "index"), default="index",
                   help="where the artefact goes (default: index, for small files)")
    p.add_argument("--format", dest="package_format", choices=("synthmed-1", "medigan-1"),
                   help="package format (default: the metadata's, else synthmed-1)")
    p.add_argument("--entry-point", help="module:factory (default: the metadata's package.entry_point)")
    add_store_flags(p, "artefacts/ID/VERSION.zip")
    p.add_argument("--timeout", type=float, metavar="S", help="model test timeout per request (default: the record's)")
    p.add_argument("--report", type=Path, metavar="DIR", help="write the model test report here")
    add_json_flag(p)
    p.set_defaults(func=cmd_contribute)


def cmd_contribute(args: argparse.Namespace) -> int:
    from synthmed.registry.authoring.contribute import contribute
    from synthmed.registry.settings import load_settings

    settings = load_settings(getattr(args, "site", None))
    quiet = args.json or getattr(args, "quiet", False)

    def progress(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    result = contribute(
        args.package_dir, model_id=args.model_id, version=args.version, metadata=args.metadata, index=args.index,
        store=args.store, base=args.base, settings=settings, package_format=args.package_format,
        entry_point=args.entry_point, zenodo_host=args.zenodo_host, zenodo_token_file=args.zenodo_token_file,
        dvc_repo=args.dvc_repo, dvc_remote=args.dvc_remote, dvc_path=args.dvc_path, dvc_url=args.dvc_url,
        timeout_s=args.timeout, report_dir=args.report, progress=progress)
    if args.json:
        print_json({"ref": result.ref, "branch": result.branch, "commit": result.commit,
                    "index_repo": str(result.index_repo), "record_path": result.record_path,
                    "sha256": result.sha256, "size": result.size, "source": result.source,
                    "test": result.test_status, "record": result.record})
    else:
        print(result.instructions)
    return 0
