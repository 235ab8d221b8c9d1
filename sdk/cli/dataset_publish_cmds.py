"""``synthmed dataset``'s publish sub-commands (see dataset_cmds): ``create`` (a run of a
model into a self-contained dataset folder) and ``publish`` (check, audit, pack, upload
and commit its record on a branch of the index). docs/datasets.md."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from synthmed.registry.errors import ConfigError

from .common import add_json_flag, add_store_flags, print_json, settings_from_args
from .run_cmds import parse_input_args

#: the file formats a dataset may be made in (``auto``: PNG for 2-D outputs, NIfTI for volumes)
FORMATS = ("auto", "png", "npy", "nifti", "dicom")
INPUTS_DIR = "inputs"


def register(dsub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add this module's sub-commands to ``synthmed dataset``."""
    c = dsub.add_parser(
        "create", help="generate a dataset folder: samples, their manifest and the run's array inputs",
        description="Generate N samples of MODEL into DIR exactly as `synthmed generate` does (sample i from seed "
                    "S+i, the sidecar and synthmed.manifest.json), and copy the run's array inputs into "
                    "DIR/inputs/<name>/ (one .npy file per item, as the model took it), so that the folder is "
                    "self-contained and every item can be re-derived. An interrupted run resumes; a folder "
                    "holding another run is refused.")
    c.add_argument("ref", metavar="MODEL", help="model reference: ID, ID@VERSION, UPSTREAM/ID[@VERSION]")
    c.add_argument("-n", "--num-samples", type=int, default=None, metavar="N",
                   help="number of items (required, except for a model with array inputs: one item per input)")
    c.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="the dataset folder")
    c.add_argument("--seed", type=int, default=0, metavar="S", help="seed of item 0 (default 0)")
    c.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a model parameter (repeatable); values follow the model's inputs schema")
    c.add_argument("--input", action="append", default=[], metavar="NAME=DIR",
                   help="an array input (repeatable): a folder of PNG/NPY/NIfTI/DICOM files in name order, "
                        "or one file; item i takes input i")
    c.add_argument("--outputs", default=None, metavar="NAMES", help="write only these outputs, e.g. image,mask")
    c.add_argument("--format", choices=FORMATS, default="auto",
                   help="file format (default auto: png for 2-D outputs, nifti for volumes)")
    c.add_argument("--device", default=None, metavar="D", help="auto, cpu, cuda or cuda:N")
    c.add_argument("--batch-size", type=int, default=None, metavar="B", help="samples per model call")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(c)
    c.set_defaults(func=cmd_create)

    p = dsub.add_parser(
        "publish", help="audit, pack and upload a dataset folder and commit its record on a branch of the index",
        description="Check DIR against its manifest, check its model version is in the index with the same package "
                    "sha256 and that the licence rule holds, run the memorisation audit of the dataset's own items "
                    "against the training set, pack the folder reproducibly, upload it (the index itself, Zenodo "
                    "or a DVC remote) and commit datasets/ID/VERSION.json on the branch dataset/ID-VERSION of the "
                    "index repository, ready for a pull request. Nothing is committed when a check fails.")
    p.add_argument("folder", type=Path, metavar="DIR", help="the folder `synthmed dataset create` made")
    p.add_argument("--id", dest="dataset_id", required=True, help="the dataset id (lower case, e.g. ihc-patches-16)")
    p.add_argument("--version", required=True, help="the semantic version of this dataset, e.g. 1.0.0")
    p.add_argument("--index", type=Path, default=Path("."), metavar="PATH",
                   help="the index folder (holding models/) in a clone of the index repository (default: .)")
    p.add_argument("--base", help="the index's main branch (default: main, else master)")
    p.add_argument("--store", choices=("index", "zenodo", "dvc"), default="index",
                   help="where the packed dataset goes (default: index, for small datasets)")
    p.add_argument("--metadata", type=Path, required=True, metavar="FILE.json",
                   help="title, summary, description, license (default: the model's), card {intended_use, "
                        "limitations, metrics}, authors, tags")
    p.add_argument("--training", metavar="NAME|DIR",
                   help="the model's training images: a reference set of this site or a folder (the audit)")
    p.add_argument("--holdout", metavar="NAME|DIR", help="real images the model was NOT trained on (the DCR test)")
    p.add_argument("--extractor", metavar="REF|FILE", help="feature extractor of the audit (default: randconv-224)")
    p.add_argument("--override-audit", metavar="REASON",
                   help="publish despite a failing audit, or without one; the reason is kept in the record")
    p.add_argument("--override-licence", metavar="REASON",
                   help="publish although a licence in the chain states no terms (NOASSERTION); kept in the record")
    add_store_flags(p, "datasets/ID/VERSION.tar")
    add_json_flag(p)
    p.set_defaults(func=cmd_publish)


def cmd_create(args: argparse.Namespace) -> int:
    from synthmed.registry.runner import check_params, parse_param_args

    from ..progress import ProgressBar
    from ..request import build_request
    from ..site import Site

    given = parse_input_args(args.input)
    if args.num_samples is None and not given:
        raise ConfigError("-n N is required: the number of items", hint="e.g. -n 16 makes items 0..15")
    settings = settings_from_args(args, device=args.device, batch_size=args.batch_size)
    site = Site(settings=settings, progress=False if args.no_progress else None)
    try:
        entry = site.resolve(args.ref)
        if any(str(o.get("name")) == INPUTS_DIR for o in entry.record.outputs):
            raise ConfigError(f"{entry.qualified_ref} has an output named {INPUTS_DIR!r}, which a dataset folder "
                              "keeps for the run's array inputs", hint="use `synthmed generate` for this model")
        params = check_params(entry.record, parse_param_args(entry.record, args.param))
        _check_folder(args.output)
        request = build_request(entry.record, args.output, args.num_samples, seed=args.seed, params=params,
                                inputs=given or None, max_decoded_bytes=settings.inputs.max_decoded_bytes,
                                format=args.format, outputs=args.outputs, layout="synthmed")
        model = site.model(entry)
        bar = ProgressBar(model.ref, enabled=not args.no_progress and not args.json)
        try:
            result = model.run(request.with_(progress=bar))
        finally:
            bar.close()
            model.close()
    finally:
        site.close()
    if request.inputs is not None:
        _copy_inputs(request.inputs.arrays, args.output)
    summary = {"model": model.ref, "folder": str(args.output), "num_samples": result.num_samples,
               "written": result.written, "skipped": result.skipped, "outputs": result.outputs,
               "left_out": result.left_out, "seeds": [request.seed, request.seed + request.n - 1] if request.n else [],
               "inputs": sorted(request.inputs.arrays) if request.inputs is not None else [],
               "complete": result.complete}
    if args.json:
        print_json(summary)
    else:
        print(f"{result.written} written, {result.skipped} already there: {args.output} ({model.ref}, outputs "
              f"{', '.join(result.outputs)}" + (f"; inputs copied into {args.output / INPUTS_DIR}" if summary["inputs"]
                                                else "") + ")")
        print(f"next: synthmed dataset publish {args.output} --id ID --version 1.0.0 --index PATH "
              "--metadata FILE.json --training NAME|DIR")
    return 0


def _check_folder(folder: Path) -> None:
    """A dataset folder is new, empty or a run (its sidecar there: the run's identity is then
    checked as `generate` checks it); a folder of other files is refused."""
    from ..folder_files import SIDECAR

    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"-o {folder}: it is a file, not a folder", hint="name a new folder for the dataset")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / SIDECAR).is_file():
        raise ConfigError(f"-o {folder}: the folder holds files but no synthmed run; a dataset folder holds its run "
                          "and nothing else", hint="name a new (or empty) folder for the dataset")


def _copy_inputs(arrays: Any, folder: Path) -> None:
    """Each array input as the model took it, one ``.npy`` per item under ``inputs/<name>/``
    (sorted names: ``000000.npy`` ...), written beside and renamed into place, so the folder
    holds them whole or not at all."""
    import numpy as np

    for name, stack in sorted(arrays.items()):
        final = folder / INPUTS_DIR / name
        tmp = folder / INPUTS_DIR / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for i, item in enumerate(stack):
            np.save(tmp / f"{i:06d}.npy", np.ascontiguousarray(item), allow_pickle=False)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)


def cmd_publish(args: argparse.Namespace) -> int:
    from synthmed.registry.authoring.dataset_publish import publish_dataset, record_verdict

    settings = settings_from_args(args)
    quiet = args.json or getattr(args, "quiet", False)

    def progress(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    training = holdout = extractor = None
    if args.training:
        training, holdout, extractor = _audit_inputs(args, settings)
    elif args.holdout or args.extractor:
        raise ConfigError("--holdout and --extractor belong to the audit, which needs --training NAME|DIR")
    result = publish_dataset(
        args.folder, dataset_id=args.dataset_id, version=args.version, metadata=args.metadata, index=args.index,
        store=args.store, base=args.base, settings=settings, training=training, holdout=holdout, extractor=extractor,
        override_audit=args.override_audit, override_licence=args.override_licence, zenodo_host=args.zenodo_host,
        zenodo_token_file=args.zenodo_token_file, dvc_repo=args.dvc_repo, dvc_remote=args.dvc_remote,
        dvc_path=args.dvc_path, dvc_url=args.dvc_url, progress=progress)
    if args.json:
        print_json({"ref": result.ref, "branch": result.branch, "commit": result.commit,
                    "index_repo": str(result.index_repo), "record_path": result.record_path,
                    "sha256": result.sha256, "size": result.size, "source": result.source,
                    "audit": result.record["audit"], "warnings": result.check_warnings, "record": result.record})
    else:
        for w in result.check_warnings:
            print(f"warning: {w}")
        print(f"audit: {record_verdict(result.record)}")
        print(result.instructions)
    return 0


def _audit_inputs(args: argparse.Namespace, settings: Any) -> tuple[Any, Any, Any]:
    """The training and held-out sets and the extractor of the audit, from this site."""
    from synthmed.registry.catalog import Catalog
    from synthmed.registry.measuring.extractors import open_extractor
    from synthmed.registry.measuring.reference_sets import open_reference

    from ..site import no_site_error

    if not settings.catalog_path.exists():
        raise no_site_error(settings)
    with Catalog.open(settings.catalog_path) as cat:
        training = open_reference(settings, args.training)
        holdout = open_reference(settings, args.holdout) if args.holdout else None
        extractor = open_extractor(cat, settings, args.extractor)
    return training, holdout, extractor
