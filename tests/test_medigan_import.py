"""`synthmed index import-medigan` on medigan's real catalogue (first 15 entries)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthmed.cli import main
from synthmed.registry.authoring import medigan_fields as mf
from synthmed.registry.authoring import medigan_import as mi
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
    """The index holds this importer's conversion of every entry (as its latest version);
    re-importing into a copy of it changes nothing."""
    import shutil

    copy = tmp_path / "index"
    shutil.copytree(REPO_ROOT / "index" / "models", copy / "models")
    outcomes = mi.import_catalogue(CATALOGUE, copy, commit="db39b901")
    assert [o.written for o in outcomes] == ["unchanged"] * 15, \
        [(o.original_id, o.written, o.path) for o in outcomes if o.written != "unchanged"]
    fresh = mi.import_catalogue(CATALOGUE, tmp_path / "fresh", commit="db39b901")
    for o in fresh:  # the same conversion as the committed one, under medigan's own version
        assert o.path is not None and o.record is not None
        committed = REPO_ROOT / "index" / next(x for x in outcomes if x.original_id == o.original_id).path.split(
            str(copy) + "/", 1)[1]
        data = json.loads(committed.read_text())
        data["version"] = o.record["version"]
        data["provenance"]["import_notes"] = [n for n in data["provenance"].get("import_notes", [])
                                              if not n.startswith("re-imported")] or None
        if data["provenance"]["import_notes"] is None:
            del data["provenance"]["import_notes"]
        assert data == o.record, o.original_id


def test_a_changed_conversion_is_a_new_version_never_a_rewrite(tmp_path: Path, catalogue: dict) -> None:
    entry = catalogue["00001_DCGAN_MMG_CALC_ROI"]
    first = mi.convert_entry("00001_DCGAN_MMG_CALC_ROI", entry).record
    assert first is not None
    folder = tmp_path / "models" / "00001_dcgan_mmg_calc_roi"
    folder.mkdir(parents=True)
    old = dict(first, title="an older conversion")
    (folder / "0.0.1.json").write_text(json.dumps(old, indent=2) + "\n")
    rec, state = mi.place_version(first, tmp_path)
    assert state == "created" and rec["version"] == "0.0.2"
    assert any(n.startswith("re-imported") for n in rec["provenance"]["import_notes"])
    (folder / "0.0.2.json").write_text(json.dumps(rec, indent=2, ensure_ascii=False) + "\n")
    again, state = mi.place_version(first, tmp_path)
    assert state == "unchanged" and again["version"] == "0.0.2"
    assert json.loads((folder / "0.0.1.json").read_text())["title"] == "an older conversion"  # untouched


def test_image_mask_models_package_paths_and_dropped_fields(catalogue: dict) -> None:
    rec = mi.convert_entry("00009_PGGAN_POLYP_PATCHES_W_MASKS", catalogue["00009_PGGAN_POLYP_PATCHES_W_MASKS"]).record
    assert rec is not None
    assert [(o["name"], o["kind"], o["channels"]) for o in rec["outputs"]] == [("image", "image", 3), ("mask", "mask", 1)]
    for mid in ("00004_PIX2PIX_MMG_MASSES_W_MASKS", "00007_INPAINT_BRAIN_MRI", "00010_FASTGAN_POLYP_PATCHES_W_MASKS",
                "00011_SINGAN_POLYP_PATCHES_W_MASKS"):
        r = mi.convert_entry(mid, catalogue[mid]).record
        assert r is not None and [o["name"] for o in r["outputs"]] == ["image", "mask"], mid
    plain = mi.convert_entry("00001_DCGAN_MMG_CALC_ROI", catalogue["00001_DCGAN_MMG_CALC_ROI"]).record
    assert plain is not None and [o["name"] for o in plain["outputs"]] == ["image"]
    # (without the translator mapping: with it, input_path becomes an array input, tests/test_array_inputs.py)
    r4 = mi.convert_entry("00004_PIX2PIX_MMG_MASSES_W_MASKS", catalogue["00004_PIX2PIX_MMG_MASSES_W_MASKS"],
                          translator_inputs=False).record
    assert r4 is not None and r4["package"]["generate_args"]["input_path"] == "{package}/images"
    assert r4["inputs"]["properties"]["input_path"]["default"] == "{package}/images"
    notes = rec["provenance"]["import_notes"]
    assert any(n.startswith("selection.year=") for n in notes)
    assert any("input_latent_vector_size" in n for n in notes)
    assert mf.family_of("pix2pixHD") == "gan" and mf.family_of("CycleGAN") == "gan"


def test_local_and_file_package_links(tmp_path: Path, catalogue: dict) -> None:
    entry = json.loads(json.dumps(catalogue["00001_DCGAN_MMG_CALC_ROI"]))
    entry["execution"]["package_link"] = "models/00001/pkg.zip"
    rec = mi.convert_entry("00001_DCGAN_MMG_CALC_ROI", entry, base=tmp_path).record
    assert rec is not None and rec["package"]["artefact"]["sources"] == [(tmp_path / "models/00001/pkg.zip").as_uri()]
    entry["execution"]["package_link"] = "file:///data/pkg.zip"
    rec = mi.convert_entry("00001_DCGAN_MMG_CALC_ROI", entry).record
    assert rec is not None and rec["package"]["artefact"]["sources"] == ["file:///data/pkg.zip"]
    entry["execution"]["package_link"] = "ftp://host/pkg.zip"
    out = mi.convert_entry("00001_DCGAN_MMG_CALC_ROI", entry)
    assert out.record is None and "local path" in (out.reason or "")


def test_free_text_licences() -> None:
    assert mi.map_license("MIT") == ("MIT", None)
    assert mi.map_license("BSD") == ("NOASSERTION", "BSD")
    assert mi.map_license("GNU GENERAL PUBLIC LICENSE") == ("NOASSERTION", "GNU GENERAL PUBLIC LICENSE")
    assert mi.map_license(None) == ("NOASSERTION", None)
    assert mi.map_license("apache 2.0") == ("Apache-2.0", "apache 2.0")
    assert mi.map_license("mit") == ("MIT", "mit")


def test_quirks() -> None:
    assert mf.image_size(["128", "128"]) == [128, 128]
    assert mf.image_size("256x256") == [256, 256]
    assert mf.image_size("128") == [128, 128]
    assert mf.image_size(None) is None
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
    # the existing file stays; the conversion goes to a new version beside it
    assert outcomes["00001_DCGAN_MMG_CALC_ROI"].written == "created"
    assert outcomes["00001_DCGAN_MMG_CALC_ROI"].path == str(target.with_name("0.0.2.json"))
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


def test_import_maps_medigan_words_onto_the_vocabulary_and_keeps_them(catalogue: dict) -> None:
    """medigan's ten spellings of mammography become the code MG, "breasts" the term
    breast; the original words stay as tags (search finds them) and in provenance (the
    medigan API's selection dict shows them, as medigan does) (issue #26)."""
    rec = mi.convert_entry("00001_DCGAN_MMG_CALC_ROI", catalogue["00001_DCGAN_MMG_CALC_ROI"]).record
    assert rec is not None
    assert rec["modality"] == ["MG"] and rec["anatomy"] == ["breast", "chest"]
    words = catalogue["00001_DCGAN_MMG_CALC_ROI"]["selection"]["modality"]
    assert set(words) <= set(rec["tags"]) and "breasts" in rec["tags"]
    assert rec["provenance"]["original_terms"]["modality"] == words
    brain = mi.convert_entry("00007_INPAINT_BRAIN_MRI", catalogue["00007_INPAINT_BRAIN_MRI"]).record
    assert brain is not None and brain["modality"] == ["MR"] and brain["anatomy"] == ["brain", "head"]
