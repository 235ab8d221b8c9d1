"""Upstream sync on 10,000- and 100,000-record indexes (docs/performance.md: a no-op sync
< 1 s; one changed record < 0.2 s at 100,000, about the cost of a no-op).

Builds a real git index with N records (under ``index/``, in the flat layout
``models/<id>/<version>.json``), a site following it, and measures the rounds below; then
moves the index to the sharded layout (``synthmed index shard``, one commit:
registry/record_paths.py), syncs that commit and measures the same rounds again on the same
site, so both layouts are measured in one run against the same baselines. Per layout:

- ``initial_sync_s``: the first sync (every record validated and loaded)
- ``baseline_full_rebuild_s``: ``catalog rebuild`` of the same commit, i.e. what every sync
  would cost if the catalog were rebuilt instead of updated from the git diff
- ``noop_sync_s``: a sync with nothing new (fetch, compare, record the run)
- ``one_change_sync_s``: a sync after a commit that changes one record
- ``cli_noop_sync_s``: ``synthmed sync --no-mirror`` end to end, interpreter start included
  (with compiled bytecode, as bench/cli_start.py runs it)
- ``bare_git_fetch_s``: git alone fetching the same one-record commit into a bare mirror of
  the index (``git fetch`` as the sync runs it, timed just before each one-change sync): the
  floor that the index layout sets, whatever synthmed does around it
- ``one_change_profile``: where one more one-change sync spends its time (cProfile, the
  cumulative seconds of the sync's phases: fetch, the ancestry check, the accepted-history
  walk, applying the diff to the catalog, the transaction's commit)

and once: ``initial_sync_s``, ``baseline_full_rebuild_s`` (flat), ``shard_commit_s`` (moving
the records and committing the move), ``move_sync_s`` (the site's sync of that commit) and
``cli_noop_sync_s`` (sharded).

The no-op sync is the baseline of the same run for the one-change figure (same site, same
moment); every figure is min/median/max over rounds, with the load average at the start
and end of each size.

    .venv/bin/python bench/sync.py [--records 10000 100000] [--rounds 5] [--keep DIR] [--no-rebuild]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import git

from synthmed.daemon.rebuild import rebuild_catalog
from synthmed.daemon.sync import sync_all
from synthmed.registry.authoring.index_layout import shard_index
from synthmed.registry.catalog import Catalog
from synthmed.registry.record_paths import is_sharded, record_relpath
from synthmed.registry.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def base_record() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "tests/fixtures/records/valid/full.json").read_text())
    return data


def write_index(repo_dir: Path, n: int) -> git.Repo:
    repo = git.Repo.init(repo_dir, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Bench")
        cw.set_value("user", "email", "bench@example.org")
        cw.set_value("commit", "gpgsign", "false")
    base = base_record()
    for i in range(n):
        d = copy.deepcopy(base)
        d["id"] = f"model-{i:05d}"
        d["title"] = f"Synthetic model {i}"
        d["description"] = f"Record {i} of a synthetic index used to measure sync."
        del d["package"]["artefact"]["sha256"]
        p = repo_dir / "index" / record_relpath(d["id"], "1.0.0")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(d, indent=2) + "\n")
    repo.git.add("-A")
    repo.git.commit("-q", "-m", f"{n} records")
    return repo


def timed_sync(settings: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    with Catalog.open(settings.catalog_path, readonly=False) as cat:
        [r] = sync_all(settings, cat)
    return time.perf_counter() - t0, r


def stats(xs: list[float]) -> dict[str, Any]:
    return {"min": round(min(xs), 4), "median": round(statistics.median(xs), 4), "max": round(max(xs), 4),
            "all": [round(x, 4) for x in xs]}


def record_path(t: Path, k: int) -> Path:
    """Model k's record file in the bench index, in whichever layout the index has now."""
    return t / "idx" / "index" / record_relpath(f"model-{k:05d}", "1.0.0", sharded=is_sharded(t / "idx" / "index"))


def measure(t: Path, n: int, rounds: int, rebuild: bool = True) -> dict[str, Any]:
    load_start = [round(x, 2) for x in os.getloadavg()]
    home = t / "site"
    reused = (t / "idx" / ".git").is_dir() and (home / "catalog.db").is_file()
    build_index_s = initial = rebuild_s = None
    if reused:  # --keep: the index and the synced site of an earlier run (the 100,000 build takes ~20 min)
        repo = git.Repo(t / "idx")
        (home / "site.toml").write_text(f'[[upstreams]]\nname = "public"\nurl = "{t / "idx"}"\nsubfolder = "index"\n')
        settings = load_settings(home, {}, environ={})
        s, r = timed_sync(settings)  # whatever an earlier run left uncommitted or unsynced
        assert r.status == "ok", r
    else:
        t0 = time.perf_counter()
        repo = write_index(t / "idx", n)
        build_index_s = round(time.perf_counter() - t0, 2)
        home.mkdir()
        (home / "site.toml").write_text(f'[[upstreams]]\nname = "public"\nurl = "{t / "idx"}"\nsubfolder = "index"\n')
        settings = load_settings(home, {}, environ={})

        initial, r = timed_sync(settings)
        assert r.status == "ok" and r.changed == n, r

        if rebuild:
            t0 = time.perf_counter()
            rebuild_catalog(settings, t / "rebuilt.db")
            rebuild_s = time.perf_counter() - t0

    bare = t / "bare.git"  # git alone, fetching the same commits: the floor of a one-change sync
    if not bare.is_dir():
        subprocess.run(["git", "clone", "-q", "--bare", str(t / "idx"), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "fetch", "-q", "--", str(t / "idx"), "+refs/heads/main:refs/heads/main"],
                   check=True)
    layouts: dict[str, Any] = {}
    if not is_sharded(t / "idx" / "index"):  # a kept index moved by an earlier run has no flat rounds
        layouts["flat"] = measure_rounds(t, repo, settings, bare, rounds, 0)
    shard_commit_s = move_sync_s = None
    if not is_sharded(t / "idx" / "index"):
        t0 = time.perf_counter()
        moved = shard_index(t / "idx" / "index")
        repo.git.add("-A")
        repo.git.commit("-q", "-m", f"move {len(moved)} records to the sharded layout")
        shard_commit_s = round(time.perf_counter() - t0, 2)
        move_sync_s, r = timed_sync(settings)
        assert r.status == "ok" and not r.skipped and r.changed == 2 * len(moved), r
        move_sync_s = round(move_sync_s, 3)
        subprocess.run(["git", "-C", str(bare), "fetch", "-q", "--", str(t / "idx"), "+refs/heads/main:refs/heads/main"],
                       check=True)
    layouts["sharded"] = measure_rounds(t, repo, settings, bare, rounds, rounds + 1)

    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHMED_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # compiled once, as an installed synthmed is (bench/cli_start.py)
    env["PYTHONPYCACHEPREFIX"] = str(t / "pycache")
    cli = []
    for _ in range(4):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "synthmed.cli", "-q", "--site", str(home), "sync", "--no-mirror"],
                       check=True, capture_output=True, env=env, cwd=str(ROOT))
        cli.append(time.perf_counter() - t0)
    cli = cli[1:]  # the first run fills the bytecode cache
    sharded = layouts["sharded"]
    return {
        "records": n, "rounds": rounds, "loadavg_at_start": load_start,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "reused_earlier_build": reused,
        "build_index_s": build_index_s,
        "initial_sync_s": None if initial is None else round(initial, 3),
        "baseline_full_rebuild_s": None if rebuild_s is None else round(rebuild_s, 3),
        "shard_commit_s": shard_commit_s, "move_sync_s": move_sync_s,
        "layouts": layouts,
        "rebuild_over_one_change": None if rebuild_s is None else round(
            rebuild_s / sharded["one_change_sync_s"]["median"], 1),
        "cli_noop_sync_s": stats(cli),
        "target_noop_s": 1.0, "target_one_change_s": 0.2,
        "meets_target": sharded["noop_sync_s"]["median"] < 1.0 and sharded["one_change_sync_s"]["median"] < 0.2,
    }


def measure_rounds(t: Path, repo: git.Repo, settings: Any, bare: Path, rounds: int, first: int) -> dict[str, Any]:
    """No-op and one-change syncs, interleaved, with git's own fetch of each change, and one
    profiled one-change sync (models ``first`` .. ``first + rounds`` are the ones changed)."""
    load = [round(x, 2) for x in os.getloadavg()]
    noop, one, bare_fetch = [], [], []
    for k in range(first, first + rounds):  # interleaved: each one-change round next to a no-op round
        s, r = timed_sync(settings)
        assert r.status == "ok" and r.changed == 0, r
        noop.append(s)
        p = record_path(t, k)
        d = json.loads(p.read_text())
        d["description"] = f"changed in round {k} ({time.time_ns()})"
        p.write_text(json.dumps(d, indent=2) + "\n")
        repo.git.commit("-q", "-am", f"change {k}")
        t0 = time.perf_counter()
        subprocess.run(["git", "-C", str(bare), "fetch", "--no-tags", "--force", "--quiet", "--", str(t / "idx"),
                        "+refs/heads/main:refs/heads/main"], check=True)
        bare_fetch.append(time.perf_counter() - t0)
        s, r = timed_sync(settings)
        assert r.status == "ok" and r.changed == 1, r
        one.append(s)
    profile = profile_one_change(t, repo, settings, first + rounds)
    med_noop, med_one = statistics.median(noop), statistics.median(one)
    return {
        "loadavg_at_start": load,
        "noop_sync_s": stats(noop),
        "one_change_sync_s": stats(one),
        "bare_git_fetch_s": stats(bare_fetch),
        "one_change_over_noop": round(med_one / med_noop, 2),
        "one_change_over_bare_git_fetch": round(med_one / statistics.median(bare_fetch), 2),
        "one_change_profile": profile,
        "meets_target": med_noop < 1.0 and med_one < 0.2,
    }


#: the phases of a sync, as (label, function name in daemon/sync.py or daemon/upstreams.py)
PHASES = [("git fetch", "upstreams.py", "fetch"), ("ancestry check", "upstreams.py", "is_ancestor"),
          ("accepted-history walk", "sync.py", "update_bound"), ("apply the diff", "sync.py", "apply_changes"),
          ("catalog transaction (commit included)", "__init__.py", "transaction"),
          ("state file and accepted ref", "state.py", "write_state"), ("whole sync", "sync.py", "sync_upstream")]


def profile_one_change(t: Path, repo: git.Repo, settings: Any, k: int) -> dict[str, float]:
    """One more one-change sync under cProfile: cumulative seconds per phase (:data:`PHASES`)."""
    import cProfile
    import pstats

    p = record_path(t, k)
    d = json.loads(p.read_text())
    d["description"] = f"changed for the profile ({time.time_ns()})"
    p.write_text(json.dumps(d, indent=2) + "\n")
    repo.git.commit("-q", "-am", "change for the profile")
    prof = cProfile.Profile()
    prof.enable()
    timed_sync(settings)
    prof.disable()
    st = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    for label, file, func in PHASES:
        hits = [v[3] for (f, _line, name), v in st.items() if f.endswith(file) and name == func]
        out[label] = round(max(hits), 4) if hits else 0.0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", metavar="DIR", type=Path,
                    help="build in DIR/<records> and keep it; a later run with the same DIR reuses the index and "
                         "its synced site (no build, first sync or rebuild figures then) and measures the rounds")
    ap.add_argument("--no-rebuild", action="store_true", help="skip the full catalog rebuild baseline (~3 min at 100,000)")
    args = ap.parse_args()
    results = []
    for n in args.records:
        if args.keep:
            (args.keep / str(n)).mkdir(parents=True, exist_ok=True)
            results.append(measure(args.keep / str(n), n, args.rounds, not args.no_rebuild))
        else:
            with tempfile.TemporaryDirectory(prefix="synthmed-bench-sync-") as tmp:
                results.append(measure(Path(tmp), n, args.rounds, not args.no_rebuild))
        print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps({"bench": "sync", "cpus": os.cpu_count(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
