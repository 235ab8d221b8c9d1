"""The allocator policy while a model runs (registry/runner/allocator.py): memory a batch frees
is kept for the next batch, in the process that runs the model (inline or its worker), unless
the site turns it off; the samples are the same either way."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest

from helpers.packages import build_package
from synthmed.registry.errors import ConfigError
from synthmed.registry.runner import Runner

# A model whose "image" carries the minor page faults of touching 6 fresh 64 MiB blocks from
# malloc (ctypes: no numpy or torch allocator in between): with glibc's defaults each block is
# a new mmap, faulted in page by page; with freed memory kept, only the first is.
FAULT_MODEL = '''
import ctypes
import resource

import numpy as np

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]


class FaultCounter:
    def sample(self, seeds):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(6):
            p = libc.malloc(64 << 20)
            ctypes.memset(p, 1, 64 << 20)
            libc.free(p)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        img = np.zeros((len(seeds), 8, 8), np.uint8)
        img[:, 0, :4] = np.frombuffer(np.uint32(min(faults, 2**32 - 1)).tobytes(), np.uint8)
        return {"image": img}


def build(package_dir, device):
    return FaultCounter()
'''

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the thresholds are glibc's")


def _faults(out: dict[str, np.ndarray]) -> int:
    return int(np.frombuffer(out["image"][0, 0, :4].tobytes(), np.uint32)[0])


@glibc_only
def test_a_worker_keeps_freed_memory_for_the_next_batch_unless_turned_off(tmp_path: Path) -> None:
    _, pkg, _ = build_package(tmp_path, "fault-counter", {"faultmod.py": FAULT_MODEL},
                              package_entry_point="faultmod:build")
    counts = {}
    for keep in (True, False):
        with Runner(pkg, mode="worker", keep_freed_memory=keep) as r:
            counts[keep] = _faults(r.sample([0]))
    pages = (64 << 20) // 4096
    if counts[False] < 3 * pages:
        pytest.skip(f"this kernel backs malloc's blocks with huge pages ({counts[False]} faults): nothing to tell apart")
    assert counts[True] < 2 * pages < 5 * pages < counts[False], counts  # one block's pages against six


@glibc_only
def test_inline_runs_keep_it_in_this_process_and_close_gives_it_back(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from synthmed.registry.runner import allocator

    calls: list[str] = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append("keep") or True)
    monkeypatch.setattr(allocator, "release_freed_memory", lambda: calls.append("release"))
    _, pkg, _ = build_package(tmp_path, "fault-counter", {"faultmod.py": FAULT_MODEL},
                              package_entry_point="faultmod:build")
    with Runner(pkg, mode="inline") as r:
        r.sample([0, 1])
        r.sample([2])
    assert calls == ["keep", "release"]
    calls.clear()
    with Runner(pkg, mode="inline", keep_freed_memory=False) as r:
        r.sample([0])
    assert calls == ["release"]  # giving back what another runner kept is harmless


@glibc_only
def test_the_thresholds_are_raised_once_and_released() -> None:
    import subprocess
    import sys

    code = ("from synthmed.registry.runner import allocator as a; "
            "print(a.keep_freed_memory(), a.keep_freed_memory()); a.release_freed_memory()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_site_toml_turns_it_off(tmp_path: Path) -> None:
    from synthmed.registry.runner.options import RunnerOptions
    from synthmed.registry.settings import load_settings

    (tmp_path / "site.toml").write_text('[runner]\nkeep_freed_memory = false\n', "utf-8")
    assert RunnerOptions.from_settings(load_settings(tmp_path)).keep_freed_memory is False
    (tmp_path / "site.toml").write_text('[runner]\nkeep_freed_memory = "no"\n', "utf-8")
    with pytest.raises(ConfigError, match="keep_freed_memory"):
        load_settings(tmp_path)


def test_the_samples_are_the_same_bytes_either_way(toy_gan) -> None:
    _, pkg, _ = toy_gan
    seeds = list(range(40))
    outs = []
    for keep in (True, False):
        with Runner(pkg, mode="worker", batch_size=16, keep_freed_memory=keep) as r:
            outs.append(r.sample(seeds, label="malignant")["image"])
    assert outs[0].tobytes() == outs[1].tobytes()
