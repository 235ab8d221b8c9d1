"""`synthmed generate`: params typed from the inputs schema, formats, progress, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.packages import marker_package
from helpers.sites import make_site_home
from synthmed.cli import main


@pytest.fixture
def home(tmp_path: Path, toy_gan) -> Path:
    toy, _, _ = toy_gan
    marker, _, _ = marker_package(tmp_path / "m")
    return make_site_home(tmp_path / "site", [dict(toy.data), dict(marker.data)])


def test_generate_npy_with_params_and_progress(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = main(["--site", str(home), "generate", "toy-gan", "-n", "9", "-o", str(out), "--format", "npy",
               "--seed", "3", "--batch-size", "4", "--device", "cpu", "--param", "label=malignant",
               "--mode", "inline", "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    summary = json.loads(cap.out)
    assert summary["written"] == 9 and summary["format"] == "npy" and summary["seeds"] == [3, 11]
    assert "9/9" in cap.err and "100.0%" in cap.err  # the progress bar
    side = json.loads((out / "synthmed.json").read_text())
    assert side["params"] == {"label": "malignant"} and side["runner"]["batch_size"] == 4
    from synthmed import Site

    ref = Site(home).model("toy-gan").sample(9, seed=3, label="malignant")["image"]
    assert np.array_equal(np.load(out / "image" / "000008.npy"), ref[8])
    # run again: everything is already there
    rc = main(["--site", str(home), "generate", "toy-gan", "-n", "9", "-o", str(out), "--format", "npy",
               "--seed", "3", "--param", "label=malignant", "--no-progress"])
    assert rc == 0
    assert "0 written, 9 already there" in capsys.readouterr().out


def test_param_types_coerced_and_bad_ones_refused(home: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    rc = main(["--site", str(home), "generate", "marker-model", "-n", "2", "-o", str(out), "--format", "png",
               "--param", "steps=5", "--param", "scale=0.5", "--param", "flag=true", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((out / "synthmed.json").read_text())["params"] == {
        "label": "benign", "steps": 5, "scale": 0.5, "flag": True}
    for bad, words in ((["steps=many"], ["'steps'", "an integer"]),
                       (["label=other"], ["'label'", "one of", "\"benign\""]),
                       (["colour=red"], ["unknown parameter 'colour'", "allowed: ", "label (one of"]),
                       (["steps=500"], ["'steps'", "<= 100"])):
        args = ["--site", str(home), "generate", "marker-model", "-n", "1", "-o", str(tmp_path / "bad")]
        for b in bad:
            args += ["--param", b]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ")
        for w in words:
            assert w in err, (w, err)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_cli_entry_point_runs(home: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "synthmed.cli", "--site", str(home), "generate", "toy-gan",
                           "-n", "3", "-o", str(tmp_path / "p")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "p" / "image").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert "3/3" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "synthmed.cli", "--site", str(home), "generate", "no-such-model",
                           "-n", "3", "-o", str(tmp_path / "q")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "no model 'no-such-model'" in proc.stderr


def test_visualize_writes_a_grid_png(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    out = tmp_path / "grid.png"
    rc = main(["--site", str(home), "visualize", "toy-gan", "-n", "4", "-o", str(out), "--param", "label=malignant"])
    assert rc == 0, capsys.readouterr().err
    assert "grid of 4 sample(s)" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.width > 8 and im.height > 8
    assert main(["--site", str(home), "visualize", "toy-gan", "-o", str(out), "--output-name", "nope"]) == 1
    assert "has no output 'nope'" in capsys.readouterr().err
    assert main(["--site", str(home), "visualize", "toy-gan", "-o", str(out), "-n", "0"]) == 1


def test_cli_format_choices_match_the_writers() -> None:
    from synthmed.cli.run_cmds import FORMATS as CLI_FORMATS
    from synthmed.output_formats import FORMATS

    assert CLI_FORMATS == FORMATS
