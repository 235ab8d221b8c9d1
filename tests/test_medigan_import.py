"""`synthmed index import-medigan` on medigan's real catalogue (first 15 entries)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthmed.cli import main
from synthmed.registry import medigan_import as mi
from synthmed.registry import records

from helpers import FIXTURES, REPO_ROOT

#: medigan's own catalogue, its first 15 entries (MIT; provenance in tests/fixtures/medigan/README.md)
CATALOGUE = FIXTURES / "medigan" / "medigan-global-00001-00015.json"


@pytest.fixture(scope="module")
def catalogue() -> dict:
    return json.loads(CATALOGUE.read_text())


def test_imports_all_15_as_unverified(tmp_path: Path, catalogue: dict) -> None:
    outcomes = mi.import_catalogue(CATALOGUE, tmp_path, commit="db39b901")
    assert len(outcomes) == 15 and all(o.ok for o in outcomes), [o.reason for o in outcomes]
    report = records.validate_path(tmp_path)
    assert report.ok and report.checked == 15 and len(report.unverified) == 15
    rec = records.load_record(tmp_path / "models" / "00001_dcgan_mmg_calc_roi" / "0.0.1.json")
    assert rec.package_format == "medigan-1"
    assert rec.sources[0] == "zenodo:7031735/00001_DCGAN_MMG_CALC_ROI.zip"
    assert rec.sha256 is None
    assert rec.get("license") == "MIT"
    assert rec.get("provenance")["original_id"] == "00001_DCGAN_MMG_CALC_ROI"
    fid = next(m for m in rec.get("metrics") if m["name"] == "FID")
    assert fid == {"name": "FID", "value": 67.6, "better": "lower", "source": "reported", "n_samples": 1000,
                   "extractor": "inception-v3"}


def test_committed_index_matches_importer(tmp_path: Path, catalogue: dict) -> None:
    # the committed 0.0.1 records were imported before translators' folders became array
    # inputs; a merged version is immutable, so they stay as first imported
    mi.import_catalogue(CATALOGUE, tmp_path, commit="db39b901", translator_inputs=False)
    for f in (tmp_path / "models").glob("*/*.json"):
        committed = REPO_ROOT / "index" / f.relative_to(tmp_path)
        assert committed.read_text() == f.read_text(), f"{committed} is stale: rerun the import"


def test_free_text_licences() -> None:
    assert mi.map_license("MIT") == ("MIT", None)
    assert mi.map_license("BSD") == ("NOASSERTION", "BSD")
    assert mi.map_license("GNU GENERAL PUBLIC LICENSE") == ("NOASSERTION", "GNU GENERAL PUBLIC LICENSE")
    assert mi.map_license(None) == ("NOASSERTION", None)
    assert mi.map_license("apache 2.0") == ("Apache-2.0", "apache 2.0")
    assert mi.map_license("mit") == ("MIT", "mit")


def test_quirks() -> None:
    assert mi._image_size(["128", "128"]) == [128, 128]
    assert mi._image_size("256x256") == [256, 256]
    assert mi._image_size("128") == [128, 128]
    assert mi._image_size(None) is None
    assert mi.parse_date("12th May 2021") == "2021-05-12"
    assert mi.parse_date("Sep 2021") == "2021-09"
    assert mi.parse_date("November 2022") == "2022-11"
    assert mi.parse_date("2020") == "2020"
    assert mi.parse_date(None) is None
    assert mi.normalise_doi("https://doi.org/10.1002/mp.14701") == "10.1002/mp.14701"
    assert mi.zenodo_source("https://zenodo.org/records/10214796/files/X.zip?download=1") == "zenodo:10214796/X.zip"


def test_bad_entries_get_reasons_and_others_import(tmp_path: Path, catalogue: dict) -> None:
    bad = {
        "00001_DCGAN_MMG_CALC_ROI": catalogue["00001_DCGAN_MMG_CALC_ROI"],
        "NO_LINK": {"execution": {"image_size": [64, 64]}, "selection": {}, "description": {}},
        "NO_SIZE": {"execution": {"package_link": "https://zenodo.org/record/1/files/a.zip"}, "selection": {}, "description": {}},
        "x" * 80: catalogue["00002_DCGAN_MMG_MASS_ROI"],
        "NOT_AN_OBJECT": [1, 2],
        "STRING_SIZES": {"execution": {"package_link": "https://zenodo.org/record/5/files/b.zip", "image_size": ["64", "64"]},
                         "selection": {"license": None, "height": "64"}, "description": {"version": None}},
    }
    f = tmp_path / "global.json"
    f.write_text(json.dumps(bad))
    outcomes = {o.original_id: o for o in mi.import_catalogue(f, tmp_path / "idx")}
    assert outcomes["00001_DCGAN_MMG_CALC_ROI"].ok
    assert outcomes["STRING_SIZES"].ok
    assert outcomes["STRING_SIZES"].record["outputs"][0]["shape"] == [64, 64]
    assert "package_link" in outcomes["NO_LINK"].reason
    assert "image size" in outcomes["NO_SIZE"].reason
    assert "not a valid synthmed id" in outcomes["x" * 80].reason
    assert "not an object" in outcomes["NOT_AN_OBJECT"].reason


def test_existing_different_record_is_never_overwritten(tmp_path: Path, catalogue: dict) -> None:
    mi.import_catalogue(CATALOGUE, tmp_path)
    target = tmp_path / "models" / "00001_dcgan_mmg_calc_roi" / "0.0.1.json"
    target.write_text(target.read_text().replace("Calcification", "CALC"))
    before = target.read_text()
    outcomes = {o.original_id: o for o in mi.import_catalogue(CATALOGUE, tmp_path)}
    assert "immutable" in outcomes["00001_DCGAN_MMG_CALC_ROI"].reason
    assert target.read_text() == before
    assert outcomes["00002_DCGAN_MMG_MASS_ROI"].written == "unchanged"


def test_cli_import_and_validate(tmp_path: Path, catalogue: dict, capsys) -> None:
    assert main(["index", "import-medigan", str(CATALOGUE), "--into", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["imported"]) == 15 and out["failed"] == []
    assert main(["index", "validate", str(tmp_path), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] and len(rep["unverified"]) == 15 and rep["errors"] == []


def test_cli_bad_file(tmp_path: Path, capsys) -> None:
    f = tmp_path / "g.json"
    f.write_text("{nope")
    assert main(["index", "import-medigan", str(f), "--into", str(tmp_path)]) == 1
    assert "not valid JSON" in capsys.readouterr().err


def test_cli_validate_reports_errors(tmp_path: Path, capsys) -> None:
    bad = REPO_ROOT / "tests" / "fixtures" / "records" / "invalid" / "sha256-short.json"
    assert main(["index", "validate", str(bad)]) == 1
    assert "$.package.artefact.sha256" in capsys.readouterr().err
