"""The runner, inline: reproducibility across batch sizes, parameter checks before any
model code runs, devices, verification, isolated imports, both package formats."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.packages import build_package, marker_package, medigan_package, package_for, toy_package
from helpers.records import to_record
from synthmed.registry.errors import ConfigError, ModelRunError, ParamError, Unverified
from synthmed.registry.packages import VerifiedPackage
from synthmed.registry.runner import Runner, coerce_param, parse_param_args, validate_params
from synthmed.registry.runner.device import resolve_device
from synthmed.registry.runner.runner import sample_nbytes


@pytest.fixture
def toy(toy_gan):
    return toy_gan


def test_same_seed_same_samples_whatever_the_batch(toy) -> None:
    record, pkg, _ = toy
    seeds = list(range(100, 170))
    results = []
    for bs in (1, 7, 64):
        with Runner(pkg, batch_size=bs, mode="inline") as r:
            out = r.sample(seeds, label="malignant")
            assert out["image"].shape == (70, 8, 8) and out["image"].dtype == np.uint8
            results.append(out["image"])
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[1], results[2])
    # a sample depends on its seed only: a shuffled subset gives the same rows
    with Runner(pkg, batch_size=5) as r:
        sub = r.sample([seeds[40], seeds[3], seeds[69]], label="malignant")["image"]
    assert np.array_equal(sub, results[0][[40, 3, 69]])
    # params change the samples; different seeds differ
    with Runner(pkg) as r:
        benign = r.sample(seeds[:4])["image"]
    assert not np.array_equal(benign, results[0][:4])
    assert not np.array_equal(results[0][0], results[0][1])


def test_iter_batches_bounded_by_batch_size_and_memory_budget(toy) -> None:
    record, pkg, _ = toy
    with Runner(pkg, batch_size=7) as r:
        sizes = [len(s) for s, _ in r.iter_batches(range(20))]
    assert sizes == [7, 7, 6]
    per = sample_nbytes(record)  # 8*8 pixels, float32-sized while computed
    assert per == 8 * 8 * 4
    with Runner(pkg, batch_size=64, memory_budget_mb=per * 3 / (1024 * 1024)) as r:
        assert r.batch_size == 3
        assert [len(s) for s, _ in r.iter_batches(range(7))] == [3, 3, 1]


@pytest.mark.parametrize("params, words", [
    ({"lable": "benign"}, ["unknown parameter", "'lable'", "label", "benign", "malignant"]),
    ({"label": "cancer"}, ["'label'", "\"cancer\"", "one of", "\"benign\"", "\"malignant\""]),
    ({"steps": "ten"}, ["'steps'", "an integer"]),
    ({"steps": 1000}, ["'steps'", "<= 100"]),
    ({"flag": "yes"}, ["'flag'", "a boolean"]),
    ({"scale": [1]}, ["'scale'", "a number"]),
])
def test_bad_params_refused_before_any_model_code(tmp_path: Path, params, words) -> None:
    record, pkg, _ = marker_package(tmp_path)
    marker = pkg.folder.parent / "MODEL_CODE_RAN"
    r = Runner(pkg)
    with pytest.raises(ParamError) as ei:
        r.sample([0, 1], **params)
    with pytest.raises(ParamError):
        list(r.iter_batches([0], **params))
    text = str(ei.value)
    for w in words:
        assert w in text, (w, text)
    assert "marker-model@1.0.0" in text
    assert not marker.exists(), "model code ran before the parameters were checked"
    # good params run the model (and fill defaults)
    assert r.sample([0], label="malignant", steps=3)["image"].shape == (1, 8, 8)
    assert marker.exists()
    r.close()


def test_defaults_filled_and_cli_coercion(tmp_path: Path) -> None:
    record, _, _ = marker_package(tmp_path)
    assert validate_params(record, {}) == {"label": "benign", "steps": 10, "scale": 1.0, "flag": False}
    parsed = parse_param_args(record, ["steps=7", "scale=0.5", "flag=true", "label=malignant"])
    assert parsed == {"steps": 7, "scale": 0.5, "flag": True, "label": "malignant"}
    assert isinstance(coerce_param(record, "scale", "2"), int)
    with pytest.raises(ParamError, match="'steps'.*integer"):
        coerce_param(record, "steps", "many")
    with pytest.raises(ParamError, match="one of"):
        coerce_param(record, "label", "other")
    with pytest.raises(ParamError, match="unknown parameter 'nope'"):
        coerce_param(record, "nope", "1")
    with pytest.raises(ParamError, match="KEY=VALUE"):
        parse_param_args(record, ["steps"])


def test_unverified_record_never_runs(tmp_path: Path) -> None:
    record, pkg, zip_path = toy_package(tmp_path)
    data = dict(record.data)
    data["package"] = {**data["package"], "artefact": {k: v for k, v in data["package"]["artefact"].items()
                                                       if k not in ("sha256", "size")}}
    unpinned = to_record(data)
    assert not unpinned.verified
    with pytest.raises(Unverified) as ei:
        package_for(unpinned, zip_path, tmp_path)
    assert "synthmed index pin toy-gan@1.0.0" in str(ei.value)
    assert isinstance(ei.value, PermissionError)
    # the runner takes nothing but a VerifiedPackage, and only packages.py makes one
    with pytest.raises(TypeError, match="VerifiedPackage"):
        Runner(pkg.folder)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="made only by"):
        VerifiedPackage(unpinned, None, "0" * 64, pkg.folder, {}, "forged")


def test_device_choice() -> None:
    import torch

    assert resolve_device("cpu") == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device") as ei:
            resolve_device("cuda:0", model="x@1.0.0")
        assert "--device cpu" in str(ei.value)
        with pytest.raises(ConfigError, match="only on cuda"):
            resolve_device("auto", ["cuda"])
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(ConfigError, match="does not run on cpu"):
        resolve_device("cpu", ["cuda"])


def test_packages_import_in_isolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two packages both ship `helper.py`; a `helper.py` in the cwd is never used."""
    code = '''
import numpy as np
from .helper import VALUE

class M:
    def sample(self, seeds):
        return {"image": np.full((len(seeds), 8, 8), VALUE, dtype=np.uint8)}

def build(package_dir, device):
    return M()
'''
    a = build_package(tmp_path / "a", "pkg-a", {"pk/__init__.py": "", "pk/main.py": code,
                                                  "pk/helper.py": "VALUE = 11\n"}, package_entry_point="pk.main:build")
    b = build_package(tmp_path / "b", "pkg-b", {"pk/__init__.py": "", "pk/main.py": code,
                                                  "pk/helper.py": "VALUE = 22\n"}, package_entry_point="pk.main:build")
    cwd = tmp_path / "cwd"
    (cwd / "pk").mkdir(parents=True)
    (cwd / "pk" / "__init__.py").write_text("raise RuntimeError('imported from the cwd')\n")
    (cwd / "pk" / "helper.py").write_text("VALUE = 99\n")
    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend(str(cwd))
    before = set(sys.modules)
    with Runner(a[1]) as ra, Runner(b[1]) as rb:
        assert ra.sample([0])["image"][0, 0, 0] == 11
        assert rb.sample([0])["image"][0, 0, 0] == 22
    added = set(sys.modules) - before
    assert added and all(m.startswith("_synthmed_pkg_") for m in added), added
    assert "pk" not in sys.modules and "pk.helper" not in sys.modules


def test_model_errors_inline_are_model_run_errors(tmp_path: Path) -> None:
    bad_output = '''
import numpy as np
class M:
    def sample(self, seeds, kind="missing"):
        if kind == "missing":
            return {"other": np.zeros((len(seeds), 8, 8))}
        if kind == "short":
            return {"image": np.zeros((1, 8, 8))}
        raise KeyError("boom")
def build(package_dir, device):
    return M()
'''
    inputs = {"type": "object", "properties": {"kind": {"enum": ["missing", "short", "raise"]}}}
    record, pkg, _ = build_package(tmp_path, "bad-out", {"bo.py": bad_output}, package_entry_point="bo:build",
                                   inputs=inputs)
    with Runner(pkg) as r:
        with pytest.raises(ModelRunError, match="returned no 'image' output"):
            r.sample([0, 1], kind="missing")
        with pytest.raises(ModelRunError, match=r"expected 2 samples"):
            r.sample([0, 1], kind="short")
        with pytest.raises(ModelRunError, match="raised KeyError"):
            r.sample([0], kind="raise")
    broken, pkg2, _ = build_package(tmp_path / "x", "no-factory", {"nf.py": "x = 1\n"}, package_entry_point="nf:build")
    with pytest.raises(ModelRunError, match="no callable 'build'"):
        Runner(pkg2).sample([0])


def test_medigan_package_runs_with_global_seeding(tmp_path: Path, medigan_toy) -> None:
    record, pkg, _ = medigan_toy
    with Runner(pkg, batch_size=3) as r:
        a = r.sample(range(5))["image"]
        shifted = r.sample(range(2), shift=0.5)["image"]
    with Runner(pkg, batch_size=1) as r:
        b = r.sample([3, 4])["image"]
    assert a.shape == (5, 6, 6, 1) and a.dtype == np.uint8
    assert np.array_equal(a[3:], b)
    assert not np.array_equal(a[:2], shifted)
    # what a seed means: item s % chunk of generate(num_samples=chunk) seeded with s // chunk
    from synthmed.registry.formats import load_model
    from synthmed.registry.formats.medigan1 import MEDIGAN_CHUNK, seed_everything

    direct = load_model(record, pkg.folder, "cpu")
    seed_everything(1)
    items = direct.generate(model_file=str(direct.model_file), num_samples=MEDIGAN_CHUNK,
                            output_path=str(tmp_path / "o"), save_images=False)
    with Runner(pkg, batch_size=4) as r:
        got = r.sample([MEDIGAN_CHUNK + 1, 2 * MEDIGAN_CHUNK - 1, 3])["image"]
        assert r.info["medigan_seed_chunk"] == MEDIGAN_CHUNK
    assert np.array_equal(got[0], items[1]) and np.array_equal(got[1], items[-1])
    assert np.array_equal(got[2], a[3])
    # chunk 1: one seeded call per sample
    seed_everything(4)
    one = direct.generate(model_file=str(direct.model_file), num_samples=1, output_path=str(tmp_path / "o"),
                          save_images=False)[0]
    with Runner(pkg, medigan_chunk=1, batch_size=2) as r:
        assert np.array_equal(r.sample([4])["image"][0], one)


def test_medigan_entry_point_from_import(tmp_path: Path) -> None:
    """Records imported from medigan name `__init__:generate`; the zip wraps one folder."""
    record, pkg, _ = medigan_package(tmp_path, folder="00001_DCGAN_TOY", entry_point="__init__:generate")
    with Runner(pkg) as r:
        assert r.sample([0, 1])["image"].shape == (2, 6, 6, 1)
