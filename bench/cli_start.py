"""CLI start time on a CPU-only site: ``search``, ``show``, ``status`` and a no-op ``sync``,
whole processes, interpreter included (docs/performance.md; target < 0.25 s each, no
torch import).

Builds a git index of N records and a site following it (synced once), then runs, in
interleaved rounds, each command and two baselines measured moments apart on the same
machine: the bare interpreter (``python -c pass``, the floor) and ``synthmed --help``
(the interpreter plus the CLI's parser). For each command it also runs ``python -X
importtime`` once and reports how many modules it imports, the largest ones (cumulative
microseconds) and whether torch or numpy was among them.

The commands run as an installed synthmed runs: with compiled bytecode. ``pip install``
compiles a package's modules, and an editable install writes them on first import; an
environment with ``PYTHONDONTWRITEBYTECODE`` set (this machine's shells) would otherwise
compile every synthmed module from source on every start (60-100 ms of each command). So the
runs use a bytecode cache of their own (``PYTHONPYCACHEPREFIX`` in the bench's temporary
folder, filled by an untimed warm-up round; nothing is written into the source trees);
``--no-bytecode-cache`` runs with the caller's environment as it is.

    .venv/bin/python bench/cli_start.py [--records 1000] [--rounds 7] [--no-bytecode-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sync import write_index  # noqa: E402  (the same synthetic index as bench/sync.py)

ROOT = Path(__file__).resolve().parent.parent

COMMANDS = {
    "search": ["search", "synthetic", "model"],
    "show": ["show", "model-00007"],
    "status": ["status"],
    "sync_noop": ["sync", "--no-mirror"],
}
HEAVY = ("torch", "numpy", "PIL", "jsonschema", "git", "sqlite_utils")


#: CPU seconds (user + system) of each timed run's process tree, by name: steadier than wall
#: time when other work shares the cores
CPU: dict[str, list[float]] = {}


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run(argv: list[str], env: dict[str, str], name: str | None = None) -> float:
    c0 = _children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, env=env, cwd=str(ROOT))
    dt = time.perf_counter() - t0
    if name:
        CPU.setdefault(name, []).append(_children_cpu() - c0)
    if proc.returncode not in (0, 3):  # status exits 3 on an unhealthy site (no blobs yet): still a full run
        raise SystemExit(f"{argv} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return dt


def imports(argv: list[str], env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv[1:]], capture_output=True, env=env,
                          cwd=str(ROOT), text=True)
    rows = []  # (cumulative us, module, depth): depth 0 is imported by the command itself
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum_us, raw = line[len("import time:"):].split("|")
        rows.append((int(cum_us), raw.strip(), (len(raw) - len(raw.lstrip()) - 1) // 2))
    top = sorted(((c, n) for c, n, depth in rows if depth <= 1), reverse=True)[:8]
    names = {n for _, n, _ in rows}
    return {"modules": len(rows), "heavy": {h: h in names for h in HEAVY},
            "top_cumulative_us": [[n, c] for c, n in top]}


def stats(xs: list[float]) -> dict[str, float]:
    return {"min": round(min(xs), 3), "median": round(statistics.median(xs), 3), "max": round(max(xs), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--before", metavar="PYTHON",
                    help="also run each command with this interpreter (another checkout's venv, e.g. main's), "
                         "interleaved in the same rounds: before/after on the same machine at the same load")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="run with the caller's environment as it is (with PYTHONDONTWRITEBYTECODE set, every "
                         "start compiles synthmed's modules from source)")
    args = ap.parse_args()
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="synthmed-bench-cli-") as tmp:
        t = Path(tmp)
        write_index(t / "idx", args.records)
        home, home_before = t / "site", t / "site-before"  # the other checkout keeps its own catalog generation
        for h in (home, home_before):
            h.mkdir()
            (h / "site.toml").write_text(f'[[upstreams]]\nname = "public"\nurl = "{t / "idx"}"\nsubfolder = "index"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHMED_")}
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU-only site
        if not args.no_bytecode_cache:  # compiled once, as an installed package is (see the module's docstring)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(t / "pycache")
        cli = [sys.executable, "-m", "synthmed.cli", "-q", "--site", str(home)]
        run([*cli, "sync", "--no-mirror"], env)
        baselines = {"python_c_pass": [sys.executable, "-c", "pass"],
                     "synthmed_help": [sys.executable, "-m", "synthmed.cli", "--help"]}
        before = [args.before, "-m", "synthmed.cli", "-q", "--site", str(home_before)] if args.before else None
        if before:
            run([*before, "sync", "--no-mirror"], env)
        for argv in [*baselines.values(), *([*cli, *sub] for sub in COMMANDS.values()),
                     *([*before, *sub] for sub in COMMANDS.values() if before)]:
            run(argv, env)  # the warm-up round, not timed: fills the bytecode cache and the page cache
        times: dict[str, list[float]] = {k: [] for k in [*baselines, *COMMANDS]}
        times.update({f"before_{k}": [] for k in COMMANDS} if before else {})
        for _ in range(args.rounds):
            for name, argv in baselines.items():
                times[name].append(run(argv, env, name))
            for name, sub in COMMANDS.items():
                times[name].append(run([*cli, *sub], env, name))
                if before:
                    times[f"before_{name}"].append(run([*before, *sub], env, f"before_{name}"))
        profile = {name: imports([*cli, *sub], env) for name, sub in COMMANDS.items()}
    floor = statistics.median(times["python_c_pass"])
    out = {
        "bench": "cli_start", "records": args.records, "rounds": args.rounds, "cpus": os.cpu_count(),
        "bytecode": "as the caller's environment says" if args.no_bytecode_cache else "cached (PYTHONPYCACHEPREFIX)",
        "loadavg_at_start": load_start, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "baselines_s": {k: stats(times[k]) for k in baselines},
        "commands_s": {k: stats(times[k]) for k in COMMANDS},
        **({"before": args.before, "before_s": {k: stats(times[f"before_{k}"]) for k in COMMANDS},
            "after_over_before_median": {k: round(statistics.median(times[k]) / statistics.median(times[f"before_{k}"]), 3)
                                         for k in COMMANDS}} if before else {}),
        "cpu_s": {k: stats(v) for k, v in CPU.items()},
        "over_bare_interpreter_median_s": {k: round(statistics.median(times[k]) - floor, 3) for k in COMMANDS},
        "imports": profile,
        "target_s": 0.25,
        "meets_target": all(statistics.median(times[k]) < 0.25 for k in COMMANDS)
        and not any(p["heavy"]["torch"] for p in profile.values()),  # type: ignore[index]
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
