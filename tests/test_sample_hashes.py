"""The writers hash what they write: the manifest's hashes are the files' hashes, byte for
byte the manifest a re-read of every file makes, and a file changed after it was recorded
(or a sample with no record) is hashed again from disk."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from synthmed.registry.runner import RunnerOptions
from synthmed.run_manifest import MANIFEST, build_manifest, verify_output
from synthmed.sample_hashes import JOURNAL, RECORD, HashJournal
from synthmed.site import Model
from synthmed.writer_pool import WriterPool


def _on_disk(folder: Path) -> dict[str, dict[str, object]]:
    return {str(p.relative_to(folder)): {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "size": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.parent != folder and not p.name.startswith(".")
            and JOURNAL not in p.parts}


def _from_disk(folder: Path) -> str:
    """The manifest made by reading every file again (no journal)."""
    sidecar = json.loads((folder / "synthmed.json").read_text())
    return "".join(build_manifest(folder, sidecar))


@pytest.mark.parametrize("fmt,writers", [("png", 2), ("png", 0), ("npy", 3)])
def test_manifest_hashes_equal_the_files_hashes(tmp_path: Path, toy_gan, fmt: str, writers: int) -> None:
    _, pkg, _ = toy_gan
    m = Model(pkg, RunnerOptions(batch_size=4, mode="inline"))
    folder = tmp_path / "run"
    result = m.generate_to(folder, 13, format=fmt, seed=11, writers=writers, label="benign")
    m.close()
    assert result.complete
    manifest = (folder / MANIFEST).read_text()
    assert json.loads(manifest)["files"] == _on_disk(folder) and len(_on_disk(folder)) == 13
    assert manifest == _from_disk(folder)  # byte for byte what re-reading the files gives
    assert not (folder / JOURNAL).exists()  # the finished folder holds what it held before
    assert verify_output(folder)["ok"]


def test_a_file_changed_after_it_was_recorded_is_hashed_from_disk(tmp_path: Path, toy_gan) -> None:
    _, pkg, _ = toy_gan
    m = Model(pkg, RunnerOptions(batch_size=4, mode="inline"))
    folder = tmp_path / "run"
    # one shard of two written: the journal keeps the hashes of its samples for the other
    partial = m.generate_to(folder, 12, format="png", seed=2, shard="0/2", label="benign")
    assert not partial.complete and partial.written == 6 and (folder / JOURNAL / "image").stat().st_size > 0
    # a recorded file replaced by other bytes (same size, other time), and one record lost
    victim = folder / "image" / "000003.png"
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0xFF
    time.sleep(0.01)
    victim.write_bytes(bytes(data))
    journal = HashJournal(folder, ["image"])
    journal.open()
    os.pwrite(journal._fds["image"], bytes(RECORD.size), 4 * RECORD.size)  # type: ignore[attr-defined]
    journal.close()
    done = m.generate_to(folder, 12, format="png", seed=2, shard="1/2", label="benign")
    m.close()
    assert done.complete
    files = json.loads((folder / MANIFEST).read_text())["files"]
    assert files == _on_disk(folder)
    assert files["image/000003.png"]["sha256"] == hashlib.sha256(bytes(data)).hexdigest()
    assert not (folder / JOURNAL).exists()


def test_submit_batch_writes_every_sample_once_within_the_bound() -> None:
    seen: list[int] = []
    values: dict[int, int] = {}
    pending: list[int] = []
    lock = threading.Lock()
    pool: WriterPool

    def write(index: int, sample: dict) -> None:
        with lock:
            seen.append(index)
            values[index] = int(sample["x"][0])
            pending.append(pool.pending)
        time.sleep(0.001)

    pool = WriterPool(write, workers=2, max_pending=24)
    for start in range(0, 100, 16):
        idx = list(range(start, min(100, start + 16)))
        pool.submit_batch(idx, {"x": np.array(idx)[:, None] * 10})
        assert pool.pending <= 24
    pool.drain()
    pool.close()
    assert sorted(seen) == list(range(100)) and pool.done == 100 and pool.pending == 0
    assert all(values[i] == 10 * i for i in range(100)) and max(pending) <= 24


def test_submit_batch_raises_the_first_writer_error() -> None:
    def failing(index: int, sample: dict) -> None:
        if index == 37:
            raise OSError(28, "No space left on device")

    pool = WriterPool(failing, workers=2, max_pending=8)
    with pytest.raises(OSError, match="No space"):
        for start in range(0, 1000, 8):
            pool.submit_batch(list(range(start, start + 8)), {"x": np.zeros((8, 1))})
        pool.drain()
    pool.close(cancel=True)
    assert pool.done < 1000
