"""Generation throughput and memory (docs/design.md, performance targets), printed as JSON.

1. Throughput: a DCGAN-style generator (64x64 RGB, like an IHC patch model) is packaged
   as a synthmed-1 zip in a temporary folder with a record pinned to its sha256. In the
   same process, with the same batch size and device, it measures:
   - ``bare_model_loop`` (the baseline): the package's own ``sample(seeds)`` called
     directly in a loop (per-seed noise, forward, uint8 conversion), no synthmed;
   - ``network_forward_only``: ``net(z)`` on precomputed noise (the network's floor,
     for reference: the gap to the bare loop is the model's own noise and conversion);
   - ``sdk_inline``: ``Model.iter_batches`` through synthmed (parameter check, runner,
     output checks);
   - ``sdk_worker``: the same through a worker process (pickled arrays over a pipe);
   - ``sdk_to_disk_npy``: ``Model.generate_to`` writing ``.npy`` files.
   The first four are interleaved batch by batch in a shuffled order (a shared machine
   is noisy at the scale of seconds, so each variant sees the same conditions); the
   to-disk rounds are paired with a bare-forward pass just before and after.
   Target: ``sdk_inline / bare_model_loop >= 0.95``.
   The same comparison runs on the index's starter model ``ihc-patch-dcgan`` (``--starter``).
   With ``--medigan``, a medigan-1 package of the same net is timed through the SDK
   (one seeded call per sample) against one direct ``generate(num_samples=N)`` call.

2. Memory: a small fast model (16x16 uint8, numpy) writes 1,000 and 100,000 samples to
   disk (``npy``) through ``generate_to``, each in a fresh subprocess; peak traced
   Python memory (tracemalloc) and peak RSS (VmHWM from /proc/self/status) are
   reported. Target: flat in the sample count.

    .venv/bin/python bench/generate.py [--samples 2048] [--batch-size 64] [--device auto]
                                       [--mem-counts 1000 100000] [--out results.json]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent

NET_CODE = '''
import torch
from torch import nn


class Generator(nn.Module):
    """DCGAN generator: z (100) -> 3x64x64 in [-1, 1]."""

    def __init__(self, nz=100, ngf=32):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh(),
        )

    def forward(self, z):
        return self.main(z.view(z.shape[0], -1, 1, 1))
'''

MODEL_CODE = '''
import torch

from .net import Generator


class DCGAN:
    def __init__(self, package_dir, device):
        self.device = torch.device(device)
        self.net = Generator()
        self.net.load_state_dict(torch.load(package_dir / "weights.pt", map_location="cpu", weights_only=True))
        self.net.to(self.device).eval()

    def noise(self, seeds):
        return torch.stack([torch.randn(100, generator=torch.Generator().manual_seed(int(s))) for s in seeds])

    @torch.inference_mode()
    def sample(self, seeds):
        x = self.net(self.noise(seeds).to(self.device))
        img = ((x + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return {"image": img.cpu().numpy()}


def build(package_dir, device):
    return DCGAN(package_dir, device)
'''

MEDIGAN_CODE = '''
import numpy as np
import torch

from .net import Generator


def generate(model_file, num_samples, output_path, save_images, **kwargs):
    net = Generator()
    net.load_state_dict(torch.load(model_file, map_location="cpu", weights_only=True))
    net.eval()
    with torch.inference_mode():
        x = net(torch.randn(num_samples, 100))
    img = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return list(img)
'''

SMALL_CODE = '''
import numpy as np


class Small:
    def sample(self, seeds):
        return {"image": np.stack([np.random.default_rng(int(s)).integers(0, 256, (16, 16), dtype=np.uint8)
                                   for s in seeds])}


def build(package_dir, device):
    return Small()
'''


def _zip(files: dict[str, str | bytes], path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(files.items()):
            zf.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), data.encode() if isinstance(data, str) else data)
    return path


def _record(model_id: str, zip_path: Path, outputs: list[dict[str, Any]], entry: str, fmt: str = "synthmed-1",
            **package: Any) -> Any:
    from synthmed.registry.records import load_record_text

    data = {
        "format": "synthmed-record/1", "id": model_id, "version": "1.0.0", "title": f"bench {model_id}",
        "summary": "a model built by bench/generate.py", "status": "active", "modality": ["IHC"],
        "anatomy": ["tissue"], "generates": ["patch"], "architecture": {"family": "gan", "name": "DCGAN"},
        "task": "unconditional", "inputs": {"type": "object", "properties": {}, "additionalProperties": False},
        "outputs": outputs, "license": "MIT", "authors": [{"name": "bench"}],
        "package": {"format": fmt, "entry_point": entry, "requirements": [], **package, "artefact": {
            "sha256": hashlib.sha256(zip_path.read_bytes()).hexdigest(), "size": zip_path.stat().st_size,
            "media_type": "application/zip", "sources": [zip_path.as_uri()]}},
        "test": {"num_samples": 4, "seed": 0},
    }
    return load_record_text(json.dumps(data), str(zip_path.with_suffix(".json")))


def _prepare(record: Any, zip_path: Path, dest: Path) -> Any:
    """The zip as the verified package of ``record`` (hashed against its pin, unpacked):
    what a site's ``prepare`` hands the runner."""
    from synthmed.registry.packages import prepare_archive

    return prepare_archive(record, zip_path, dest)


def build_dcgan(tmp: Path) -> tuple[Any, Path, Any]:
    import torch

    torch.manual_seed(0)
    ns: dict[str, Any] = {}
    exec(NET_CODE, ns)
    net = ns["Generator"]()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    z = _zip({"dcgan/__init__.py": "", "dcgan/net.py": NET_CODE, "dcgan/model.py": MODEL_CODE,
              "weights.pt": buf.getvalue()}, tmp / "dcgan.zip")
    out = [{"name": "image", "kind": "image", "dims": 2, "shape": [64, 64], "dtype": "uint8", "channels": 3,
            "value_range": [0, 255]}]
    record = _record("bench-dcgan", z, out, "dcgan.model:build")
    mz = _zip({"bench_medigan/__init__.py": MEDIGAN_CODE, "bench_medigan/net.py": NET_CODE,
               "bench_medigan/generator.pt": buf.getvalue()}, tmp / "medigan.zip")
    mrec = _record("bench-medigan", mz, out, "bench_medigan", fmt="medigan-1", weights="bench_medigan/generator.pt")
    return record, _prepare(record, z, tmp / "pkg-dcgan"), (mrec, _prepare(mrec, mz, tmp / "pkg-medigan"))


def _best(times: list[float]) -> float:
    return min(times)


def bench_throughput(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from synthmed.registry.runner.device import resolve_device
    from synthmed.registry.formats import load_model
    from synthmed.registry.runner import RunnerOptions
    from synthmed.site import Model

    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    tmp = Path(tempfile.mkdtemp(prefix="synthmed-bench-"))
    record, pkg, (mrec, mpkg) = build_dcgan(tmp)
    device = resolve_device(args.device)
    n, bs = args.samples, args.batch_size
    seeds = list(range(n))
    batches = [seeds[i:i + bs] for i in range(0, n, bs)]

    bare = load_model(record, pkg.folder, device, "bench-bare")
    impl = bare.impl  # the package's own object
    net = impl.net
    noise = [impl.noise(b).to(impl.device) for b in batches]

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def run_forward() -> None:
        with torch.inference_mode():
            for z in noise:
                net(z)
        sync()

    def run_bare_sample() -> None:
        for b in batches:
            impl.sample(b)
        sync()

    model = Model(pkg, RunnerOptions(device=device, batch_size=bs, mode="inline"))
    worker = Model(pkg, RunnerOptions(device=device, batch_size=bs, mode="worker"))
    model.runner.prepare()
    worker.runner.prepare()

    disk = tmp / "disk"

    def run_disk() -> None:
        import shutil

        shutil.rmtree(disk, ignore_errors=True)
        model.generate_to(disk, n, format="npy", seed=0)

    # Interleaved at batch granularity, in a shuffled order at every step, so that every
    # variant sees the same machine (a shared 2-core box is noisy at the scale of seconds).
    rng = random.Random(0)
    stepped = ("bare_forward", "bare_sample", "sdk", "sdk_worker")
    step_times: dict[str, list[float]] = {k: [] for k in stepped}
    for rnd in range(args.rounds + 1):  # the first pass warms up and is not counted
        its = {"sdk": iter(model.iter_batches(n, seed=0)), "sdk_worker": iter(worker.iter_batches(n, seed=0))}
        for k, b in enumerate(batches):
            order = list(stepped)
            rng.shuffle(order)
            for name in order:
                t = time.perf_counter()
                if name == "bare_forward":
                    with torch.inference_mode():
                        net(noise[k])
                    sync()
                elif name == "bare_sample":
                    impl.sample(b)
                    sync()
                else:
                    next(its[name])
                    sync()
                if rnd:
                    step_times[name].append(time.perf_counter() - t)
    total = {k: sum(v) for k, v in step_times.items()}
    rate = {k: args.rounds * n / total[k] for k in stepped}

    def median(xs: list[float]) -> float:
        xs = sorted(xs)
        return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2

    per_step = {k: median([f / s for f, s in zip(step_times["bare_forward"], step_times[k])])
                for k in ("bare_sample", "sdk", "sdk_worker")}

    # writing to disk cannot be cut into steps: rounds of generate_to, each paired with a
    # bare-forward pass over the same batches right before and right after it
    disk_ratios = []
    disk_rates = []
    for _ in range(max(1, args.rounds // 2)):
        t = time.perf_counter()
        run_forward()
        before = time.perf_counter() - t
        t = time.perf_counter()
        run_disk()
        d = time.perf_counter() - t
        t = time.perf_counter()
        run_forward()
        after = time.perf_counter() - t
        disk_ratios.append(((before + after) / 2) / d)
        disk_rates.append(n / d)
    result: dict[str, Any] = {
        "model": "bench-dcgan (DCGAN, z=100 -> 3x64x64 uint8, built in the bench)",
        "device": device, "batch_size": bs, "samples_per_pass": n, "passes": args.rounds,
        "torch_threads": torch.get_num_threads(),
        "method": "variants interleaved batch by batch in shuffled order; totals over all passes",
        "samples_per_second": {
            "bare_model_loop": round(rate["bare_sample"], 1),
            "sdk_inline": round(rate["sdk"], 1),
            "sdk_worker": round(rate["sdk_worker"], 1),
            "sdk_to_disk_npy": round(median(disk_rates), 1),
            "network_forward_only": round(rate["bare_forward"], 1),
        },
        "ratio_sdk_vs_bare_model_loop": round(rate["sdk"] / rate["bare_sample"], 4),
        "ratio_worker_vs_bare_model_loop": round(rate["sdk_worker"] / rate["bare_sample"], 4),
        "ratio_sdk_vs_network_forward_only": round(rate["sdk"] / rate["bare_forward"], 4),
        "ratio_bare_model_loop_vs_network_forward_only": round(rate["bare_sample"] / rate["bare_forward"], 4),
        "median_step_ratio_vs_network_forward_only": {
            {"bare_sample": "bare_model_loop", "sdk": "sdk_inline", "sdk_worker": "sdk_worker"}[k]: round(v, 4)
            for k, v in per_step.items()},
        "ratio_to_disk_vs_network_forward_only_paired": round(median(disk_ratios), 4),
        "baselines": {
            "bare_model_loop": "the package's own sample(seeds) called directly in a loop over the same batches "
                               "(per-seed noise, forward, uint8 conversion): what the model costs without synthmed",
            "network_forward_only": "net(z) on precomputed noise, no conversion: the floor of the network alone",
        },
        "target": "sdk_inline / bare_model_loop >= 0.95",
    }
    result["meets_target"] = result["ratio_sdk_vs_bare_model_loop"] >= 0.95
    model.close()
    worker.close()

    if args.medigan:
        mn = min(n, args.medigan_samples)
        mod = load_model(mrec, mpkg.folder, device, "bench-medigan-direct")
        gen = mod.generate  # the package's own generate()
        med = Model(mpkg, RunnerOptions(device=device, batch_size=bs, mode="inline"))
        med.sample(2)
        t = time.perf_counter()
        gen(model_file=str(mod.model_file), num_samples=mn, output_path=str(tmp / "m"), save_images=False)
        direct = time.perf_counter() - t
        t = time.perf_counter()
        med.sample(mn)
        ours = time.perf_counter() - t
        result["medigan_1"] = {
            "samples": mn,
            "direct_generate_samples_per_second": round(mn / direct, 1),
            "sdk_samples_per_second": round(mn / ours, 1),
            "ratio_sdk_vs_direct": round(direct / ours, 4),
            "note": "the SDK makes one seeded generate() call per chunk of consecutive seeds (16 by default, "
                    "so that sample i depends only on seed i); this medigan model, like medigan's own, reloads "
                    "its weights on every call, which one direct call does once",
        }
        med.close()
    return result


def bench_starter(args: argparse.Namespace) -> dict[str, Any] | None:
    """The same comparison on the index's starter model (``--starter``), when it is there:
    its own ``sample()`` called directly vs ``Model.iter_batches``, interleaved."""
    import torch

    from synthmed.registry.records import load_record
    from synthmed.registry.runner.device import resolve_device
    from synthmed.registry.formats import load_model
    from synthmed.registry.runner import RunnerOptions
    from synthmed.site import Model

    index = HERE.parent / "index"
    rec_path = index / "models" / args.starter / "1.0.0.json"
    if not rec_path.is_file():
        return None
    record = load_record(rec_path)
    src = record.sources[0]
    if not src.startswith("index:"):
        return None
    blob = index / src[len("index:"):]
    tmp = Path(tempfile.mkdtemp(prefix="synthmed-bench-starter-"))
    pkg = _prepare(record, blob, tmp / "pkg")  # verified against the record's pin
    device = resolve_device(args.device)
    n, bs = args.samples, args.batch_size
    batches = [list(range(i, min(n, i + bs))) for i in range(0, n, bs)]
    impl = load_model(record, pkg.folder, device, "bench-starter-bare")
    model = Model(pkg, RunnerOptions(device=device, batch_size=bs, mode="inline"))
    model.runner.prepare()
    rng = random.Random(1)
    times: dict[str, float] = {"bare_model_loop": 0.0, "sdk_inline": 0.0}
    for rnd in range(args.rounds + 1):
        it = iter(model.iter_batches(n, seed=0))
        for b in batches:
            order = list(times)
            rng.shuffle(order)
            for name in order:
                t = time.perf_counter()
                if name == "bare_model_loop":
                    impl.sample(b)
                else:
                    next(it)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                if rnd:
                    times[name] += time.perf_counter() - t
    model.close()
    rate = {k: args.rounds * n / v for k, v in times.items()}
    return {
        "model": f"{record.ref} (index/{src[len('index:'):]}, sha256 verified)",
        "device": device, "batch_size": bs, "samples_per_pass": n, "passes": args.rounds,
        "samples_per_second": {k: round(v, 1) for k, v in rate.items()},
        "ratio_sdk_vs_bare_model_loop": round(rate["sdk_inline"] / rate["bare_model_loop"], 4),
    }


def _vm_hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


def memory_child(n: int, out_dir: str, traced: bool, fmt: str = "npy") -> dict[str, Any]:
    """Runs in a fresh process: generate n small samples to disk as ``fmt`` files; report peaks.

    tracemalloc's own bookkeeping lives outside the traced heap but inside the RSS, so
    RSS is measured in a separate run without it."""
    import tracemalloc

    from synthmed.registry.runner import RunnerOptions
    from synthmed.site import Model

    tmp = Path(out_dir)
    z = _zip({"small.py": SMALL_CODE}, tmp / "small.zip")
    out = [{"name": "image", "kind": "image", "dims": 2, "shape": [16, 16], "dtype": "uint8", "channels": 1,
            "value_range": [0, 255]}]
    record = _record("bench-small", z, out, "small:build")
    pkg = _prepare(record, z, tmp / "pkg")
    model = Model(pkg, RunnerOptions(device="cpu", batch_size=256, mode="inline"))
    model.sample(1)  # load before measuring
    hwm_before = _vm_hwm_kb()
    if traced:
        tracemalloc.start()
    t = time.perf_counter()
    res = model.generate_to(tmp / "out", n, format=fmt, seed=0)
    seconds = time.perf_counter() - t
    result: dict[str, Any] = {"samples": n, "written": res.written, "complete": res.complete}
    if traced:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result.update(tracemalloc_peak_kb=round(peak / 1024, 1), seconds_traced=round(seconds, 2))
    else:
        result.update(vm_hwm_kb_before=hwm_before, vm_hwm_kb=_vm_hwm_kb(), seconds=round(seconds, 2),
                      samples_per_second=round(n / seconds, 1))
    # counted after the measurements: listing 100,000 names is the bench's memory, not synthmed's
    with os.scandir(tmp / "out" / "image") as it:
        result["files"] = sum(1 for _ in it)
    return result


def bench_memory(counts: list[int], fmt: str = "npy") -> dict[str, Any]:
    """Peak memory of writing ``counts`` small samples as ``fmt`` files (bench/scale.py uses
    it with PNG, through the writer pool and the run manifest)."""
    runs = []
    for n in counts:
        merged: dict[str, Any] = {}
        for traced in (False, True):
            with tempfile.TemporaryDirectory(prefix="synthmed-bench-mem-") as d:
                proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-child", str(n), d,
                                       "1" if traced else "0", fmt], capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise SystemExit(f"memory run for {n} samples failed:\n{proc.stderr[-3000:]}")
                merged.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        runs.append(merged)
    small, big = runs[0], runs[-1]
    return {
        "model": f"bench-small (numpy, 16x16 uint8), {fmt} files, batch size 256, fresh processes: one run "
                 "with tracemalloc (Python heap peak), one without (peak RSS, VmHWM)",
        "runs": runs,
        "tracemalloc_peak_ratio": round(big["tracemalloc_peak_kb"] / max(small["tracemalloc_peak_kb"], 1e-9), 3),
        "rss_peak_ratio": round(big["vm_hwm_kb"] / max(small["vm_hwm_kb"], 1), 3),
        "rss_peak_growth_during_run_kb": {str(r["samples"]): r["vm_hwm_kb"] - r["vm_hwm_kb_before"] for r in runs},
        "target": "peak memory flat in the sample count",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: on a shared machine, threads waiting for each "
                        "other dominate; 0 = all CPUs)")
    p.add_argument("--medigan", action="store_true", help="also time a medigan-1 package against its own generate")
    p.add_argument("--medigan-samples", type=int, default=256)
    p.add_argument("--mem-counts", type=int, nargs="+", default=[1000, 100000])
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--starter", default="ihc-patch-dcgan",
                   help="also time this starter model of index/ (empty to skip)")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--memory-child", nargs=4, metavar=("N", "DIR", "TRACED", "FORMAT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    # baselines and synthmed under the allocator policy synthmed runs models with (registry/runner/allocator.py)
    from synthmed.registry.runner import allocator

    allocator.keep_freed_memory()
    if args.memory_child:
        print(json.dumps(memory_child(int(args.memory_child[0]), args.memory_child[1], args.memory_child[2] == "1",
                                      args.memory_child[3])))
        return 0
    from synthmed import __version__

    result: dict[str, Any] = {
        "bench": "generate", "synthmed_version": __version__, "python": platform.python_version(),
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    if not args.skip_throughput:
        result["throughput"] = bench_throughput(args)
        if args.starter:
            result["throughput_starter"] = bench_starter(args) or f"{args.starter} not found in index/"
    if not args.skip_memory:
        result["memory"] = bench_memory(sorted(args.mem_counts))
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
