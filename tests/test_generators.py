"""medigan's one-line API on a synthmed site: a medigan-1 package built in medigan's own
layout runs through Generators().generate(...) with medigan's arguments."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.sites import make_site_home
from synthmed import Generators
from synthmed.registry.errors import ModelNotFound, ParamError, SiteNotFound, SynthmedError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy_gan, medigan_toy) -> Path:
    med, _, _ = medigan_toy
    toy, _, _ = toy_gan
    toy_data = dict(toy.data)
    toy_data["metrics"] = [{"name": "FID", "value": 30.0, "better": "lower", "source": "reported"},
                           {"name": "SSIM", "value": 0.7, "better": "higher", "source": "reported"}]
    med_data = dict(med.data)
    med_data["metrics"] = [{"name": "FID", "value": 20.0, "better": "lower", "source": "reported"},
                           {"name": "SSIM", "value": 0.5, "better": "higher", "source": "reported"}]
    med_data["modality"] = ["MMG"]
    med_data["tags"] = ["calcification"]
    h = make_site_home(tmp_path / "site", [med_data, toy_data])
    monkeypatch.chdir(tmp_path)
    return h


@pytest.mark.slow
def test_medigan_package_through_generate_with_medigan_arguments(home: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHMED_HOME", str(home))
    generators = Generators()  # the default site: SYNTHMED_HOME
    samples = generators.generate(model_id="medigan-toy", num_samples=4, save_images=False,
                                  install_dependencies=True, seed=0)
    assert isinstance(samples, list) and len(samples) == 4
    assert samples[0].shape == (6, 6, 1) and samples[0].dtype == np.uint8
    # an explicit seed reproduces; a custom arg changes the samples
    again = generators.generate("medigan-toy", 4, save_images=False, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(samples, again))
    shifted = generators.generate("medigan-toy", 4, save_images=False, shift=0.3, seed=0)
    assert not np.array_equal(samples[0], shifted[0])
    # no seed: fresh samples each call, and the drawn seed makes them again
    fresh = generators.generate("medigan-toy", 4, save_images=False)
    drawn = generators.last_seed
    assert drawn is not None and drawn != 0
    assert not any(np.array_equal(a, b) for a, b in zip(samples, fresh))
    assert all(np.array_equal(a, b) for a, b in
               zip(fresh, generators.generate("medigan-toy", 4, save_images=False, seed=drawn)))
    with pytest.raises(ParamError, match="unknown parameter"):
        generators.generate("medigan-toy", 1, save_images=False, image_size=128)

    # the same samples from a worker process
    worker = Generators(home, mode="worker").generate("medigan-toy", 4, save_images=False, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(samples, worker))

    # medigan's file names and return value; the chunk size is chosen per run and recorded
    assert generators.generate(model_id="medigan-toy", num_samples=4, output_path=str(tmp_path / "gen"),
                               seed=0) is None
    assert generators.last_output_path == tmp_path / "gen"
    assert sorted(p.name for p in (tmp_path / "gen").glob("*.png")) == [f"batch_0_{i}.png" for i in range(4)]
    img = np.asarray(Image.open(tmp_path / "gen" / "batch_0_2.png"))
    assert np.array_equal(img, samples[2][:, :, 0])
    # the folder holds only the images (a medigan loop opens every file as an image); the
    # provenance sits beside it, and no lock is left behind
    assert sorted(os.listdir(tmp_path / "gen")) == [f"batch_0_{i}.png" for i in range(4)]
    side = json.loads((tmp_path / "gen.synthmed.json").read_text())
    assert side["model"]["package_format"] == "medigan-1" and side["runner"]["medigan_seed_chunk"] == 4
    assert side["layout"] == "medigan" and side["seeds"]["first"] == 0
    # a set chunk size is another sample stream, recorded too; resuming with another is refused
    one = generators.generate("medigan-toy", 4, save_images=False, seed=0, chunk_size=1)
    assert not np.array_equal(one[1], samples[1])
    with pytest.raises(SynthmedError, match="chunk size 4"):
        generators.generate("medigan-toy", 4, output_path=str(tmp_path / "gen"), seed=0, chunk_size=1)
    # medigan's default output folder: a new one per call, fresh seeds each time
    generators.generate("medigan-toy", 2)
    first_seed = generators.last_seed
    generators.generate("medigan-toy", 2)
    runs = sorted(r for r in (tmp_path / "output" / "medigan-toy").iterdir() if r.is_dir())
    assert len(runs) == 2 and all(len(list(r.glob("batch_0_*.png"))) == 2 for r in runs)
    seeds = {json.loads((r.parent / f"{r.name}.synthmed.json").read_text())["seeds"]["first"] for r in runs}
    assert seeds == {first_seed, generators.last_seed} and len(seeds) == 2
    generators.close()


def test_search_rank_and_config(home: Path) -> None:
    g = Generators(home)
    assert g.list_models() == ["medigan-toy", "toy-gan"]
    assert g.get_config_by_id("medigan-toy", "package.format") == "medigan-1"  # the record's own paths
    assert g.get_config_by_id("toy-gan")["id"] == "toy-gan"
    # medigan's key paths, mapped onto record fields
    assert g.get_config_by_id("medigan-toy", "selection.performance.FID") == 20.0
    assert g.get_config_by_id("medigan-toy", "execution.generator.name") == "generate"
    assert g.get_config_by_id("medigan-toy", "selection.modality") == ["MMG"]
    with pytest.raises(KeyError):
        g.get_config_by_id("toy-gan", "package.nothing")
    # medigan's matching: a value equals a selection field or an item of a list field
    assert [m.model_id for m in g.find_matching_models_by_values(["mmg", "calcification"])] == ["medigan-toy"]
    assert [m.model_id for m in g.find_matching_models_by_values(["MMG", "CT"], "OR")] == ["medigan-toy", "toy-gan"]
    assert g.find_matching_models_by_values(["MMG"], is_case_sensitive=True)[0].model_id == "medigan-toy"
    assert g.find_matching_models_by_values(["mmg"], is_case_sensitive=True) == []
    assert [m.model_id for m in g.find_matching_models_by_values(["MMG", "CT"], "XOR")] == ["medigan-toy", "toy-gan"]
    assert [m.model_id for m in g.find_matching_models_by_values(["dcgan", "ct"])] == ["toy-gan"]
    assert g.find_matching_models_by_values(["calc"]) == []  # a part of a word is no match (medigan's rule)
    # ranking: ascending by the value unless order="desc", whatever the metric means (medigan's rule)
    assert g.rank_models_by_performance(metric="FID") == [{"model_id": "medigan-toy", "FID": 20.0},
                                                          {"model_id": "toy-gan", "FID": 30.0}]
    assert [r["model_id"] for r in g.rank_models_by_performance(metric="SSIM")] == ["medigan-toy", "toy-gan"]
    assert [r["model_id"] for r in g.rank_models_by_performance(metric="SSIM", order="desc")] == ["toy-gan",
                                                                                                  "medigan-toy"]
    assert g.rank_models_by_performance([], metric="FID") == []
    assert g.find_models_and_rank(["dcgan"], metric="FID")[0]["model_id"] == "medigan-toy"
    assert g.find_model(["calcification"]) == "medigan-toy"
    with pytest.raises(ModelNotFound, match="2 models match"):
        g.find_model(["dcgan"])
    assert g.find_model_and_generate(["dcgan"], num_samples=1) is None  # several: logged, None (medigan)
    out = g.find_models_rank_and_generate(["dcgan"], metric="SSIM", order="desc", num_samples=2, save_images=False)
    assert len(out) == 2 and out[0].shape == (8, 8)  # toy-gan ranks first on SSIM, descending


def test_generate_function_dataset_dataloader_visualize(home: Path, tmp_path: Path) -> None:
    g = Generators(home)
    fn = g.get_generate_function("toy-gan", num_samples=3, save_images=False, label="malignant", seed=0)
    first = fn()
    assert len(first) == 3 and np.array_equal(first[1], fn(seed=1, num_samples=1)[0])
    assert g.generate("toy-gan", 3, is_gen_function_returned=True, save_images=False)()[0].shape == (8, 8)
    unseeded = g.get_generate_function("toy-gan", num_samples=2, save_images=False, label="malignant")
    assert not np.array_equal(unseeded()[0], unseeded()[0])  # no seed: fresh samples per call

    # medigan's dataset items: {"sample": ndarray}
    ds = g.get_as_torch_dataset("toy-gan", num_samples=5, seed=10, label="malignant")
    assert len(ds) == 5
    item = ds[2]
    assert set(item) == {"sample"} and isinstance(item["sample"], np.ndarray)
    assert np.array_equal(item["sample"], g.generate("toy-gan", 1, save_images=False, seed=12, label="malignant")[0])
    plain = g.get_as_torch_dataset("toy-gan", num_samples=5, seed=10, label="malignant", item_format="synthmed")
    assert plain[2]["seed"] == 12 and np.array_equal(plain[2]["image"].numpy(), item["sample"])
    assert g.get_as_torch_dataset("toy-gan", num_samples=2, label="malignant").seed == g.last_seed

    # DataLoader: unseeded epochs differ, seeded epochs repeat
    dl = g.get_as_torch_dataloader(model_id="toy-gan", num_samples=7, batch_size=3, item_format="synthmed")
    batches = list(dl)
    assert [len(b["index"]) for b in batches] == [3, 3, 1]
    again = list(dl)
    assert len(dl.dataset.epoch_seeds) == 2 and dl.dataset.epoch_seeds[0] != dl.dataset.epoch_seeds[1]
    assert not np.array_equal(batches[0]["image"].numpy(), again[0]["image"].numpy())
    seeded = g.get_as_torch_dataloader(model_id="toy-gan", num_samples=4, batch_size=2, seed=3)
    e1, e2 = list(seeded), list(seeded)
    assert all(np.array_equal(a["sample"].numpy(), b["sample"].numpy()) for a, b in zip(e1, e2))
    assert e1[0]["sample"].shape == (2, 8, 8)
    # a model id as the first argument is the model, not a dataset; an int is medigan's short id
    positional = list(g.get_as_torch_dataloader("toy-gan", num_samples=7, batch_size=3, seed=0,
                                                item_format="synthmed"))
    assert [b["seed"].tolist() for b in positional] == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(SynthmedError, match="model id twice"):
        g.get_as_torch_dataloader("toy-gan", model_id="toy-gan")

    grid = g.visualize("toy-gan", num_samples=6, output_path=tmp_path / "grid.png")
    img = Image.open(grid)
    assert img.size[0] > 8 * 3 and img.mode == "L"


@pytest.mark.slow
def test_model_testing_and_contributing_delegate(home: Path) -> None:
    g = Generators(home)
    try:
        import synthmed.registry.checks.modeltest  # noqa: F401
    except ImportError:
        with pytest.raises(SynthmedError, match="model testing is not available"):
            g.test_model("toy-gan")
    else:
        result = g.test_model("toy-gan")
        assert getattr(result, "passed", None) is True, result
    try:
        import synthmed.registry.authoring.contribute  # noqa: F401
    except ImportError:
        with pytest.raises(SynthmedError, match="contributing is not available"):
            g.contribute("somewhere")


def test_first_time_user_without_a_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "fresh"))
    g = Generators()  # constructing is free: nothing is read until first use
    with pytest.raises(SiteNotFound) as ei:
        g.generate("ihc-patch-dcgan", num_samples=1)
    text = str(ei.value)
    assert "synthmed init" in text and " sync`" in text and str(tmp_path / "fresh") in text
    # a site.toml without a catalog: the hint is to sync
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "site.toml").write_text("")
    with pytest.raises(SiteNotFound, match="no catalog yet") as ei:
        Generators().list_models()
    assert f"synthmed --site {tmp_path / 'fresh'} sync" in str(ei.value)
