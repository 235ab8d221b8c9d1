"""Generation at scale (docs/design.md, performance targets), printed as JSON; every
figure has its baseline measured in the same run.

1. ``encoders``: PNG encoding of the bench DCGAN's own samples (64x64 RGB) and of a
   256x256 grey image, one thread: Pillow at its default level (6) and at level 1
   against synthmed's encoder (:mod:`synthmed.png_encoder`) at levels 1 and 6; samples
   per second and bytes per file.
2. ``end_to_end``: ``Model.generate_to`` writing PNG, against the limit = the smaller of
   the model's own rate (its ``sample()`` in a loop: noise, forward, uint8) and the
   encoder's rate on the same cores (the writer pool writing the same samples with no
   model running). Both the synchronous writer (``writers=0``, what synthmed did before)
   and the pool (``writers`` = cores) are timed; rounds are interleaved. Target: pool
   >= 0.9 of the limit.
3. ``scaling``: ``generate_on_devices`` with ``cpu:1`` against ``cpu:2`` (one and two
   worker processes, each with cores/workers torch and writer threads), same samples.
4. ``ray``: the same run as 2 Ray tasks on a local instance (``ray.init(num_cpus=2)``)
   against 2 local device workers (``cpu:2``); Ray's start-up is reported apart.
5. ``close``: the manifest of a finished run of ``--close-samples`` PNGs from the hashes
   the writers recorded, against reading and hashing every file again (the same bytes
   checked); milliseconds.
6. ``memory``: a tiny model (16x16 uint8) writes 1,000 and 100,000 PNG files through the
   writer pool, each count in a fresh process: peak RSS (VmHWM) and peak traced Python
   memory (tracemalloc, separate run). Target: flat in the sample count.

    .venv/bin/python bench/scale.py [--samples 1024] [--rounds 3] [--skip-ray] [--out bench/results/scale.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generate as gen  # noqa: E402  (bench/generate.py: the bench models)


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def _stats(xs: list[float]) -> dict[str, float]:
    return {"min": round(min(xs), 1), "median": round(_median(xs), 1), "max": round(max(xs), 1)}


def bench_encoders(samples: np.ndarray, rounds: int) -> dict[str, Any]:
    from PIL import Image

    from synthmed.png_encoder import encode_png

    grey = np.clip(np.add.outer(np.arange(256), np.arange(256)) // 2
                   + np.random.default_rng(0).normal(0, 6, (256, 256)), 0, 255).astype(np.uint8)
    sets = {"dcgan_64x64_rgb": list(samples[:256]), "grey_256x256": [grey] * 64}

    def pil(level: int | None) -> Any:
        def enc(a: np.ndarray) -> int:
            buf = io.BytesIO()
            kw = {} if level is None else {"compress_level": level}
            Image.fromarray(a).save(buf, format="PNG", **kw)
            return len(buf.getvalue())
        return enc

    encoders = {"pillow_default_level6": pil(None), "pillow_level1": pil(1),
                "synthmed_level1": lambda a: len(encode_png(a, 1)), "synthmed_level6": lambda a: len(encode_png(a, 6))}
    out: dict[str, Any] = {}
    for name, arrays in sets.items():
        rates: dict[str, list[float]] = {k: [] for k in encoders}
        sizes: dict[str, int] = {}
        for _ in range(rounds):
            for k, fn in encoders.items():  # interleaved: each sees the same machine
                t = time.perf_counter()
                total = sum(fn(a) for a in arrays)
                rates[k].append(len(arrays) / (time.perf_counter() - t))
                sizes[k] = total // len(arrays)
        base = _median(rates["pillow_default_level6"])
        out[name] = {k: {"per_second": _stats(v), "bytes_per_file": sizes[k],
                         "speed_vs_pillow_default": round(_median(v) / base, 2)} for k, v in rates.items()}
    return out


def bench_end_to_end(args: argparse.Namespace, tmp: Path, record: Any, pkg: Any) -> tuple[dict[str, Any], np.ndarray]:
    import torch

    from synthmed.output_folder import OutputFolder
    from synthmed.registry.runner import RunnerOptions
    from synthmed.registry.formats import load_model
    from synthmed.site import Model
    from synthmed.writer_pool import WriterPool, available_cores

    torch.set_num_threads(1)
    n, bs = args.samples, args.batch_size
    batches = [list(range(i, min(n, i + bs))) for i in range(0, n, bs)]
    impl = load_model(record, pkg.folder, "cpu", "bench-scale-bare").impl
    samples = np.concatenate([impl.sample(b)["image"] for b in batches])
    cores = available_cores()
    model = Model(pkg, RunnerOptions(device="cpu", batch_size=bs, mode="inline"))
    model.runner.prepare()

    def model_rate() -> float:
        t = time.perf_counter()
        for b in batches:
            impl.sample(b)
        return n / (time.perf_counter() - t)

    def encoder_rate() -> float:
        folder = tmp / "enc"
        shutil.rmtree(folder, ignore_errors=True)
        out = OutputFolder(folder, record, "png", 0, {}, {"png_compress_level": 1})
        out.open(n)
        t = time.perf_counter()
        with WriterPool(out.write, cores, max_pending=2 * bs) as pool:
            for i in range(n):
                pool.submit(i, {"image": samples[i]})
            pool.drain()
        return n / (time.perf_counter() - t)

    def disk_rate(writers: int) -> float:
        folder = tmp / f"disk{writers}"
        shutil.rmtree(folder, ignore_errors=True)
        t = time.perf_counter()
        model.generate_to(folder, n, format="png", writers=writers)
        return n / (time.perf_counter() - t)

    variants = {"model_loop": model_rate, "encoder_pool": encoder_rate,
                "generate_to_png_synchronous": lambda: disk_rate(0),
                f"generate_to_png_pool_{cores}_writers": lambda: disk_rate(cores)}
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for rnd in range(args.rounds + 1):  # round 0 warms up
        for k, fn in variants.items():
            r = fn()
            if rnd:
                rates[k].append(r)
    model.close()
    med = {k: _median(v) for k, v in rates.items()}
    limit = min(med["model_loop"], med["encoder_pool"])
    pool_key = f"generate_to_png_pool_{cores}_writers"
    return {
        "model": "bench-dcgan (z=100 -> 3x64x64 uint8), CPU, 1 torch thread", "samples": n, "batch_size": bs,
        "cores": cores, "rounds": args.rounds, "png_compress_level": 1,
        "samples_per_second": {k: _stats(v) for k, v in rates.items()},
        "limit": {"value": round(limit, 1), "rule": "min(model_loop, encoder_pool), medians"},
        "serial_bound": {"value": round(1 / (1 / med["model_loop"] + 1 / med["encoder_pool"]), 1),
                         "rule": "1 / (1/model_loop + 1/encoder_pool): no overlap at all, what a machine with "
                                 "no free core for the writers can reach"},
        "ratio_pool_vs_limit": round(med[pool_key] / limit, 3),
        "ratio_pool_vs_serial_bound": round(med[pool_key] * (1 / med["model_loop"] + 1 / med["encoder_pool"]), 3),
        "ratio_synchronous_vs_limit": round(med["generate_to_png_synchronous"] / limit, 3),
        "ratio_pool_vs_synchronous": round(med[pool_key] / med["generate_to_png_synchronous"], 3),
        "target": "pool >= 0.9 of the limit",
    }, samples


def bench_close(args: argparse.Namespace, tmp: Path, record: Any, samples: np.ndarray) -> dict[str, Any]:
    """The manifest of a finished run: from the hashes the writers recorded (what
    ``OutputFolder.close`` does now) against reading and hashing every file again (what it
    did before, and what it still does for a file with no valid record); same folder,
    interleaved rounds. Page cache warm for both (the files were just written)."""
    import json as _json

    from synthmed.output_folder import OutputFolder
    from synthmed.run_manifest import build_manifest
    from synthmed.sample_hashes import HashJournal
    from synthmed.writer_pool import WriterPool, available_cores

    n = args.close_samples
    folder = tmp / "close"
    shutil.rmtree(folder, ignore_errors=True)
    out = OutputFolder(folder, record, "png", 0, {}, {"png_compress_level": 1})
    out.open(n)
    with WriterPool(out.write, available_cores()) as pool:
        for start in range(0, n, 64):
            idx = list(range(start, min(n, start + 64)))
            pool.submit_batch(idx, {"image": samples[[i % len(samples) for i in idx]]})
        pool.drain()
    out.write_sidecar(complete=True)
    sidecar = _json.loads(out.sidecar_path.read_text())
    journal = HashJournal(folder, ["image"])
    journal.open()
    secs: dict[str, list[float]] = {"from_writer_hashes": [], "reading_every_file": []}
    texts = {}
    for _ in range(args.rounds):
        for k in secs:
            t = time.perf_counter()
            texts[k] = "".join(build_manifest(folder, sidecar, journal=journal if k == "from_writer_hashes" else None))
            secs[k].append(time.perf_counter() - t)
    journal.close()
    if texts["from_writer_hashes"] != texts["reading_every_file"]:
        raise SystemExit("the manifest from the writers' hashes differs from the one read from disk")
    return {"samples": n, "milliseconds": {k: _stats([x * 1000 for x in v]) for k, v in secs.items()},
            "speedup": round(_median(secs["reading_every_file"]) / _median(secs["from_writer_hashes"]), 2),
            "same_manifest": True}


def bench_scaling(args: argparse.Namespace, tmp: Path, pkg: Any) -> dict[str, Any]:
    from synthmed.parallel import generate_on_devices
    from synthmed.registry.runner import RunnerOptions
    from synthmed.site import Model

    model = Model(pkg, RunnerOptions(device="cpu", batch_size=args.batch_size, mode="inline"))
    n = args.scaling_samples
    rates: dict[str, list[float]] = {"cpu:1": [], "cpu:2": []}
    for _ in range(args.rounds):
        for spec in rates:
            folder = tmp / f"scale-{spec.replace(':', '')}"
            shutil.rmtree(folder, ignore_errors=True)
            run = generate_on_devices(model, folder, n, spec, format="png")
            rates[spec].append(run["written"] / run["seconds"])
    return {"samples": n, "note": "wall time of the whole call, worker start-up and model load included",
            "samples_per_second": {k: _stats(v) for k, v in rates.items()},
            "speedup_2_vs_1": round(_median(rates["cpu:2"]) / _median(rates["cpu:1"]), 3)}


def bench_ray(args: argparse.Namespace, tmp: Path, toy_record: Any, zip_path: Path) -> dict[str, Any]:
    import ray

    from synthmed.parallel import generate_on_devices
    from synthmed.ray_engine import generate_with_ray
    from synthmed.site import Site

    sys.path.insert(0, str(HERE.parent / "tests"))
    from helpers.sites import make_site_home

    home = make_site_home(tmp / "site", [dict(toy_record.data)])
    site = Site(home)
    model = site.model("bench-dcgan", device="cpu", batch_size=args.batch_size, mode="inline")
    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    startup = time.perf_counter() - t
    n = args.scaling_samples
    secs: dict[str, list[float]] = {"local_cpu2": [], "ray_2_tasks": []}
    try:
        for _ in range(args.rounds):
            for k in secs:
                folder = tmp / f"ray-{k}"
                shutil.rmtree(folder, ignore_errors=True)
                if k == "ray_2_tasks":
                    run = generate_with_ray(model, folder, n, site_home=home, shards=2, format="png")
                else:
                    run = generate_on_devices(model, folder, n, "cpu:2", format="png")
                secs[k].append(run["seconds"])
    finally:
        ray.shutdown()
        model.close()
        site.close()
    return {"samples": n, "ray_init_seconds": round(startup, 2),
            "seconds": {k: _stats(v) for k, v in secs.items()},
            "overhead_ray_vs_local_seconds": round(_median(secs["ray_2_tasks"]) - _median(secs["local_cpu2"]), 2),
            "ratio_ray_vs_local_time": round(_median(secs["ray_2_tasks"]) / _median(secs["local_cpu2"]), 3),
            "note": "both: 2 workers, each preparing the model and writing its half of the PNGs; Ray's workers "
                    "prepare the package through the site (hash check of the unpacked package)"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--scaling-samples", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--close-samples", type=int, default=4096)
    p.add_argument("--mem-counts", type=int, nargs="+", default=[1000, 100000])
    p.add_argument("--skip", nargs="*", default=[], choices=("encoders", "end_to_end", "close", "scaling", "ray", "memory"))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    from synthmed import __version__
    # baselines and synthmed under the allocator policy synthmed runs models with (registry/runner/allocator.py)
    from synthmed.registry.runner import allocator

    allocator.keep_freed_memory()

    result: dict[str, Any] = {"bench": "scale", "synthmed_version": __version__, "python": platform.python_version(),
                              "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    tmp = Path(tempfile.mkdtemp(prefix="synthmed-bench-scale-"))
    try:
        record, pkg, _ = gen.build_dcgan(tmp)
        samples = None
        if "end_to_end" not in args.skip:
            result["end_to_end"], samples = bench_end_to_end(args, tmp, record, pkg)
        if samples is None and not {"encoders", "close"} <= set(args.skip):
            from synthmed.registry.formats import load_model

            samples = load_model(record, pkg.folder, "cpu", "bench-enc").impl.sample(list(range(256)))["image"]
        if "encoders" not in args.skip:
            result["encoders"] = bench_encoders(samples, args.rounds)
        if "close" not in args.skip:
            result["close"] = bench_close(args, tmp, record, samples)
        if "scaling" not in args.skip:
            result["scaling"] = bench_scaling(args, tmp, pkg)
        if "ray" not in args.skip:
            result["ray"] = bench_ray(args, tmp, record, tmp / "dcgan.zip")
        if "memory" not in args.skip:
            result["memory"] = gen.bench_memory(sorted(args.mem_counts), fmt="png")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
