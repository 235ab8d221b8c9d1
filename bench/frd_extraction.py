"""FRD feature extraction throughput (#25: parallel extraction >= 1.8x on 2 cores vs 1), as JSON.

Radiomic features (the frd-radiomics extractor: frd-score 1.0.1's v1 pyradiomics recipe) of
N 64x64 grey patches with texture (a fixed seed), extracted by
``synthmed.registry.measuring.radiomics.features_of_items``:

- ``one_process`` (the baseline): ``workers=1``, in this process;
- ``workers_K`` for each K of ``--workers`` (default: 2 and the machine's core count):
  the module's pool of K spawned processes, kept between calls as evaluate keeps it (its
  one-off start-up, the imports in each worker, is timed apart as ``pool_start_s``).

Beside the wall times, a profile of where a pool's time can go: each image's CPU seconds in
the one-process rounds (``cpu_s_per_image``), the ratio that one-image tasks over K workers
reach at best with those costs (``balance_bound``: no scheduling or pickling cost, perfect
cores), and the share of a core the one-process baseline got (``cpu_share``: CPU seconds over
wall seconds; 1.0 on a quiet machine, less when other processes hold the cores).

The variants alternate round by round (a shared machine is noisy at the scale of seconds,
so each sees the same conditions); each reports min/median/max seconds and images/s over
the rounds, the ratio of medians to the baseline, and the load average before and after.
The features of every variant are checked equal to the baseline's (the same numbers, in order).

    .venv/bin/python bench/frd_extraction.py [-n 96] [--rounds 3] [--workers 2] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np


def patches(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for i in range(n):
        f = rng.uniform(2, 9, 2)
        base = 128 + 50 * np.sin(xx / f[0] + i) * np.cos(yy / f[1])
        out.append(np.clip(base + rng.normal(0, 25, (size, size)), 0, 255).astype(np.uint8))
    return np.stack(out)


def makespan(costs: list[float], workers: int) -> float:
    """The end of the last task when one-image tasks go, in order, to whichever worker is free."""
    free = [0.0] * workers
    for c in costs:
        free[free.index(min(free))] += c
    return max(free)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=96, help="patches per round (default 96)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=None, help="pool sizes to time (default: 2 and the core count)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--itk-threads", type=int, default=None,
                    help="diagnostic: ITK's threads per process, here and in the workers "
                         "(ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS); synthmed keeps ITK's default (one per core), "
                         "because the thread count changes the round-off of some features and with it the parity "
                         "with python -m frd_score")
    args = ap.parse_args()
    if args.itk_threads:  # before SimpleITK is imported here or in a spawned worker
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.itk_threads)
    from synthmed.registry.measuring import radiomics as R

    cores = os.cpu_count() or 1
    pools = sorted(set(args.workers or [2, cores]))
    items = R.image_items(patches(args.n), 2)
    R.image_features(items[0])  # warm this process's extractor (imports, YAML) outside the timings
    pool_start: dict[str, float] = {}
    for k in pools:
        t0 = time.perf_counter()
        R.features_of_items(items[: 2 * k], workers=k)
        pool_start[f"workers_{k}"] = time.perf_counter() - t0
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"one_process": [], **{f"workers_{k}": [] for k in pools}}
    baseline: np.ndarray | None = None
    cpu: list[float] = []
    for r in range(args.rounds):
        order = ["one_process", *[f"workers_{k}" for k in pools]]
        if r % 2:
            order.reverse()
        for name in order:
            k = 1 if name == "one_process" else int(name.split("_")[1])
            t0 = time.perf_counter()
            if k == 1:  # in this process, each image's CPU time kept (the same as features_of_items(workers=1))
                rows = []
                for it in items:
                    c0 = time.process_time()
                    rows.append(R.image_features(it))
                    cpu.append(time.process_time() - c0)
                f = np.stack([r[1] for r in rows if r is not None])
            else:
                f = R.features_of_items(items, workers=k)
            times[name].append(time.perf_counter() - t0)
            if baseline is None and name == "one_process":
                baseline = f
            elif baseline is not None and not np.array_equal(f, baseline):
                raise SystemExit(f"{name}: features differ from the one-process baseline")
    load_after = os.getloadavg()
    base_med = statistics.median(times["one_process"])
    variants: dict[str, Any] = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        variants[name] = {"seconds": {"min": min(ts), "median": med, "max": max(ts)},
                          "images_per_s": {"min": args.n / max(ts), "median": args.n / med, "max": args.n / min(ts)},
                          "speedup_vs_one_process": base_med / med}
    per_image = [statistics.median(cpu[i::args.n]) for i in range(args.n)]
    profile = {"cpu_s_per_image": {"min": min(per_image), "median": statistics.median(per_image), "max": max(per_image)},
               "cpu_share": sum(cpu) / sum(times["one_process"]),
               "balance_bound": {f"workers_{k}": sum(per_image) / makespan(per_image, k) for k in pools}}
    result = {"benchmark": "frd_extraction", "images": args.n, "image": "64x64 grey uint8", "rounds": args.rounds,
              "cores": cores, "python": platform.python_version(), "baseline": "one_process",
              "itk_threads": args.itk_threads or "ITK's default (one per core)",
              "load_average_before": list(load_before), "load_average_after": list(load_after),
              "target": "workers_2 speedup >= 1.8 on an idle 2-core machine", "pool_start_s": pool_start,
              "variants": variants, "profile": profile}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
