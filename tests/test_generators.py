"""medigan's one-line API on a synthmed site: a medigan-1 package built in medigan's own
layout runs through Generators().generate(...) with medigan's arguments."""

from __future__ import annotations

import json
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
                                  install_dependencies=True)
    assert isinstance(samples, list) and len(samples) == 4
    assert samples[0].shape == (6, 6, 1) and samples[0].dtype == np.uint8
    # reproducible: the same call gives the same list; a custom arg changes it
    again = generators.generate("medigan-toy", 4, save_images=False)
    assert all(np.array_equal(a, b) for a, b in zip(samples, again))
    shifted = generators.generate("medigan-toy", 4, save_images=False, shift=0.3)
    assert not np.array_equal(samples[0], shifted[0])
    with pytest.raises(ParamError, match="unknown parameter"):
        generators.generate("medigan-toy", 1, save_images=False, image_size=128)

    # the same samples from a worker process
    worker = Generators(home, mode="worker").generate("medigan-toy", 4, save_images=False)
    assert all(np.array_equal(a, b) for a, b in zip(samples, worker))

    folder = generators.generate(model_id="medigan-toy", num_samples=3, output_path=str(tmp_path / "gen"))
    assert Path(folder) == tmp_path / "gen"
    img = np.asarray(Image.open(tmp_path / "gen" / "image" / "000002.png"))
    assert np.array_equal(img, samples[2][:, :, 0])
    side = json.loads((tmp_path / "gen" / "synthmed.json").read_text())
    assert side["model"]["package_format"] == "medigan-1" and side["runner"]["medigan_seed_chunk"] == 16
    # medigan's default output folder
    default = generators.generate("medigan-toy", 2)
    assert Path(default) == Path("output") / "medigan-toy" and (tmp_path / "output" / "medigan-toy" / "synthmed.json").is_file()
    generators.close()


def test_search_rank_and_config(home: Path) -> None:
    g = Generators(home)
    assert g.list_models() == ["medigan-toy", "toy-gan"]
    assert g.get_config_by_id("medigan-toy", "package.format") == "medigan-1"
    assert g.get_config_by_id("toy-gan")["id"] == "toy-gan"
    with pytest.raises(KeyError):
        g.get_config_by_id("toy-gan", "package.nothing")
    assert [m.model_id for m in g.find_matching_models_by_values(["mmg", "calcification"])] == ["medigan-toy"]
    assert [m.model_id for m in g.find_matching_models_by_values(["MMG", "CT"], "OR")] == ["medigan-toy", "toy-gan"]
    assert g.find_matching_models_by_values(["MMG"], is_case_sensitive=True)[0].model_id == "medigan-toy"
    assert g.find_matching_models_by_values(["mmg"], is_case_sensitive=True) == []
    assert [m.model_id for m in g.find_matching_models_by_values(["MMG", "CT"], "XOR")] == ["medigan-toy", "toy-gan"]
    # ranking follows each metric's direction unless an order is given
    assert [r["model_id"] for r in g.rank_models_by_performance(metric="FID")] == ["medigan-toy", "toy-gan"]
    assert [r["model_id"] for r in g.rank_models_by_performance(metric="SSIM")] == ["toy-gan", "medigan-toy"]
    assert [r["model_id"] for r in g.rank_models_by_performance(metric="SSIM", order="asc")] == ["medigan-toy", "toy-gan"]
    assert g.find_models_and_rank(["toy"], metric="FID")[0]["model_id"] == "medigan-toy"
    assert g.find_model(["calcification"]) == "medigan-toy"
    with pytest.raises(ModelNotFound, match="2 models match"):
        g.find_model(["toy"])
    out = g.find_models_rank_and_generate(["toy"], metric="SSIM", num_samples=2, save_images=False)
    assert len(out) == 2 and out[0].shape == (8, 8)  # toy-gan ranks first on SSIM


def test_generate_function_dataset_dataloader_visualize(home: Path, tmp_path: Path) -> None:
    g = Generators(home)
    fn = g.get_generate_function("toy-gan", num_samples=3, save_images=False, label="malignant")
    first = fn()
    assert len(first) == 3 and np.array_equal(first[1], fn(seed=1, num_samples=1)[0])
    assert g.generate("toy-gan", 3, is_gen_function_returned=True, save_images=False)()[0].shape == (8, 8)

    ds = g.get_as_torch_dataset("toy-gan", num_samples=5, seed=10, label="malignant")
    assert len(ds) == 5
    item = ds[2]
    assert item["seed"] == 12 and np.array_equal(item["image"].numpy(), first[0] * 0 + g.generate(
        "toy-gan", 1, save_images=False, seed=12, label="malignant")[0])
    dl = g.get_as_torch_dataloader(model_id="toy-gan", num_samples=7, batch_size=3)
    batches = list(dl)
    assert [len(b["index"]) for b in batches] == [3, 3, 1]
    # a model id as the first argument is the model, not a dataset
    positional = list(g.get_as_torch_dataloader("toy-gan", num_samples=7, batch_size=3))
    assert [b["seed"].tolist() for b in positional] == [b["seed"].tolist() for b in batches]
    with pytest.raises(SynthmedError, match="model id twice"):
        g.get_as_torch_dataloader("toy-gan", model_id="toy-gan")

    grid = g.visualize("toy-gan", num_samples=6, output_path=tmp_path / "grid.png")
    img = Image.open(grid)
    assert img.size[0] > 8 * 3 and img.mode == "L"


@pytest.mark.slow
def test_model_testing_and_contributing_delegate(home: Path) -> None:
    g = Generators(home)
    try:
        import synthmed.registry.modeltest  # noqa: F401
    except ImportError:
        with pytest.raises(SynthmedError, match="model testing is not available"):
            g.test_model("toy-gan")
    else:
        result = g.test_model("toy-gan")
        assert getattr(result, "passed", None) is True, result
    try:
        import synthmed.registry.contribute  # noqa: F401
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
