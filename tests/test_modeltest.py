"""Model tests: broken models each fail with their reason, a good one passes; reports
validate against schemas/test-report.schema.json; results land in the catalog.

The models are tiny synthmed-1 packages written into tmp_path (numpy only, so a worker
starts in a fraction of a second); their builders are in helpers/packages.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import synthmed.registry.checks.modeltest as mt
from helpers.packages import FLOAT_IMAGE, INPUTS, UINT8_IMAGE, catalog_entry, make_model, with_record
from synthmed.registry.checks import modeltest_checks as mc
from synthmed.registry.errors import Unverified
from synthmed.registry.checks.modeltest_site import test_entry
from synthmed.registry.runner import RunnerOptions
from synthmed.registry.settings import Settings
from synthmed.registry.records import Record
from synthmed.registry.checks.report import load_report, validate_report, write_report


def check(result: Any, name: str) -> mc.CheckResult:
    found = [c for c in result.checks if c.name == name]
    assert found, f"no {name} check in {[c.name for c in result.checks]}"
    return found[0]


CPU = RunnerOptions(device="cpu", mode="worker")


# --- the good model ----------------------------------------------------------------


def test_good_model_passes_every_check(tmp_path: Path) -> None:
    record, pkg = make_model(tmp_path, "good")
    result = mt.test_model(pkg, CPU)
    assert result.status == "passed", result.reason
    assert result.reason is None
    names = {c.name: c.status for c in result.checks}
    assert names == {"params": "pass", "load": "pass", "run": "pass", "shapes": "pass", "dtypes": "pass",
                     "value_range": "pass", "finite": "pass", "throughput": "pass", "determinism": "pass",
                     "batch_invariance": "pass"}
    assert "before any model code ran" in check(result, "params").message
    assert result.throughput_sps and result.throughput_sps > 0
    assert result.peak_memory_mb and 5 < result.peak_memory_mb < 4096
    assert result.runner["mode"] == "worker"
    assert result.samples is not None and result.samples["image"].shape == (3, 8, 8)
    assert result.test == {"num_samples": 3, "seed": 5, "params": {"label": "malignant"}, "timeout_s": 5.0,
                           "checks": list(mc.ALL_CHECKS)}


# --- broken models: each fails with its reason --------------------------------------

BROKEN = [
    ("wrong-shape", {}, "shapes", "output 'image' has shape (3, 7, 8)"),
    ("wrong-dtype", {}, "dtypes", "output 'image' has dtype float64, the record declares uint8"),
    ("nan", {"output": FLOAT_IMAGE}, "finite", "1 non-finite value(s) (1 NaN, 0 inf) in sample(s) [1]"),
    ("out-of-range", {"output": FLOAT_IMAGE}, "value_range", "outside the declared value_range [0, 1]"),
    ("nondeterministic", {}, "determinism", "not deterministic: the same seeds gave different samples"),
    ("batch-dependent", {}, "batch_invariance", "sample i depends on its batch: batch 1 vs batch 3"),
    ("raises", {}, "run", "the model raised ValueError while sampling seeds 5..7: the generator exploded on purpose"),
    ("load-raises", {}, "load", "cannot find my weights on purpose"),
    ("hangs", {"test": {"num_samples": 2, "seed": 0, "timeout_s": 2}}, "run", "timed out after 2s"),
    ("crashes", {}, "run", "worker process was killed by SIGSEGV"),
]


#: behaviours whose test waits out a timeout
SLOW = {"hangs"}


@pytest.mark.parametrize(("behaviour", "kw", "failing", "reason"),
                         [pytest.param(*b, id=b[0], marks=[pytest.mark.slow] if b[0] in SLOW else []) for b in BROKEN])
def test_broken_model_fails_with_its_reason(tmp_path: Path, behaviour: str, kw: dict[str, Any], failing: str,
                                            reason: str) -> None:
    record, pkg = make_model(tmp_path, behaviour, **kw)
    result = mt.test_model(pkg, CPU)
    assert result.status == "failed"
    assert not result.passed
    bad = check(result, failing)
    assert bad.status == "fail"
    assert reason in bad.message, bad.message
    assert result.reason is not None and result.reason.startswith(f"{failing}: ") or f"; {failing}: " in (result.reason or "")
    assert reason in (result.reason or "")


@pytest.mark.slow
def test_hang_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    import time

    record, pkg = make_model(tmp_path, "hangs", test={"num_samples": 2, "seed": 0, "timeout_s": 2})
    t0 = time.monotonic()
    result = mt.test_model(pkg, CPU)
    assert time.monotonic() - t0 < 15
    assert "worker" in check(result, "run").message  # the worker (pid N) was stopped


@pytest.mark.slow
def test_hang_while_loading_fails_at_the_load_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthmed.registry.runner import client

    # the runner gives loading at least LOAD_TIMEOUT_MIN_S (120 s); shorten it for the test
    monkeypatch.setattr(client, "LOAD_TIMEOUT_MIN_S", 2.0)
    record, pkg = make_model(tmp_path, "load-hangs", test={"num_samples": 2, "seed": 0, "timeout_s": 1})
    result = mt.test_model(pkg, CPU)
    assert result.status == "failed"
    assert "timed out after 2s while loading the model" in check(result, "load").message
    assert not any(c.name == "run" for c in result.checks)


def test_invalid_test_params_fail_before_any_model_code(tmp_path: Path) -> None:
    record, pkg = make_model(tmp_path, "load-raises")
    data = dict(record.data)
    data["test"] = {"num_samples": 2, "seed": 0, "params": {"label": "benign"}}
    # the record's test.params are valid; replace the inputs so they no longer are
    data["inputs"] = {"type": "object", "properties": {"label": {"enum": ["other"]}}, "additionalProperties": False}
    result = mt.test_model(with_record(tmp_path, pkg, data), CPU)
    assert result.status == "failed"
    assert check(result, "params").message.startswith("the record's test.params are refused")
    assert not any(c.name == "load" for c in result.checks)  # the model was never loaded


def test_schema_that_accepts_anything_cannot_refuse_a_parameter(tmp_path: Path) -> None:
    record, pkg = make_model(tmp_path, "good", inputs={"type": "object"}, test={"num_samples": 2, "seed": 0})
    result = mt.test_model(pkg, CPU)
    assert result.status == "passed", result.reason
    assert "accepts any parameters" in check(result, "params").message


def test_checks_named_in_the_record_are_the_only_ones_run(tmp_path: Path) -> None:
    record, pkg = make_model(tmp_path, "nondeterministic",
                             test={"num_samples": 2, "seed": 0, "timeout_s": 5, "checks": ["shapes", "finite"]})
    result = mt.test_model(pkg, CPU)
    assert result.status == "passed"
    assert [c.name for c in result.checks] == ["load", "run", "shapes", "finite"]


def test_unverified_record_is_skipped(tmp_path: Path) -> None:
    record, pkg = make_model(tmp_path, "good")
    data = json.loads(json.dumps(record.data))
    del data["package"]["artefact"]["sha256"]
    with pytest.raises(Unverified):  # an unpinned record never becomes a runnable package
        with_record(tmp_path, pkg, data)
    entry = catalog_entry(Record(data=data, path="x.json"))
    result = test_entry(entry, Settings(home=tmp_path / "site"))
    assert result.status == "skipped"
    assert "unverified" in (result.reason or "")


@pytest.mark.slow
def test_medigan_package_is_tested(medigan_toy) -> None:
    record, pkg, _ = medigan_toy
    result = mt.test_model(pkg, CPU)
    assert result.status == "passed", result.reason
    assert check(result, "shapes").status == "pass"  # HxWx1 is accepted for channels 1


# --- pure checks ---------------------------------------------------------------------


def test_accepted_shapes_allow_a_channel_axis() -> None:
    assert mc.accepted_shapes({"shape": [8, 8], "channels": 1}) == [(8, 8), (8, 8, 1), (1, 8, 8)]
    assert (10, 12, 3) in mc.accepted_shapes({"shape": [10, 12], "channels": 3})
    assert (3, 10, 12) in mc.accepted_shapes({"shape": [10, 12], "channels": 3})


def test_invalid_params_probe() -> None:
    assert mc.invalid_params(INPUTS) == {mc.PROBE_KEY: 1}
    assert mc.invalid_params({"type": "object"}) is None
    open_typed = {"type": "object", "properties": {"steps": {"type": "integer"}}, "additionalProperties": True}
    assert list(mc.invalid_params(open_typed) or {}) == ["steps"]


# --- reports ------------------------------------------------------------------------


@pytest.mark.slow
def test_report_is_valid_json_with_summary_and_sample_grids(tmp_path: Path) -> None:
    from PIL import Image

    good, gpkg = make_model(tmp_path, "good")
    bad, bpkg = make_model(tmp_path, "nan", output=FLOAT_IMAGE)
    results = [mt.test_model(gpkg, CPU), mt.test_model(bpkg, CPU)]
    path = write_report(tmp_path / "report", results, site="test-site")
    doc = load_report(path)  # validates against the schema
    assert doc["format"] == "synthmed-test-report/1"
    assert doc["summary"] == {"total": 2, "passed": 1, "failed": 1, "skipped": 0, "error": 0}
    by_ref = {r["ref"]: r for r in doc["results"]}
    assert by_ref["model-good@1.0.0"]["passed"] is True
    assert "finite:" in by_ref["model-nan@1.0.0"]["reason"]
    assert by_ref["model-good@1.0.0"]["measurements"]["throughput_sps"] > 0
    png = tmp_path / "report" / by_ref["model-good@1.0.0"]["samples_png"]
    with Image.open(png) as img:
        assert img.width >= 3 * 8 and img.height >= 8
    one = load_report(tmp_path / "report" / "models" / "model-good" / "1.0.0.json")
    assert one["summary"]["total"] == 1
    md = (tmp_path / "report" / "summary.md").read_text()
    assert "**1 passed, 1 failed, 0 not tested (error), 0 skipped by site policy** of 2." in md
    assert "| `model-nan@1.0.0` | **FAIL** |" in md
    assert "![samples of model-good@1.0.0](samples/model-good@1.0.0.png)" in md


def test_report_schema_refuses_a_bad_report(tmp_path: Path) -> None:
    from synthmed.registry.errors import SynthmedError

    record, pkg = make_model(tmp_path, "good")
    path = write_report(tmp_path / "r", [mt.test_model(pkg, CPU)])
    doc = json.loads(path.read_text())
    doc["results"][0]["status"] = "mostly fine"
    del doc["summary"]["failed"]
    with pytest.raises(SynthmedError) as err:
        validate_report(doc, "r.json")
    assert "$.results[0].status" in str(err.value) and "failed" in str(err.value)


def test_compare_runs_is_exact_on_cpu_and_tolerant_on_cuda() -> None:
    import numpy as np

    a = {"image": np.zeros((2, 4, 4), dtype=np.float32), "mask": np.zeros((2, 4, 4), dtype=np.uint8)}
    b = {"image": a["image"].copy(), "mask": a["mask"].copy()}
    b["image"][1, 0, 0] = 5e-5
    outputs = [FLOAT_IMAGE, {**UINT8_IMAGE, "name": "mask"}]
    assert mc.run_tolerances(outputs, "cpu") == {}
    same, why, details = mc.compare_runs(a, b, mc.run_tolerances(outputs, "cpu"))
    assert not same and "output 'image' differs in 1 of 2 sample(s) (first: sample 1" in why
    assert details["image"]["differing_samples"] == [1]
    cuda = mc.run_tolerances(outputs, "cuda:0")
    assert cuda == {"image": pytest.approx(1e-4), "mask": 1.0}
    assert mc.compare_runs(a, b, cuda)[0]
    b["mask"][0, 1, 1] = 2
    same, why, _ = mc.compare_runs(a, b, cuda)
    assert not same and "output 'mask'" in why and "tolerance 1" in why
    nan = {"image": np.full((1, 2), np.nan, dtype=np.float32)}
    assert mc.compare_runs(nan, {"image": nan["image"].copy()})[0]


def test_sample_grid_handles_volumes_channels_and_colour(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image
    from synthmed.registry.outputs import OutputSpec, preview_plane
    from synthmed.registry.checks.report import write_sample_grid

    def _as_image(sample: np.ndarray, output: dict) -> np.ndarray:  # the plane a report grid shows
        return preview_plane(sample, OutputSpec.from_record(output))

    vol = {"name": "v", "dims": 3, "shape": [4, 6, 5], "channels": 1, "value_range": [0, 1]}
    # a volume (slices, rows, cols) shows its middle slice along the slice axis, as `visualize`
    # does (issue 10; the report used to cut along the last axis and show a (4, 6) plane)
    assert _as_image(np.zeros((4, 6, 5)), vol).shape == (6, 5)
    assert _as_image(np.zeros((1, 4, 6, 5)), vol).shape == (6, 5)
    rgb = {"name": "c", "dims": 2, "shape": [10, 12], "channels": 3, "value_range": [0, 255]}
    assert _as_image(np.zeros((10, 12, 3)), rgb).shape == (10, 12, 3)
    assert _as_image(np.zeros((3, 10, 12)), rgb).shape == (10, 12, 3)
    gray = {"name": "g", "dims": 2, "shape": [8, 8], "channels": 1, "value_range": [0, 255]}
    assert _as_image(np.zeros((8, 8, 1)), gray).shape == (8, 8)
    png = write_sample_grid({"c": np.random.default_rng(0).integers(0, 256, (5, 10, 12, 3), dtype=np.uint8)},
                            [rgb], tmp_path / "g.png")
    assert png is not None
    with Image.open(png) as img:
        assert img.mode == "RGB"
