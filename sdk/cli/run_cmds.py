"""``synthmed generate``: samples from a model to a folder, with a progress bar."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from synthmed.registry.errors import ConfigError

from ..format_rules import left_out_advice
from ..progress import ProgressBar
from ..shards import Shard, shard_from_env
from .common import print_json, settings_from_args

#: the output formats (sdk/output_formats.FORMATS), spelled out so `synthmed --help` need not import numpy
FORMATS = ("auto", "png", "npy", "nifti", "dicom")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("generate", help="generate samples from a model into a folder",
                       description="Generate N samples with a model and write them to DIR "
                                   "(<output>/<index>.<ext> plus a synthmed.json provenance sidecar). "
                                   "Sample i uses seed S+i; an interrupted run resumes where it stopped.")
    p.add_argument("ref", metavar="REF", help="model reference: ID, ID@VERSION, UPSTREAM/ID[@VERSION]")
    p.add_argument("-n", "--num-samples", type=int, default=None, metavar="N",
                   help="number of samples (required, except for a model with array inputs: then every input "
                        "--per-input times)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="file format (default auto: png for 2D outputs, nifti for volumes)")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=None,
                   help="PNG/DICOM bit depth (16: the full value range, e.g. all HU, for quantitative use)")
    p.add_argument("--outputs", default=None, metavar="NAMES",
                   help="write only these outputs, e.g. image,mask (default: all; with --format png all 2D ones)")
    p.add_argument("--window", default=None, metavar="C,W",
                   help="window centre and width for 8-bit pictures of one-channel images, e.g. 40,400 "
                        "(default: the record's window; CT 40,400)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of sample 0 (default 0)")
    p.add_argument("--png-compression", type=int, default=None, metavar="L",
                   help="zlib level of PNG files, 0 (fastest) to 9 (smallest); same pixels "
                        "(default: the site's [output] png_compress_level, else 1)")
    p.add_argument("--writers", type=int, default=None, metavar="W",
                   help="threads that encode and write files while the model runs "
                        "(default: the site's [output] writers, else one per core; 0: none)")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="make only block K (from 0) of N of the samples into the same folder; without it "
                        "torchrun's RANK/WORLD_SIZE or a Slurm array's SLURM_ARRAY_TASK_ID/COUNT choose the shard")
    p.add_argument("--devices", default=None, metavar="DEVICES",
                   help="one worker process per device, each with its own block of samples: all (every GPU, "
                        "else one CPU worker), cuda:0,cuda:1, or cpu:K (K CPU workers)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: run the shards as Ray tasks on a cluster (pip install 'synthmed[ray]')")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="--engine ray: the cluster's address (default: RAY_ADDRESS, else a local Ray instance)")
    p.add_argument("--ray-shards", type=int, default=None, metavar="N",
                   help="--engine ray: number of shards (default: the cluster's GPUs, else its CPUs)")
    p.add_argument("--ray-worker-site", default=None, metavar="DIR",
                   help="--engine ray: the site each worker prepares the model from (default: this site's "
                        "folder, which must then be on shared storage)")
    p.add_argument("--ray-mirror", action="append", default=[], metavar="mirror:URI",
                   help="--engine ray: a store the workers fetch the package from first, e.g. "
                        "mirror:/shared/site/store or mirror:https://head/store (repeatable)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B", help="samples per model call")
    p.add_argument("--chunk-size", type=int, default=None, metavar="C",
                   help="medigan-1 packages: seeds per generate() call; the samples depend on it and it is "
                        "recorded (default: runner.medigan_chunk in site.toml, else chosen for the run)")
    p.add_argument("--layout", choices=("synthmed", "medigan"), default="synthmed",
                   help="file names: <output>/<index>.<ext> (synthmed) or batch_<i//32>_<i%%32>.<ext> (medigan)")
    p.add_argument("--device", default=None, metavar="D", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--mode", choices=("auto", "inline", "worker"), default=None,
                   help="run in this process, in a worker process, or decide from the requirements")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="worker mode: longest wait for one batch")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a model parameter (repeatable); values follow the model's inputs schema")
    p.add_argument("--input", action="append", default=[], metavar="NAME=PATH",
                   help="an array input (repeatable): a folder of PNG/NPY/NIfTI/DICOM files taken in name order, "
                        "or one file; sample i takes input i // K (see --per-input)")
    p.add_argument("--per-input", type=int, default=1, metavar="K",
                   help="samples per input, each with its own seed (default 1)")
    p.add_argument("--offline", action="store_true", default=None, help="never fetch a missing package")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_generate)

    vo = sub.add_parser("verify-output", help="check a generated folder: complete, no duplicates, sha256 as its manifest",
                        description="Check an output folder of `synthmed generate` (one process or the union of "
                                    "its shards): every sample 0..N-1 of every output present, no other file in "
                                    "the output folders, no temporary file left by a killed writer, and every "
                                    "file's sha256 as in synthmed.manifest.json. Exit status 1 on any problem.")
    vo.add_argument("folder", metavar="DIR", help="the output folder")
    vo.add_argument("--json", action="store_true", help="print the result as JSON")
    vo.set_defaults(func=cmd_verify_output)

    v = sub.add_parser("visualize", help="write a grid PNG of a model's samples",
                       description="Generate N samples (seeds S..S+N-1) and write them as one grid PNG; "
                                   "volumes show their middle slice.")
    v.add_argument("ref", metavar="REF", help="model reference: ID, ID@VERSION, UPSTREAM/ID[@VERSION]")
    v.add_argument("-n", "--num-samples", type=int, default=16, metavar="N", help="samples in the grid (default 16)")
    v.add_argument("-o", "--output", required=True, metavar="FILE", help="PNG file to write")
    v.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the first sample (default 0)")
    v.add_argument("--output-name", default=None, metavar="NAME", help="which model output (default: the first)")
    v.add_argument("--outputs", default=None, metavar="NAMES",
                   help="outputs to show, e.g. image,volume: one column each, a row per sample "
                        "(masks of the same shape are overlaid on them)")
    v.add_argument("--side-by-side", action="store_true",
                   help="masks in their own column beside their image instead of overlaid")
    v.add_argument("--no-overlay", action="store_true", help="do not overlay masks on their images")
    v.add_argument("--window", default=None, metavar="C,W",
                   help="window centre and width of one-channel images (default: the record's; CT 40,400)")
    v.add_argument("--device", default=None, metavar="D", help="auto, cpu, cuda or cuda:N")
    v.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a model parameter (repeatable); values follow the model's inputs schema")
    v.add_argument("--input", action="append", default=[], metavar="NAME=PATH",
                   help="an array input (repeatable), shown beside the outputs: a folder of files or one file")
    v.set_defaults(func=cmd_visualize)


def parse_input_args(items: list[str]) -> dict[str, str]:
    """``["mask=masks/"]`` -> ``{"mask": "masks/"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise ConfigError(f"--input {item!r}: expected NAME=PATH", hint="e.g. --input mask=masks/ "
                                                                           "(`synthmed show REF` lists the inputs)")
        if name.strip() in out:
            raise ConfigError(f"--input {name.strip()!r} is given twice")
        out[name.strip()] = path
    return out


def _shard_and_device(args: argparse.Namespace) -> tuple[Shard | None, str | None]:
    """The shard of this process (``--shard``, else the launcher's environment) and its device."""
    device = args.device
    if args.shard is not None:
        return Shard.parse(args.shard), device
    found = shard_from_env(os.environ)
    if found is None:
        return None, device
    shard = found[0]
    print(f"shard {shard} of the run, from {found[1]} (give --shard 0/1 to make every sample here)", file=sys.stderr)
    local = os.environ.get("LOCAL_RANK", "")
    if "torchrun" in found[1] and local.isdigit() and device in (None, "auto", "cuda") and not args.devices:
        from ..parallel import cuda_count

        if cuda_count() > int(local):  # each rank on its own GPU, as torchrun means it
            device = f"cuda:{local}"
    return shard, device


def _check_generate_args(args: argparse.Namespace, given: dict[str, str]) -> None:
    if args.num_samples is None and not given:
        raise ConfigError("-n N is required: the number of samples", hint="e.g. -n 100 writes samples 0..99")
    if args.num_samples is not None and args.num_samples < 0:
        raise ConfigError(f"-n {args.num_samples}: the number of samples must be 0 or more",
                          hint="e.g. -n 100 writes samples 0..99 (seeds S..S+99)")
    if args.timeout is not None and not args.timeout > 0:
        raise ConfigError(f"--timeout {args.timeout:g}: the timeout must be above 0 seconds",
                          hint="leave it out for the default, or give the longest wait for one batch, e.g. 600")


def cmd_generate(args: argparse.Namespace) -> int:
    from synthmed.registry.runner import check_params, parse_param_args

    from ..request import build_request
    from ..site import Site

    given = parse_input_args(args.input)
    _check_generate_args(args, given)
    shard, device = _shard_and_device(args)
    settings = settings_from_args(args, device=device, mode=args.mode, batch_size=args.batch_size,
                                  offline=args.offline)
    site = Site(settings=settings, timeout_s=args.timeout, progress=False if args.no_progress else None)
    entry = site.resolve(args.ref)
    raw = parse_param_args(entry.record, args.param)  # typed from the inputs schema
    params = check_params(entry.record, raw)  # refuse bad params before fetching or running anything
    # the one request of this run: its inputs read and checked here, before any fetch
    request = build_request(entry.record, Path(args.output), args.num_samples, seed=args.seed, params=params,
                            inputs=given or None, per_input=args.per_input,
                            max_decoded_bytes=settings.inputs.max_decoded_bytes, format=args.format or "auto",
                            bit_depth=args.bit_depth, outputs=args.outputs, window=args.window, layout=args.layout,
                            png_compress_level=args.png_compression, writers=args.writers,
                            shard=shard or Shard(0, 1))
    model = site.model(entry, chunk_size=args.chunk_size)
    bar = ProgressBar(model.ref if shard is None else f"{model.ref} shard {shard}", enabled=not args.no_progress)
    try:
        return _run_generate(args, model, request.with_(progress=bar), settings)
    finally:
        bar.close()
        model.close()
        site.close()


def _run_generate(args: argparse.Namespace, model: Any, request: Any, settings: Any) -> int:
    """Run the request in the way the flags ask (Ray, every device, or this process) and print its summary."""
    if args.devices and args.engine == "ray":
        raise ConfigError("--devices and --engine ray do not go together",
                          hint="Ray places its workers on the cluster's devices itself (one GPU per worker)")
    if request.inputs is not None and (args.engine == "ray" or args.devices):
        raise ConfigError("array inputs (--input) run in one process or as --shard K/N for now, "
                          "not with --devices or --engine ray",
                          hint="split the run with --shard K/N (one process per shard), or leave --devices out")
    if args.engine == "ray":
        from ..ray_engine import run_with_ray

        run = run_with_ray(model, request.with_(shard=Shard(0, 1)), site_home=settings.home, worker_site=args.ray_worker_site,
                           mirrors=args.ray_mirror, address=args.address, shards=args.ray_shards)
        return _print_parallel(args, model.ref, request.format, run.summary())
    if args.devices:
        from ..parallel import run_on_devices

        return _print_parallel(args, model.ref, request.format, run_on_devices(model, request, args.devices).summary())
    result = model.run(request)
    summary = {
        "model": model.ref, "output": str(result.folder), "format": request.format, "num_samples": result.num_samples,
        "written": result.written, "skipped": result.skipped, "seconds": round(result.seconds, 3),
        "samples_per_second": round(result.samples_per_second, 2), "sidecar": str(result.sidecar),
        "seeds": [request.seed, request.seed + request.n - 1] if request.n else [],
        "params": json.loads(json.dumps(dict(request.params), default=str)),
        "outputs": result.outputs, "left_out": result.left_out,
        "shard": result.shard, "complete": result.complete,
    }
    if args.json:
        print_json(summary)
    else:
        print(f"{result.written} written, {result.skipped} already there: {result.folder} "
              f"({summary['samples_per_second']} samples/s; outputs {', '.join(result.outputs)})")
        advice = left_out_advice(result.left_out)
        if advice:
            print(advice)
    return 0


def _print_parallel(args: argparse.Namespace, ref: str, fmt: str, run: dict[str, Any]) -> int:
    """The summary of a run on several devices or a Ray cluster."""
    summary = {"model": ref, "format": fmt, **{k: v for k, v in run.items() if k != "seconds"},
               "seconds": round(float(run["seconds"]), 3),
               "samples_per_second": round(float(run["samples_per_second"]), 2)}
    if args.json:
        print_json(summary)
    else:
        where = ", ".join(run.get("devices") or []) or f"{len(run['workers'])} Ray workers"
        print(f"{run['written']} written, {run['skipped']} already there: {run['folder']} "
              f"({summary['samples_per_second']} samples/s on {where}"
              f"{'; run complete, manifest written' if run['complete'] else ''})")
    return 0


def cmd_verify_output(args: argparse.Namespace) -> int:
    from ..run_manifest import verify_output

    result = verify_output(Path(args.folder))
    if args.json:
        print_json(result)
    elif result["ok"]:
        print(f"ok: {args.folder}: {result['num_samples']} samples of {', '.join(result['outputs'])}, "
              f"{result['files_hashed']} files match the manifest")
    else:
        print(f"{args.folder}: {len(result['problems'])} problem(s)", file=sys.stderr)
        for problem in result["problems"]:
            print(f"  - {problem}", file=sys.stderr)
    return 0 if result["ok"] else 1


def cmd_visualize(args: argparse.Namespace) -> int:
    from synthmed.registry.runner import check_params, parse_param_args

    from ..datasets import visualize
    from ..site import Site

    if args.num_samples < 1:
        raise ConfigError(f"-n {args.num_samples}: a grid needs at least one sample",
                          hint="e.g. -n 16 for a 4x4 grid")
    settings = settings_from_args(args, device=args.device)
    site = Site(settings=settings)
    try:
        entry = site.resolve(args.ref)
        params = check_params(entry.record, parse_param_args(entry.record, args.param))
        given = parse_input_args(args.input)
        model = site.model(entry)
        try:
            names = [str(o["name"]) for o in model.record.outputs]
            if args.output_name is not None and args.output_name not in names:
                raise ConfigError(f"{model.ref} has no output {args.output_name!r}",
                                  hint=f"its outputs are: {', '.join(names)}")
            path = visualize(model.spec(), Path(args.output), args.num_samples, seed=args.seed, params=params,
                             output=args.output_name, outputs=args.outputs, side_by_side=args.side_by_side,
                             overlay=not args.no_overlay, window=args.window, inputs=given or None)
        finally:
            model.close()
    finally:
        site.close()
    print(f"grid of {args.num_samples} sample(s) of {model.ref}: {path}")
    return 0
