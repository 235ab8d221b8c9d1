"""What reading ``datasets/`` costs a sync (#24): the no-op and one-changed-record syncs of
``bench/sync.py``'s index, with the dataset step of the sync on, against the same syncs
with it switched off (the baseline: the sync as it was before datasets), interleaved
round by round on the same site in the same run.

    .venv/bin/python bench/dataset_sync.py [--records 10000] [--rounds 5]

JSON out: min/median/max of each, the ratios (with / without) and the load average at the
start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sync as bench_sync  # noqa: E402 - bench/sync.py: the index builder and the timed sync

from synthmed.daemon import sync as daemon_sync  # noqa: E402
from synthmed.registry.settings import load_settings  # noqa: E402


def _change(t: Path, repo: Any, k: int) -> None:
    p = t / "idx" / "index" / "models" / f"model-{k:05d}" / "1.0.0.json"
    d = json.loads(p.read_text())
    d["description"] = f"changed in round {k}"
    p.write_text(json.dumps(d, indent=2) + "\n")
    repo.git.commit("-q", "-am", f"change {k}")


def measure(t: Path, n: int, rounds: int) -> dict[str, Any]:
    load_start = [round(x, 2) for x in os.getloadavg()]
    repo = bench_sync.write_index(t / "idx", n)
    home = t / "site"
    home.mkdir()
    (home / "site.toml").write_text(f'[[upstreams]]\nname = "public"\nurl = "{t / "idx"}"\nsubfolder = "index"\n')
    settings = load_settings(home, {}, environ={})
    bench_sync.timed_sync(settings)
    off = mock.patch.object(daemon_sync, "apply_datasets", lambda *a, **k: (0, []))
    times: dict[str, list[float]] = {"noop_with": [], "noop_without": [], "one_with": [], "one_without": []}
    for k in range(rounds):
        for label, patch in (("without", off), ("with", None)):
            if patch is not None:
                patch.start()
            try:
                s, r = bench_sync.timed_sync(settings)
                assert r.status == "ok" and r.changed == 0, r
                times[f"noop_{label}"].append(s)
                _change(t, repo, 2 * k + (label == "with"))
                s, r = bench_sync.timed_sync(settings)
                assert r.status == "ok" and r.changed == 1, r
                times[f"one_{label}"].append(s)
            finally:
                if patch is not None:
                    patch.stop()
            if label == "without":  # the datasets were not applied through the new commit: catch up, untimed
                bench_sync.timed_sync(settings)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"records": n, "rounds": rounds, "loadavg_at_start": load_start,
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
            **{f"{k}_s": bench_sync.stats(v) for k, v in times.items()},
            "noop_with_over_without": round(med["noop_with"] / med["noop_without"], 2),
            "one_change_with_over_without": round(med["one_with"] / med["one_without"], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="synthmed-bench-dsync-") as tmp:
        result = measure(Path(tmp), args.records, args.rounds)
    print(json.dumps({"bench": "dataset_sync", "cpus": os.cpu_count(), **result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
