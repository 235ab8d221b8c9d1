"""Shards of a run: 1, 2, 3 and 7 shards (any order) leave the same manifest as one
process; a shard killed with SIGKILL and rerun finishes the run with no duplicate and no
missing file; `synthmed verify-output` finds what is wrong with a folder; torchrun and
Slurm variables choose the shard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.sites import REPO_ROOT, cli_env, make_site_home
from synthmed.cli import main
from synthmed.registry.errors import ConfigError
from synthmed.registry.runner import RunnerOptions
from synthmed.run_manifest import MANIFEST, verify_output
from synthmed.shards import Shard, shard_from_env
from synthmed.site import Model


def test_shard_blocks_cover_the_run_once_and_env_selects_them() -> None:
    for total in (0, 1, 6, 23, 100):
        for count in (1, 2, 3, 7, 40):
            blocks = [Shard(k, count).block(total) for k in range(count)]
            assert [i for b in blocks for i in b] == list(range(total))  # contiguous, in order, no overlap
    assert Shard.parse(" 2 / 7 ") == Shard(2, 7) and str(Shard(2, 7)) == "2/7"
    for bad in ("3/3", "-1/2", "1/0", "a/b", "1", "1/2/3"):
        with pytest.raises(ConfigError):
            Shard.parse(bad)
    assert shard_from_env({}) is None
    assert shard_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert shard_from_env({"RANK": "3", "WORLD_SIZE": "4"})[0] == Shard(3, 4)  # type: ignore[index]
    got = shard_from_env({"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "4"})
    assert got is not None and got[0] == Shard(2, 4) and "Slurm" in got[1]
    for bad_env in ({"RANK": "4", "WORLD_SIZE": "4"}, {"RANK": "x", "WORLD_SIZE": "2"},
                    {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "4"}):
        with pytest.raises(ConfigError):
            shard_from_env(bad_env)


def _manifest(folder: Path) -> bytes:
    return (folder / MANIFEST).read_bytes()


def test_shards_in_any_order_leave_the_manifest_of_one_process(tmp_path: Path, toy_gan) -> None:
    _, pkg, _ = toy_gan
    m = Model(pkg, RunnerOptions(batch_size=4, mode="inline"))
    n = 23
    single = m.generate_to(tmp_path / "one", n, format="png", seed=5, label="malignant")
    assert single.complete and verify_output(tmp_path / "one")["ok"]
    want = _manifest(tmp_path / "one")
    assert len(json.loads(want)["files"]) == n
    for count in (2, 3, 7):
        folder = tmp_path / f"shards{count}"
        order = list(range(count))[::-1] if count == 3 else list(range(count))
        results = [m.generate_to(folder, n, format="png", seed=5, shard=f"{k}/{count}", label="malignant")
                   for k in order]
        assert sum(r.written for r in results) == n
        assert [r.complete for r in results] == [False] * (count - 1) + [True]
        assert not (folder / MANIFEST).exists() or results[-1].complete
        assert _manifest(folder) == want, count
        assert verify_output(folder)["ok"]
        # a shard run again writes nothing and keeps the manifest
        again = m.generate_to(folder, n, format="png", seed=5, shard=f"1/{count}", label="malignant")
        assert again.written == 0 and again.complete and _manifest(folder) == want
    m.close()


def test_verify_output_names_missing_extra_leftover_and_changed_files(tmp_path: Path, toy_gan) -> None:
    _, pkg, _ = toy_gan
    m = Model(pkg, RunnerOptions(batch_size=4, mode="inline"))
    out = tmp_path / "o"
    m.generate_to(out, 6, format="png", seed=0)
    assert verify_output(out)["ok"] and verify_output(out)["files_hashed"] == 6
    img = out / "image"
    (img / "000002.png").unlink()
    (img / "000009.png").write_bytes(b"x")  # past the end
    (img / "000001.npy").write_bytes(b"x")  # the same index twice
    (img / ".000003.tmp-123.png").write_bytes(b"x")
    data = bytearray((img / "000004.png").read_bytes())
    data[-20] ^= 1
    (img / "000004.png").write_bytes(bytes(data))
    res = verify_output(out)
    text = "\n".join(res["problems"])
    assert not res["ok"]
    assert "1 of 6 samples missing: 2" in text and "000009.png" in text and "000001.npy" in text
    assert ".000003.tmp-123.png" in text and "differ from their sha256" in text and "000004.png" in text
    # the CLI says so, with exit status 1; a folder that is no output folder is refused
    assert main(["verify-output", str(out)]) == 1
    with pytest.raises(ConfigError, match="not a synthmed output folder"):
        verify_output(tmp_path)
    # a sidecar from elsewhere: a huge count, or an output name that climbs out, is reported, not followed
    side = json.loads((out / "synthmed.json").read_text())
    side["num_samples"] = 10 ** 12
    side["outputs"].append({"name": "../../etc", "files": "../../etc/000000.png"})
    (out / "synthmed.json").write_text(json.dumps(side))
    text = "\n".join(verify_output(out)["problems"])
    assert "999999999994 of 1000000000000 samples missing" in text and "not a plain name" in text
    side["num_samples"] = "many"
    (out / "synthmed.json").write_text(json.dumps(side))
    with pytest.raises(ConfigError, match="not a sample count"):
        verify_output(out)
    m.close()


def _files(folder: Path) -> int:
    try:
        return sum(1 for e in os.scandir(folder / "image") if not e.name.startswith("."))
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_a_shard_killed_with_sigkill_and_rerun_completes_the_run(tmp_path: Path, toy_gan) -> None:
    toy, pkg, _ = toy_gan
    home = make_site_home(tmp_path / "site", [dict(toy.data)])
    n = 240
    single = tmp_path / "single"
    Model(pkg, RunnerOptions(batch_size=2, mode="inline")).generate_to(single, n, format="png", seed=1)
    out = tmp_path / "sharded"

    def cmd(shard: str) -> list[str]:
        return [sys.executable, "-m", "synthmed.cli", "--site", str(home), "generate", "toy-gan", "-n", str(n),
                "-o", str(out), "--format", "png", "--seed", "1", "--batch-size", "2", "--mode", "inline",
                "--shard", shard, "--no-progress", "--writers", "2"]

    # shard 1/3 owns 80..159: kill it once some of its files are in
    proc = subprocess.Popen(cmd("1/3"), env=cli_env(), cwd=str(REPO_ROOT), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _files(out) < 12 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the shard finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _files(out)
    assert 12 <= killed_at < 80
    assert not verify_output(out)["ok"]
    for shard in ("0/3", "1/3"):
        done = subprocess.run(cmd(shard), env=cli_env(), cwd=str(REPO_ROOT), capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, done.stderr
    assert not verify_output(out)["ok"]  # shard 2/3 has not run yet
    # the last shard from torchrun's variables, as each rank of `torchrun --nproc-per-node 3` would
    last = subprocess.run([c for c in cmd("x") if c not in ("--shard", "x")], env=cli_env(RANK="2", WORLD_SIZE="3"),
                          cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=180)
    assert last.returncode == 0 and "shard 2/3" in last.stderr and "RANK=2" in last.stderr, last.stderr
    res = verify_output(out)
    assert res["ok"], res["problems"]
    assert _manifest(out) == _manifest(single)
    assert not [p for p in (out / "image").iterdir() if p.name.startswith(".")]
    side = json.loads((out / "synthmed.json").read_text())
    assert side["complete"] is True and side["num_samples"] == n
