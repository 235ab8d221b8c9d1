"""synthmed against medigan 1.0.0 on medigan's own package layout, whole processes, printed as JSON.

What it sets up (once, under ``--cache``, default ``~/.cache/synthmed-bench/medigan``):

- a virtual environment of its own with medigan 1.0.0: ``torch==2.13.0`` first (the CPU
  build this machine has locally, so nothing pulls CUDA wheels), then ``setuptools<81``
  (medigan imports ``pkg_resources``), then ``medigan==1.0.0`` without its dependencies
  and those named explicitly (tqdm, requests, numpy, PyGithub, matplotlib, and OpenCV for
  the template), so torch stays 2.13.0 (checked);
- medigan's model template, as ``bench/medigan_template/__init__.py`` (a copy written for
  this benchmark: same calling convention and work per call) with random weights
  (``500.pt``, ``{"generator": state_dict}``, seeded), zipped as medigan packages it;
- a medigan working folder (``config/global.json`` and ``models/<id>/<package>.zip``;
  medigan runs offline from them) holding the template and the index's medigan twin
  ``ihc-patch-dcgan-medigan``;
- a synthmed site holding the same two zips: the template's record is made by synthmed's
  medigan importer from the same ``global.json`` entry, pinned to the zip.

What it times, each a whole process (start-up, imports, loading, generating, writing PNGs),
interleaved in a shuffled order per round with the same thread count (``--threads``):

- ``medigan``: ``Generators().generate(ID, N, output_path=DIR)`` in medigan's venv;
- ``synthmed_python``: the same call with ``from synthmed import Generators`` (one import changed);
- ``synthmed_cli``: ``synthmed generate REF -n N -o DIR --layout medigan``;
- per process: wall seconds, peak RSS (MiB, from ``wait4``: that process's own) and CPU
  seconds (user + system, steadier than wall time when other work shares the cores);
- ``forward_floor`` (reference, once per count): the template network's forward pass
  alone on N latents (one load, batches of 128, inference mode) in a process of its own,
  with synthmed's allocator policy (freed memory kept for the next batch,
  ``registry/runner/allocator.py``): the limit nothing that runs the package can beat;
  ``forward_floor_glibc_defaults_s`` is the same with glibc's defaults (what medigan runs with).

Each run's PNG count is checked (N files). Ratios are medigan's time over synthmed's
(above 1: synthmed faster), min/median/max over the rounds (paired per round); on the
template, each variant's time over the forward floor (``time_vs_forward_floor``). The load
average is printed at the start and the end.

    .venv/bin/python bench/medigan.py [--counts 256 2048] [--rounds 3] [--threads 2]
                                      [--models template twin] [--out results.json]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TWIN_ID = "ihc-patch-dcgan-medigan"
TWIN_MEDIGAN_ID = "00098_IHC_PATCH_DCGAN_MEDIGAN"
sys.path.insert(0, str(ROOT / "tests"))
from helpers.medigan_calls import (TEMPLATE_ID, TEMPLATE_PACKAGE, reproducible_zip, template_entry,  # noqa: E402
                                   template_files)

MEDIGAN_DEPS = ["tqdm", "requests", "numpy", "PyGithub", "matplotlib", "opencv-contrib-python-headless"]


def log(msg: str) -> None:
    print(f"[bench/medigan] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


# --- medigan's environment ----------------------------------------------------------

def medigan_venv(cache: Path) -> Path:
    venv = cache / "venv"
    py = venv / "bin" / "python"
    if py.exists() and (venv / ".complete").exists():
        return py
    log(f"creating {venv} (torch==2.13.0 first, then setuptools<81, medigan==1.0.0 --no-deps)")
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(py), "-m", "pip", "install", "-q"]
    run(pip + ["torch==2.13.0"])
    run(pip + ["setuptools<81"])
    run(pip + ["--no-deps", "medigan==1.0.0"])
    run(pip + MEDIGAN_DEPS)
    version = run([str(py), "-c", "import torch; print(torch.__version__)"]).stdout.strip()
    if not version.startswith("2.13.0"):
        raise SystemExit(f"medigan's venv has torch {version}, not 2.13.0: something pulled another torch")
    (venv / ".complete").write_text(version + "\n")
    return py


# --- packages -----------------------------------------------------------------------

def template_zip(cache: Path, ngf: int = 64) -> Path:
    code = (HERE / "medigan_template" / "__init__.py").read_bytes()
    out = cache / f"{TEMPLATE_PACKAGE}-ngf{ngf}-{hashlib.sha256(code).hexdigest()[:12]}.zip"
    if not out.exists():
        out.write_bytes(reproducible_zip(template_files(ngf)))
    return out


def twin_entry(twin: dict[str, Any]) -> dict[str, Any]:
    return {
        "execution": {
            "package_name": TWIN_MEDIGAN_ID, "package_link": f"models/{TWIN_MEDIGAN_ID}/{TWIN_MEDIGAN_ID}.zip",
            "model_name": "model", "extension": ".pt", "image_size": [64, 64], "dependencies": ["numpy", "torch"],
            "generate_method": {"name": "generate", "args": {
                "base": ["model_file", "num_samples", "output_path", "save_images"], "custom": {}}},
        },
        "selection": {"performance": {}, "modality": list(twin.get("modality", [])), "type": "DCGAN",
                      "organ": list(twin.get("anatomy", [])), "tags": list(twin.get("tags", []))},
        "description": {"title": twin.get("title"), "version": twin.get("version")},
    }


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def setup(cache: Path) -> dict[str, Any]:
    """medigan's working folder and a synthmed site holding the same packages."""
    cache.mkdir(parents=True, exist_ok=True)
    tzip = template_zip(cache)
    twin = json.loads((ROOT / "index" / "models" / TWIN_ID / "1.0.0.json").read_text())
    twin_zip = ROOT / "index" / "artefacts" / TWIN_ID / "1.0.0.zip"

    work = cache / "medigan-work"
    (work / "config").mkdir(parents=True, exist_ok=True)
    (work / "models").mkdir(exist_ok=True)
    (work / "models" / "__init__.py").write_text("")
    config = {TEMPLATE_ID: template_entry(), TWIN_MEDIGAN_ID: twin_entry(twin)}
    (work / "config" / "global.json").write_text(json.dumps(config, indent=1))
    for mid, z in ((TEMPLATE_ID, tzip), (TWIN_MEDIGAN_ID, twin_zip)):
        d = work / "models" / mid
        target = d / f"{mid}.zip"  # package_name == model id for both
        if not target.exists() or target.read_bytes() != z.read_bytes():
            shutil.rmtree(d, ignore_errors=True)  # medigan unpacks beside the zip: start clean
            d.mkdir(parents=True)
            shutil.copy(z, target)

    from helpers.sites import make_site_home  # type: ignore[import-not-found]

    from synthmed.registry.authoring.medigan_import import convert_entry

    outcome = convert_entry(TEMPLATE_ID, template_entry())
    if outcome.record is None:
        raise SystemExit(f"synthmed's importer refused the template entry: {outcome.reason}")
    rec = outcome.record
    rec["package"]["artefact"].update(sha256=sha256_file(tzip), size=tzip.stat().st_size,
                                      sources=[tzip.resolve().as_uri()])
    twin_rec = json.loads(json.dumps(twin))
    twin_rec["package"]["artefact"]["sources"] = [twin_zip.resolve().as_uri()]
    home = cache / "site"
    shutil.rmtree(home, ignore_errors=True)
    make_site_home(home, [rec, twin_rec])
    return {"work": work, "home": home, "template_ref": rec["id"], "template_zip": tzip,
            "ids": {"template": (TEMPLATE_ID, rec["id"]), "twin": (TWIN_MEDIGAN_ID, TWIN_ID)}}


# --- timing -------------------------------------------------------------------------

def env_for(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHMED_")}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONHASHSEED="0")
    return env


def commands(variant: str, medigan_py: Path, home: Path, medigan_id: str, ref: str, n: int,
             out: Path, threads: int) -> tuple[list[str], Path | None]:
    prelude = f"import torch; torch.set_num_threads({threads}); "
    if variant == "medigan":
        code = prelude + f"from medigan import Generators; Generators().generate({medigan_id!r}, {n}, output_path={str(out)!r})"
        return [str(medigan_py), "-c", code], None
    if variant == "synthmed_python":
        code = (prelude + f"from synthmed import Generators; "
                f"Generators({str(home)!r}, mode='inline', progress=False).generate({ref!r}, {n}, output_path={str(out)!r})")
        return [sys.executable, "-c", code], None
    if variant == "synthmed_cli":
        return [sys.executable, "-m", "synthmed.cli", "--site", str(home), "generate", ref, "-n", str(n), "-o",
                str(out), "--layout", "medigan", "--mode", "inline", "--no-progress"], None
    raise ValueError(variant)


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MiB, CPU seconds user + system) of one whole process: its
    own resource usage from ``wait4``, so the peak is this process's, not the largest of
    every child so far. Linux counts into a child's peak the pages it shared with this bench
    at the fork, so this bench keeps its own memory small (no torch here: the forward floor
    runs in a child too). CPU seconds move less than wall time on a loaded machine."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        dt = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode("utf-8", "replace")[-3000:]
            raise SystemExit(f"{' '.join(cmd[:3])} failed ({proc.returncode}):\n{tail}")
    return dt, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # ru_maxrss: KiB on Linux


def count_pngs(folder: Path) -> int:
    return len(list(folder.glob("*.png")))


def forward_floor(template_zip: Path, n: int, threads: int, keep_freed_memory: bool) -> float:
    """The template network's forward pass alone on n latents, in a process of its own (this
    one stays small: a child's peak RSS from ``wait4`` counts the parent's pages at the fork)."""
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--floor", str(template_zip), str(n),
                          str(threads), "keep" if keep_freed_memory else "default"],
                         capture_output=True, text=True, check=True, env=env_for(threads))
    return float(out.stdout.strip().splitlines()[-1])


def _forward_floor_here(template_zip: Path, n: int, threads: int, keep_freed_memory: bool) -> float:
    """One load, batches of 128, inference mode; with ``keep_freed_memory`` under synthmed's
    allocator policy (registry/runner/allocator.py), as synthmed runs a model."""
    import torch

    if keep_freed_memory:
        from synthmed.registry.runner import allocator

        allocator.keep_freed_memory()

    sys.path.insert(0, str(HERE))
    from medigan_template import Generator  # type: ignore[import-not-found]  # bench/medigan_template

    torch.set_num_threads(threads)
    with zipfile.ZipFile(template_zip) as zf:
        state = torch.load(io.BytesIO(zf.read(f"{TEMPLATE_PACKAGE}/500.pt")), weights_only=True)
    net = Generator(ngf=state["generator"]["main.0.weight"].shape[1] // 16)
    net.load_state_dict(state["generator"])
    net.eval()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, n, 128):
            net(torch.randn(min(128, n - start), 100, 1, 1))
    return time.perf_counter() - t0


def stats(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", type=int, nargs="+", default=[256, 2048])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["template", "twin"], choices=["template", "twin"])
    ap.add_argument("--variants", nargs="+", default=["medigan", "synthmed_python", "synthmed_cli"])
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "synthmed-bench" / "medigan")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--floor", nargs=4, metavar=("ZIP", "N", "THREADS", "ALLOC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.floor:  # the child of forward_floor()
        z, n, threads, alloc = args.floor
        print(_forward_floor_here(Path(z), int(n), int(threads), alloc == "keep"))
        return 0

    medigan_py = medigan_venv(args.cache)
    s = setup(args.cache)
    env = env_for(args.threads)
    scratch = args.cache / "runs"
    results: dict[str, Any] = {"load_average_start": list(os.getloadavg()), "threads": args.threads,
                               "rounds": args.rounds, "models": {}}
    rng = random.Random(0)
    for model in args.models:
        medigan_id, ref = s["ids"][model]
        # warm-up: medigan unpacks its zip, synthmed verifies and unpacks into its store
        for variant in args.variants:
            shutil.rmtree(scratch, ignore_errors=True)
            cmd, _ = commands(variant, medigan_py, s["home"], medigan_id, ref, 2, scratch / "warm", args.threads)
            timed(cmd, s["work"], env)
        per_count: dict[str, Any] = {}
        for n in args.counts:
            times: dict[str, list[float]] = {v: [] for v in args.variants}
            peaks: dict[str, list[float]] = {v: [] for v in args.variants}
            cpu: dict[str, list[float]] = {v: [] for v in args.variants}
            for r in range(args.rounds):
                order = list(args.variants)
                rng.shuffle(order)
                for variant in order:
                    shutil.rmtree(scratch, ignore_errors=True)
                    out = scratch / variant
                    cmd, _ = commands(variant, medigan_py, s["home"], medigan_id, ref, n, out, args.threads)
                    dt, peak, cpu_s = timed(cmd, s["work"], env)
                    got = count_pngs(out)
                    if got != n:
                        raise SystemExit(f"{variant} wrote {got} PNGs for {n} samples in {out}")
                    times[variant].append(dt)
                    peaks[variant].append(peak)
                    cpu[variant].append(cpu_s)
                    log(f"{model} n={n} round {r + 1}: {variant} {dt:.2f}s {peak:.0f} MiB "
                        f"(load {os.getloadavg()[0]:.2f})")
            entry: dict[str, Any] = {"seconds": {v: stats(t) for v, t in times.items()},
                                     "peak_rss_mib": {v: stats(p) for v, p in peaks.items()},
                                     "cpu_seconds": {v: stats(c) for v, c in cpu.items()}}
            if "medigan" in times:
                entry["speed_vs_medigan"] = {v: stats([m / x for m, x in zip(times["medigan"], t)])
                                             for v, t in times.items() if v != "medigan"}
            if model == "template":
                floor = forward_floor(s["template_zip"], n, args.threads, True)
                entry["forward_floor_s"] = round(floor, 3)
                entry["forward_floor_glibc_defaults_s"] = round(forward_floor(s["template_zip"], n, args.threads, False), 3)
                entry["time_vs_forward_floor"] = {v: stats([x / floor for x in t]) for v, t in times.items()}
            per_count[str(n)] = entry
        results["models"][model] = per_count
    results["load_average_end"] = list(os.getloadavg())
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
