"""Site-local reference sets: hashed manifests, cached features, refusals by name."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthmed.registry.errors import EvaluationError
from synthmed.registry.measuring.evaluate import config_key
from synthmed.registry.measuring.extractors import FeatureExtractor, load_extractor_file
from synthmed.registry.measuring.reference_sets import add_reference, list_references, open_reference, reference_summaries
from synthmed.registry.settings import Settings

from helpers import REPO_ROOT

INDEX = REPO_ROOT / "index"


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    rec = load_extractor_file(INDEX / "extractors" / "randconv-224" / "1.0.0.json")
    return FeatureExtractor.from_file(rec, INDEX / "artefacts" / "extractors" / "randconv-224" / "1.0.0.safetensors")


def _images(folder: Path, n: int = 8) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        a = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(a if i % 2 else a[..., 0]).save(folder / f"{i}.png")
    return folder


def test_add_stores_manifest_and_features_and_identity_follows_the_files(tmp_path: Path,
                                                                           extractor: FeatureExtractor) -> None:
    settings = Settings(home=tmp_path / "site")
    src = _images(tmp_path / "imgs")
    os.symlink(src / "0.png", src / "link.png")  # links are skipped
    (src / "readme.txt").write_text("skipped")
    ref = add_reference(settings, "ct-2024", src, extractor=extractor, config_key=config_key(extractor))
    assert len(ref.files) == 8 and list_references(settings) == ["ct-2024"]
    feats = ref.features(extractor, config_key(extractor))
    assert feats.shape == (8, 224)
    (summary,) = reference_summaries(settings)
    assert summary["identity"] == ref.identity and summary["features"] == [config_key(extractor)]
    # the same files elsewhere have the same identity; a folder given directly stores nothing
    copy = shutil.copytree(src, tmp_path / "copy", symlinks=True)
    direct = open_reference(settings, str(copy))
    assert direct.identity == ref.identity and direct.folder is None
    with pytest.raises(EvaluationError, match="exists already"):
        add_reference(settings, "ct-2024", src)
    # a changed image is refused by name when features must be computed again
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(src / "3.png")
    stored = open_reference(settings, "ct-2024")
    shutil.rmtree(stored.folder / "features")  # type: ignore[operator]
    with pytest.raises(EvaluationError, match=r"3.png changed since the set was added"):
        stored.features(extractor, config_key(extractor))
    again = add_reference(settings, "ct-2024", src, replace=True)
    assert again.identity != ref.identity


@pytest.mark.parametrize("name", ["", "UPPER", "../x", "a/b", "-x", "x" * 65, "a b"])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(EvaluationError, match="not a valid reference-set name"):
        add_reference(Settings(home=tmp_path), name, tmp_path)


def test_bad_folders_and_images_are_refused_with_their_names(tmp_path: Path, extractor: FeatureExtractor) -> None:
    settings = Settings(home=tmp_path / "site")
    with pytest.raises(EvaluationError, match="not a folder"):
        add_reference(settings, "x", tmp_path / "missing")
    one = _images(tmp_path / "one", 1)
    with pytest.raises(EvaluationError, match="1 image file"):
        add_reference(settings, "x", one)
    bad = _images(tmp_path / "bad", 3)
    (bad / "broken.png").write_bytes(b"not a png")
    with pytest.raises(EvaluationError, match="cannot read image .*broken.png"):
        add_reference(settings, "x", bad, extractor=extractor, config_key=config_key(extractor))
    assert list_references(settings) == [] and not any(settings.references_dir.iterdir())
    with pytest.raises(EvaluationError, match="no reference set or folder 'nope'"):
        open_reference(settings, "nope")
