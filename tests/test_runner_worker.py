"""Worker mode: a model that raises, hangs or segfaults leaves the caller alive with a
clear error; a record whose requirements clash with this environment runs in a worker
with its own uv-built environment (built offline from a local wheel)."""

from __future__ import annotations

import importlib.metadata
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.packages import build_package, faulty_package, make_wheel, probe_package, toy_package
from synthmed.registry.errors import EnvironmentBuildError, ModelRunError, ModelTimeout
from synthmed.registry.runner import EnvOptions, Runner
from synthmed.registry.runner.envs import build_env, env_key
from synthmed.registry.runner.reqs import unsatisfied


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory):
    return faulty_package(tmp_path_factory.mktemp("faulty"))


@pytest.mark.slow
def test_worker_survives_raise_segfault_and_hang(faulty) -> None:
    record, pkg, _ = faulty
    r = Runner(pkg, mode="worker", timeout_s=2.0)
    assert r.sample([1, 2, 3])["image"][:, 0, 0].tolist() == [1, 2, 3]

    with pytest.raises(ModelRunError) as ei:
        r.sample([5], behave="raise")
    text = str(ei.value)
    assert "faulty-model@1.0.0" in text and "ValueError" in text and "exploded on purpose" in text
    assert "faulty.py" in text  # the last traceback lines
    assert not isinstance(ei.value, ModelTimeout)

    with pytest.raises(ModelRunError) as ei:
        r.sample([6], behave="segv")
    text = str(ei.value)
    assert "SIGSEGV" in text and "faulty-model@1.0.0" in text
    assert "about to crash" in text  # the worker's last stderr lines
    assert ei.value.exit_code < 0  # type: ignore[attr-defined]

    started = time.monotonic()
    with pytest.raises(ModelTimeout) as ei2:
        r.sample([7], behave="hang")
    assert time.monotonic() - started < 15
    assert "did not answer within 2s" in str(ei2.value) and "faulty-model@1.0.0" in str(ei2.value)
    assert isinstance(ei2.value, TimeoutError)

    # the caller carries on: the next call starts a fresh worker
    assert r.sample([9, 10])["image"][:, 0, 0].tolist() == [9, 10]
    r.close()


@pytest.mark.slow
def test_worker_output_equals_inline_and_stdout_noise_is_harmless(tmp_path: Path, faulty) -> None:
    record, pkg, _ = toy_package(tmp_path)
    with Runner(pkg, mode="inline", batch_size=4) as a, Runner(pkg, mode="worker", batch_size=3) as b:
        assert np.array_equal(a.sample(range(10), label="malignant")["image"],
                              b.sample(range(10), label="malignant")["image"])
    frecord, fpkg, _ = faulty
    with Runner(fpkg, mode="worker") as r:
        assert r.sample([4], behave="print")["image"][0, 0, 0] == 4



@pytest.mark.slow
def test_a_worker_imports_torch_only_for_a_model_that_uses_it(tmp_path: Path) -> None:
    """The caller has torch (so its thread count goes to the worker); a numpy-only model's
    worker still starts without torch, and gets the caller's thread count once the model
    imports torch itself."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        record, pkg, _ = probe_package(tmp_path)
        with Runner(pkg, mode="worker") as r:
            assert r.sample([1, 2])["image"][:, 0, 0].tolist() == [0, 0]  # no torch in the worker
            assert r.sample([3], use_torch=True)["image"][0, 0, 0] == 100 + 3
            assert r.sample([4])["image"][0, 0, 0] == 100  # still loaded
    finally:
        torch.set_num_threads(before)

@pytest.mark.slow
def test_clashing_requirements_run_in_their_own_environment(tmp_path: Path) -> None:
    """pystow is installed here (a dependency of zenodo-client) at a real version; the
    record pins a fake pystow==0.0.1 served from a local wheel folder, offline."""
    here = importlib.metadata.version("pystow")
    assert here != "0.0.1"
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "pystow", "0.0.1", value=33)
    code = '''
import numpy as np
import pystow

class M:
    def sample(self, seeds):
        return {"image": np.stack([np.full((8, 8), pystow.VALUE + s, dtype=np.uint8) for s in seeds])}

def build(package_dir, device):
    return M()
'''
    record, pkg, _ = build_package(tmp_path, "clash-model", {"clash.py": code}, package_entry_point="clash:build",
                                   package_requirements=["pystow==0.0.1", "numpy>=1.20"])
    assert unsatisfied(["pystow==0.0.1", "numpy>=1.20"]) == ["pystow==0.0.1"]
    opts = EnvOptions(offline=True, find_links=(str(wheels),), cache_dir=str(tmp_path / "uv-cache"))
    envs = tmp_path / "envs"
    with Runner(pkg, envs_dir=envs, env_options=opts) as r:
        assert r.mode == "worker"
        assert r.info["missing_requirements"] == ["pystow==0.0.1"]
        assert r.sample([0, 1])["image"][:, 0, 0].tolist() == [33, 34]
    key = env_key(["pystow==0.0.1", "numpy>=1.20"])
    env = envs / key
    assert (env / "synthmed-env.json").is_file()
    # this process still has its own pystow
    assert importlib.metadata.version("pystow") == here
    # the environment is cached: a second runner reuses it without building
    mtime = (env / "synthmed-env.json").stat().st_mtime
    with Runner(pkg, envs_dir=envs, env_options=opts) as r:
        assert r.sample([2])["image"][0, 0, 0] == 35
    assert (env / "synthmed-env.json").stat().st_mtime == mtime
    # inline by force: the clash shows (this environment's pystow has no VALUE)
    with Runner(pkg, mode="inline") as r, pytest.raises(ModelRunError, match="VALUE"):
        r.sample([0])


def test_environment_build_failure_is_clear(tmp_path: Path) -> None:
    opts = EnvOptions(offline=True, find_links=(str(tmp_path / "empty"),), cache_dir=str(tmp_path / "uv-cache"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EnvironmentBuildError) as ei:
        build_env(["synthmed-no-such-package==9.9"], tmp_path / "envs", opts, model="x@1.0.0")
    text = str(ei.value)
    assert "synthmed-no-such-package" in text and "x@1.0.0" in text
    assert not (tmp_path / "envs" / env_key(["synthmed-no-such-package==9.9"])).exists()


@pytest.mark.slow
def test_worker_transitive_dependency_from_find_links(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "smtop", "1.0.0", value=1, requires=("smbottom>=2",))
    make_wheel(wheels, "smbottom", "2.1.0", value=2)
    opts = EnvOptions(offline=True, find_links=(str(wheels),), cache_dir=str(tmp_path / "uv-cache"))
    python = build_env(["smtop==1.0.0"], tmp_path / "envs", opts)
    import subprocess

    out = subprocess.run([str(python), "-c", "import smtop, smbottom, numpy; print(smtop.VALUE + smbottom.VALUE)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "3"
    assert sys.executable != str(python)
