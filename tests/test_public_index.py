"""This repo's own index/: it validates, and a site built from it finds and runs the starter models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthmed.cli import main
from synthmed.registry.records import validate_path

from helpers import REPO_ROOT

pytestmark = pytest.mark.slow  # a site synced from this repo


STARTERS = {"ihc-patch-dcgan", "ihc-patch-dcgan-medigan", "retina-patch-ddpm", "phantom-lesion",
            "retina-vessel-mask-dcgan", "retina-vessel-mask-tree", "retina-vessel-pix2pix", "retina-vessel-dualgan"}


def test_committed_index_validates_with_medigan_records_unverified() -> None:
    report = validate_path(REPO_ROOT / "index")
    assert report.ok, [str(p) for p in report.errors]
    # every record file is checked: the starters (retina-patch-ddpm 1.0.0, deprecated, and 1.0.1, ...) and
    # the versions of each medigan record (the first import, the importer of the next rounds, and the
    # current importer's, which maps medigan's words onto the controlled vocabulary: issue #26)
    assert report.checked == len(list((REPO_ROOT / "index" / "models").glob("*/*.json"))) >= 36
    # (and one more of the five translators, 00003, 00004, 00013-00015: their input folder became an array input)
    assert len(report.unverified) == 50 and all(r.startswith("000") for r in report.unverified)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("public-site")
    assert main(["init", str(home), "--upstream", f"public={REPO_ROOT}"]) == 0
    assert main(["--site", str(home), "sync"]) == 0
    return home


def _search(site: Path, capsys: pytest.CaptureFixture[str], *args: str) -> set[str]:
    assert main(["--site", str(site), "search", *args, "--json"]) == 0
    return {e["id"] for e in json.loads(capsys.readouterr().out)}


def test_search_finds_starters_by_modality_and_architecture(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert _search(site, capsys, "--modality", "CT") == {"phantom-lesion"}
    assert {"ihc-patch-dcgan", "ihc-patch-dcgan-medigan"} <= _search(site, capsys, "--modality", "histopathology")
    assert "retina-patch-ddpm" in _search(site, capsys, "--architecture", "diffusion")
    assert "phantom-lesion" in _search(site, capsys, "--architecture", "procedural")
    gans = _search(site, capsys, "--architecture", "gan")
    assert {"ihc-patch-dcgan", "00001_dcgan_mmg_calc_roi"} <= gans
    assert "retina-patch-ddpm" in _search(site, capsys, "fundus")


def test_starters_are_mirrored_verified_and_generate(site: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--site", str(site), "search", "--json", "--limit", "50"]) == 0
    state = {e["id"]: e["artefact_state"] for e in json.loads(capsys.readouterr().out)}
    assert all(state[m] == "verified" for m in STARTERS), state
    assert sum(1 for s in state.values() if s == "unverified") == 15
    out = tmp_path / "ph"
    assert main(["--site", str(site), "generate", "phantom-lesion", "-n", "2", "-o", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in (out / "image").iterdir()) == ["000000.png", "000001.png"]
    assert sorted(p.name for p in (out / "volume").iterdir()) == ["000000.nii.gz", "000001.nii.gz"]
    # an unverified medigan record is searchable but never executed
    assert main(["--site", str(site), "generate", "00001_dcgan_mmg_calc_roi", "-n", "1", "-o", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "unverified" in err and "synthmed index pin 00001_dcgan_mmg_calc_roi@0.0.3" in err
