"""synthmed's Generators against medigan 1.0.0's, without medigan installed: every public
method of medigan's Generators is called with the same arguments as
``bench/medigan_api.py`` calls it on medigan, on a site holding the same configuration
(medigan's catalogue entries 00001..00015 through synthmed's importer, and a small copy of
medigan's model template), and each answer must equal medigan's recorded answer
(``tests/fixtures/medigan/answers-1.0.0.json``, written by ``bench/medigan_api.py --record``)
or be one of the documented deliberate differences."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import pytest

from helpers.medigan_calls import (ANSWERS, DIFFERENCES, MEDIGAN_METHODS, build_side_by_side, calls, compare,
                                   prepare_work, run_calls)
from synthmed import Generators
from synthmed import medigan_compat
from synthmed.medigan_compat import MediganDifference
from synthmed.registry.errors import SynthmedError


@pytest.fixture(autouse=True)
def fresh_warnings() -> None:
    """Each deliberate difference warns once per process: start each test with none said."""
    medigan_compat._warned.clear()


@pytest.mark.slow
def test_every_medigan_method_answers_as_medigan(tmp_path: Path) -> None:
    recorded = json.loads(ANSWERS.read_text())
    setup = build_side_by_side(tmp_path)
    work = tmp_path / "work"
    prepare_work(work, setup["local_files"])
    old = os.getcwd()
    os.chdir(work)
    try:
        with pytest.warns(MediganDifference):
            ours = run_calls(Generators(setup["home"], mode="inline", progress=False), work, medigan=False)
    finally:
        os.chdir(old)
    verdict = compare(recorded, ours)
    different = {name: (recorded[name], ours.get(name)) for name, v in verdict.items() if v == "DIFFERENT"}
    assert not different, json.dumps(different, indent=1)[:4000]
    # every call was made, and every medigan method is among them
    assert set(verdict) == {c.name for c in calls(work)}
    assert {c.method for c in calls(work)} == set(MEDIGAN_METHODS)
    # the documented differences are the only ones, and each is still a difference
    assert {n for n, v in verdict.items() if v.startswith("documented")} <= set(DIFFERENCES)
    assert sum(v == "same" for v in verdict.values()) >= 34
    # the files medigan names: batch_<b>_<i>.png
    assert ours["generate(TEMPLATE, 40, output_path)"]["files"] == recorded["generate(TEMPLATE, 40, output_path)"]["files"]
    assert "batch_1_7.png" in ours["generate(TEMPLATE, 40, output_path)"]["files"]


def test_every_medigan_signature_is_synthmeds() -> None:
    """medigan's parameters, by name and in order, for every public method (synthmed's
    own extras come after them or are keyword-only)."""
    recorded = json.loads(ANSWERS.read_text())["__signatures__"]
    assert set(recorded) == set(MEDIGAN_METHODS)
    for name, params in recorded.items():
        sig = inspect.signature(getattr(Generators, name)).parameters.values()
        ours = [p.name for p in sig if p.name != "self" and p.kind != p.KEYWORD_ONLY and p.name not in ("args", "kwargs")]
        wanted = [p for p in params if p not in ("args", "kwargs")]
        assert ours[:len(wanted)] == wanted, (name, params, ours)
        if "kwargs" in params:
            assert any(p.kind == p.VAR_KEYWORD for p in sig), name


def test_push_to_zenodo_uploads_the_contributors_package(tmp_path: Path) -> None:
    """medigan's push_to_zenodo: synthmed uploads a reproducible zip of the contributor's
    folder (here to the Zenodo emulator on 127.0.0.1) and returns its zenodo: source."""
    from helpers.sites import make_site_home
    from helpers.zenodo import ZenodoEmulator

    pkg = tmp_path / "local"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("def generate(model_file, num_samples, output_path, save_images):\n    return []\n")
    (pkg / "500.pt").write_bytes(b"weights")
    g = Generators(make_site_home(tmp_path / "site", []), progress=False)
    g.add_model_contributor("00101_LOCAL", str(pkg / "__init__.py"))
    with ZenodoEmulator(tokens={"tok"}) as zen, pytest.warns(MediganDifference, match="push_to_zenodo"):
        source = g.push_to_zenodo("00101_LOCAL", "tok", "A. Author", "A Lab", "a test model", zenodo_host=zen.base)
        (rid,) = zen.records
        files = zen.records[rid].files
    assert source == f"zenodo:{rid}/00101_LOCAL.zip" and set(files) == {"00101_LOCAL.zip"}
    with pytest.raises(SynthmedError, match="no model contributor"):
        g.push_to_zenodo("00102_OTHER", "tok")


PKG_INIT = '''
import os
import numpy as np


def generate(model_file, num_samples, output_path, save_images, input_path=None):
    names = sorted(os.listdir(input_path))  # a folder inside the package, from {package}/images
    rng = np.random.default_rng(int(np.random.randint(0, 2**31)))
    out = []
    for _ in range(num_samples):
        rgb = rng.integers(0, 200, (6, 6, 3), dtype=np.uint8)
        mask = np.full((6, 6, 1), 255 if names == ["a.png"] else 7, dtype=np.uint8)
        out.append(np.concatenate([rgb, mask], axis=-1))  # medigan's 4-channel image+mask sample
    return out
'''


@pytest.mark.slow
def test_image_mask_split_and_package_relative_arguments(tmp_path: Path, medigan_toy) -> None:
    """An importer-made record's {package}/... default resolves inside the package; one
    4-channel medigan sample becomes the record's image (3 channels) and mask (1)."""
    from synthmed.registry.errors import ModelRunError
    from synthmed.registry.records import Record
    from synthmed.registry.formats.medigan1 import MediganModel

    pkg = tmp_path / "pkg"
    (pkg / "images").mkdir(parents=True)
    (pkg / "images" / "a.png").write_bytes(b"x")
    (pkg / "__init__.py").write_text(PKG_INIT)
    (pkg / "w.pt").write_bytes(b"w")
    data = json.loads(json.dumps(medigan_toy[0].data))
    data["package"].update(entry_point="__init__:generate", weights="w.pt",
                           generate_args={"input_path": "{package}/images"})
    data["outputs"] = [
        {"name": "image", "kind": "image", "dims": 2, "shape": [6, 6, 3], "dtype": "uint8", "channels": 3,
         "value_range": [0, 255]},
        {"name": "mask", "kind": "mask", "dims": 2, "shape": [6, 6], "dtype": "uint8", "channels": 1,
         "value_range": [0, 255]}]
    model = MediganModel(Record(data, "<test>"), pkg, "cpu", "test-split", chunk=4)
    out = model.sample([0, 1, 2])
    assert out["image"].shape == (3, 6, 6, 3) and out["mask"].shape == (3, 6, 6, 1)
    assert (out["mask"] == 255).all()  # generate() listed the package's own images folder
    with pytest.raises(ModelRunError, match="leaves the package"):
        model.sample([5], input_path="{package}/../../etc")


@pytest.mark.slow
def test_chunk_size_from_site_toml_cli_and_sdk(tmp_path: Path, medigan_toy) -> None:
    """The chunk size of medigan-1 packages: site.toml ``runner.medigan_chunk``, then
    ``--chunk-size``/``chunk_size=``; chosen per run when none is set; always recorded."""
    from helpers.sites import make_site_home
    from synthmed.cli import main
    from synthmed.registry.errors import ConfigError
    from synthmed.registry.settings import load_settings

    home = make_site_home(tmp_path / "site", [medigan_toy[0].data])
    toml = (home / "site.toml").read_text()
    (home / "site.toml").write_text(toml + "\n[runner]\nmedigan_chunk = 3\n")
    assert load_settings(home).runner.medigan_chunk == 3
    assert main(["--site", str(home), "generate", "medigan-toy", "-n", "5", "-o", str(tmp_path / "a"),
                 "--layout", "medigan", "--no-progress"]) == 0
    side = json.loads((tmp_path / "a.synthmed.json").read_text())
    assert side["runner"]["medigan_seed_chunk"] == 3 and side["layout"] == "medigan"
    assert sorted(p.name for p in (tmp_path / "a").glob("*.png")) == [f"batch_0_{i}.png" for i in range(5)]
    assert main(["--site", str(home), "generate", "medigan-toy", "-n", "5", "-o", str(tmp_path / "b"),
                 "--chunk-size", "2", "--no-progress"]) == 0
    assert json.loads((tmp_path / "b" / "synthmed.json").read_text())["runner"]["medigan_seed_chunk"] == 2
    assert (tmp_path / "b" / "image" / "000004.png").is_file()  # synthmed's own layout by default
    g = Generators(home, progress=False, chunk_size=1)
    g.generate("medigan-toy", 2, output_path=str(tmp_path / "c"), seed=0)
    assert json.loads((tmp_path / "c.synthmed.json").read_text())["runner"]["medigan_seed_chunk"] == 1
    # none set: chosen for the run (all 6 seeds in one call)
    (home / "site.toml").write_text(toml)
    Generators(home, progress=False).generate("medigan-toy", 6, output_path=str(tmp_path / "d"), seed=0)
    assert json.loads((tmp_path / "d.synthmed.json").read_text())["runner"]["medigan_seed_chunk"] == 6
    (home / "site.toml").write_text(toml + "\n[runner]\nmedigan_chunk = 0\n")
    with pytest.raises(ConfigError):
        load_settings(home)
    assert main(["--site", str(tmp_path / "site"), "generate", "medigan-toy", "-n", "1", "-o", str(tmp_path / "e"),
                 "--chunk-size", "0"]) == 1


def test_relative_output_folder_with_writer_threads(tmp_path: Path, medigan_toy,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """medigan's default folder is relative, and a medigan-1 package's generate() runs in a
    private working directory while writer threads write the previous batch: the files
    still land in the caller's folder."""
    from helpers.sites import make_site_home

    home = make_site_home(tmp_path / "site", [medigan_toy[0].data])
    monkeypatch.chdir(tmp_path)
    g = Generators(home, progress=False)
    g.generate("medigan-toy", 70, output_path="rel", seed=0, batch_size=8, chunk_size=4, writers=2)
    g.generate("medigan-toy", 40, seed=0, batch_size=8, chunk_size=4, writers=2)
    assert len(list((tmp_path / "rel").glob("batch_*.png"))) == 70
    assert g.last_output_path is not None and len(list((tmp_path / g.last_output_path).glob("*.png"))) == 40


def test_medigan_api_spells_medigan_ids_and_counts_executors(tmp_path: Path, medigan_toy) -> None:
    """The medigan API answers with medigan's own ids (``00101_TOY_MEDIGAN``; the default
    folder too) while synthmed's API keeps the lower-case id; generate registers the model's
    executor (``len(g)``), as medigan's does; find_models_and_rank's whole-value rule is
    said when nothing matches (issue #26)."""
    import logging

    from helpers.sites import make_site_home
    from synthmed.site import Site

    data = json.loads(json.dumps(medigan_toy[0].data))
    data["provenance"] = {"source": "medigan 1.0.0", "original_id": "00101_TOY_MEDIGAN"}
    data["modality"] = ["fundus photography"]
    home = make_site_home(tmp_path / "site", [data])
    g = Generators(home, mode="inline", progress=False)
    assert g.list_models() == ["00101_TOY_MEDIGAN"] and "00101_TOY_MEDIGAN" in g.list_models()
    assert [e.id for e in Site(home).list_models()] == ["medigan-toy"]  # synthmed's own API
    assert [m.model_id for m in g.find_matching_models_by_values(["lung", "dcgan"])] == ["00101_TOY_MEDIGAN"]
    assert g.rank_models_by_performance(metric="FID") == [{"model_id": "00101_TOY_MEDIGAN", "FID": 12.5}]
    assert g.rank_models_by_performance(["00101_TOY_MEDIGAN"], metric="FID")[0]["FID"] == 12.5
    assert g.get_models_by_key_value_pair("modality", "fundus photography") == [
        {"model_id": "00101_TOY_MEDIGAN", "modality": "fundus photography"}]
    assert g.get_selection_criteria_by_id("00101_toy_medigan", is_model_id_removed=False)["model_id"] == "00101_TOY_MEDIGAN"
    assert g.find_model(["dcgan"]) == "medigan-toy"  # synthmed's own method: synthmed's id
    assert len(g) == 0
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        g.generate("00101_TOY_MEDIGAN", 2, seed=0)
    finally:
        os.chdir(old)
    assert len(g) == 1 and g[0].id == "medigan-toy"
    assert g.last_output_path is not None and g.last_output_path.parent == Path("output") / "00101_TOY_MEDIGAN"
    g.get_as_torch_dataset("00101_TOY_MEDIGAN", 2, seed=0)
    assert len(g) == 1  # the same executor, not added twice
    # medigan's whole-value rule: "fundus" is not "fundus photography"; said where nothing matches
    records = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("synthmed").addHandler(handler)
    try:
        assert g.find_models_and_rank(["fundus"], metric="FID") == []
    finally:
        logging.getLogger("synthmed").removeHandler(handler)
    assert any("whole values" in r.getMessage() for r in records)
    assert [m.model_id for m in g.find_matching_models_by_values(["fundus photography"])] == ["00101_TOY_MEDIGAN"]
    assert [e.id for e in g.search("fundus")] == ["medigan-toy"]
    g.close()
