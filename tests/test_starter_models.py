"""The starter models in index/: artefacts match their records, packages build from
their zips, outputs have the declared shapes/dtypes/ranges, samples do not depend on the
batch, the phantom's masks mark its lesions, and the medigan twin matches its original."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import random
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from synthmed.registry.records import load_record

REPO = Path(__file__).resolve().parent.parent
MODELS = ["ihc-patch-dcgan", "retina-patch-ddpm", "phantom-lesion", "ihc-patch-dcgan-medigan", "retina-patch-ldm",
          "retina-patch-dcgan", "retina-vessel-mask-tree"]
SYNTHMED_MODELS = ["ihc-patch-dcgan", "retina-patch-ddpm", "phantom-lesion", "retina-patch-ldm", "retina-patch-dcgan",
                   "retina-vessel-mask-tree"]
# small but real: the parameters each model is sampled with here
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "ihc-patch-dcgan": {},
    "retina-patch-ddpm": {"steps": 5, "label": "vessel"},
    "phantom-lesion": {"dims": 0, "lesion_count": 2},
    "retina-patch-ldm": {"steps": 5, "label": "vessel"},
    "retina-patch-dcgan": {},
    "retina-vessel-mask-tree": {},
}
ALLOWED_IMPORTS = {"torch", "numpy"} | set(sys.stdlib_module_names)


#: the version each starter is published as (retina-patch-ddpm 1.0.0 is kept as first published)
VERSIONS = {"retina-patch-ddpm": "1.0.1"}


def version_of(model_id: str) -> str:
    return VERSIONS.get(model_id, "1.0.0")


def record_path(model_id: str) -> Path:
    return REPO / "index" / "models" / model_id / f"{version_of(model_id)}.json"


def artefact_path(model_id: str) -> Path:
    return REPO / "index" / "artefacts" / model_id / f"{version_of(model_id)}.zip"


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for mid in MODELS:
        d = tmp_path_factory.mktemp(mid)
        with zipfile.ZipFile(artefact_path(mid)) as zf:
            zf.extractall(d)
        out[mid] = d
    return out


def import_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def built(unpacked: dict[str, Path]) -> dict[str, Any]:
    torch.set_num_threads(1)
    return {mid: import_file(f"starter_{mid.replace('-', '_')}", unpacked[mid] / "model.py").build(unpacked[mid], "cpu")
            for mid in SYNTHMED_MODELS}


# --- records and artefacts ------------------------------------------------------------


@pytest.mark.parametrize("model_id", MODELS)
def test_record_valid_and_artefact_pinned(model_id: str) -> None:
    rec = load_record(record_path(model_id))
    assert rec.id == model_id and rec.version == version_of(model_id)
    data = artefact_path(model_id).read_bytes()
    assert rec.sha256 == hashlib.sha256(data).hexdigest()
    assert rec.size == len(data)
    assert rec.sources == [f"index:artefacts/{model_id}/{version_of(model_id)}.zip"]
    assert len(data) < 5 * 1024 * 1024
    for m in rec.data.get("metrics", []):
        assert m["source"] == "measured" and m.get("method")
        assert "fid" not in m["name"].lower()


@pytest.mark.parametrize("model_id", MODELS)
def test_zip_is_reproducible(model_id: str) -> None:
    """Sorted entries and fixed timestamps: rebuilding from the same files gives the same bytes."""
    sys.path.insert(0, str(REPO / "recipes" / "_common"))
    try:
        import buildlib
    finally:
        sys.path.pop(0)
    with zipfile.ZipFile(artefact_path(model_id)) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names)
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
        files = {i.filename: zf.read(i) for i in infos}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "pkg"
        for name, content in files.items():
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_bytes(content)
        rebuilt = Path(tmp) / "re.zip"
        buildlib.deterministic_zip(d, rebuilt)
        assert rebuilt.read_bytes() == artefact_path(model_id).read_bytes()


@pytest.mark.parametrize("model_id", MODELS)
def test_package_code_imports_only_torch_numpy_stdlib(model_id: str, unpacked: dict[str, Path]) -> None:
    for py in unpacked[model_id].rglob("*.py"):
        tree = ast.parse(py.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                assert mod.split(".")[0] in ALLOWED_IMPORTS, f"{py.name} imports {mod}"
    assert not list(unpacked[model_id].rglob("*.pkl"))


# --- outputs --------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", SYNTHMED_MODELS)
def test_outputs_match_record(model_id: str, built: dict[str, Any]) -> None:
    rec = load_record(record_path(model_id))
    out = built[model_id].sample([3, 4], **FAST_PARAMS[model_id])
    assert set(out) == {o["name"] for o in rec.outputs}
    for o in rec.outputs:
        arr = out[o["name"]]
        shape = tuple(o["shape"]) + ((o["channels"],) if o["channels"] > 1 else ())
        assert arr.shape == (2,) + shape, o["name"]
        assert str(arr.dtype) == o["dtype"]
        assert o["value_range"][0] <= arr.min() and arr.max() <= o["value_range"][1]


@pytest.mark.parametrize("model_id", SYNTHMED_MODELS)
@pytest.mark.slow
def test_batch_invariance_1_vs_7(model_id: str, built: dict[str, Any]) -> None:
    m, params = built[model_id], FAST_PARAMS[model_id]
    if model_id == "phantom-lesion":
        params = {**params, "dims": 2}
    seeds = [11, 12, 13, 14, 15, 16, 17]
    batch = m.sample(seeds, **params)
    again = m.sample(seeds, **params)
    for i, s in enumerate(seeds):
        one = m.sample([s], **params)
        for k in batch:
            assert np.array_equal(one[k][0], batch[k][i]), (model_id, k, s)
            assert np.array_equal(again[k][i], batch[k][i])


def test_dcgan_batch_invariance_64(built: dict[str, Any]) -> None:
    m = built["ihc-patch-dcgan"]
    big = m.sample(list(range(64)))["image"]
    seven = np.concatenate([m.sample(list(range(i, min(i + 7, 64))))["image"] for i in range(0, 64, 7)])
    assert np.array_equal(big, seven)
    assert len({big[i].tobytes() for i in range(64)}) == 64  # not a collapsed generator


def test_vessel_tree_masks_are_trees_and_width_scale_is_checked(built: dict[str, Any]) -> None:
    m = built["retina-vessel-mask-tree"]
    masks = m.sample(list(range(32)))["mask"]
    assert set(np.unique(masks)) <= {0, 1} and 0.05 < masks.mean() < 0.35  # real training masks: 0.15
    assert len({x.tobytes() for x in masks}) > 28  # samples differ (a few may be empty windows)
    wide = m.sample(list(range(32)), width_scale=1.6)["mask"]
    assert wide.mean() > masks.mean() * 1.2
    with pytest.raises(ValueError, match="width_scale must lie in 0.5..2.0"):
        m.sample([0], width_scale=3.0)


def test_every_published_dualgan_record_rebuilds_byte_for_byte() -> None:
    """Every published version of the dual-GAN's records rebuilds byte for byte from
    recipes/dualgan_records.py and the metrics file it was published with (metrics-1.0.0.json,
    metrics-1.1.0.json, metrics.json for the newest), so a new version's numbers never leak
    into an older record."""
    sys.path.insert(0, str(REPO / "recipes"))
    try:
        import dualgan_records as dr
        import records
    finally:
        sys.path.pop(0)
    # recipes/records.py writes each dual-GAN id's newest record at its newest version's path
    assert {mid: records.version_of(mid) for mid in dr.NEWEST} == dr.NEWEST
    on_disk = {(p.parent.name, p.stem) for mid in dr.NEWEST for p in (REPO / "index" / "models" / mid).glob("*.json")}
    assert on_disk == set(dr.PUBLISHED)  # no record in the index without a builder, no builder without a record
    for (mid, version), build in dr.PUBLISHED.items():
        rec = build()
        assert rec["version"] == version, (mid, version)
        text = json.dumps(rec, indent=2, ensure_ascii=False) + "\n"
        assert text == (REPO / "index" / "models" / mid / f"{version}.json").read_text(encoding="utf-8"), (mid, version)


def test_dualgan_dataset_cards_rebuild_from_their_f1_tables() -> None:
    """retina-vessel-pairs 1.1.0's and 1.2.0's titles, descriptions and cards are what
    recipes/retina-vessel-dualgan/dataset_metadata.py writes from the F1 table each was
    published with (f1-table-1.2.0.json, f1-table.json): the cards' numbers are the recipe's."""
    sys.path.insert(0, str(REPO / "recipes" / "retina-vessel-dualgan"))
    try:
        import dataset_metadata
    finally:
        sys.path.pop(0)
    recipe = REPO / "recipes" / "retina-vessel-dualgan"
    for version, table, edition, form in (("1.1.0", "f1-table-1.2.0.json", "second", 1),
                                          ("1.2.0", "f1-table.json", "third", 2)):
        rec = json.loads((REPO / "index" / "datasets" / "retina-vessel-pairs" / f"{version}.json").read_text())
        md = dataset_metadata.metadata(json.loads((recipe / table).read_text()), rec["generation"]["count"], edition,
                                       form)
        for key in ("title", "summary", "description", "license", "card"):
            assert md[key] == rec[key], (version, key)


def test_every_starter_record_rebuilds_byte_for_byte() -> None:
    """`python recipes/records.py` rewrites no published record: each builder's output is
    the file in the index at the version it writes (a text edit in a builder, such as a
    renamed module in a method, would otherwise change a merged record)."""
    sys.path.insert(0, str(REPO / "recipes"))
    try:
        import records
    finally:
        sys.path.pop(0)
    for mid, build in records.BUILDERS.items():
        version = records.version_of(mid)
        text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        assert text == (REPO / "index" / "models" / mid / f"{version}.json").read_text(encoding="utf-8"), (mid, version)


def test_retina_params_are_checked_and_labels_differ(built: dict[str, Any]) -> None:
    m = built["retina-patch-ddpm"]
    for bad in ({"steps": 4}, {"steps": 251}, {"label": "tumour"}, {"guidance": -1}, {"colour": 1}):
        with pytest.raises((ValueError, TypeError)):
            m.sample([0], **bad)
    v = m.sample([0, 1], steps=5, label="vessel")["image"]
    b = m.sample([0, 1], steps=5, label="background")["image"]
    assert not np.array_equal(v, b)


def test_phantom_masks_are_binary_and_mark_lesions(built: dict[str, Any]) -> None:
    m = built["phantom-lesion"]
    for contrast in (60.0, -60.0):
        out = m.sample([0, 1, 2], lesion_count=3, contrast_hu=contrast, noise_hu=5)
        for img_key, mask_key in (("image", "mask"), ("volume", "volume_mask")):
            for img, mask in zip(out[img_key], out[mask_key]):
                assert set(np.unique(mask)) <= {0, 1}
                assert mask.any()
                inside = img[mask == 1].astype(np.float64).mean()
                ring = _dilate(_dilate(mask.astype(bool))) & ~_dilate(mask.astype(bool))
                outside = np.median(img[ring])
                # lesion lies where the mask is, with the asked-for sign and at least a third of the contrast
                assert (inside - outside) * np.sign(contrast) > abs(contrast) / 3, (img_key, inside, outside)
    none = m.sample([0], lesion_count=0)
    assert not none["mask"].any() and not none["volume_mask"].any()
    only2 = m.sample([5], dims=2)
    both = m.sample([5], dims=0)
    assert np.array_equal(only2["image"], both["image"]) and not only2["volume_mask"].any()


def _dilate(m: np.ndarray) -> np.ndarray:
    out = m.copy()
    for ax in range(m.ndim):
        out |= np.roll(m, 1, ax) | np.roll(m, -1, ax)
    return out


# --- the medigan twin -----------------------------------------------------------------


def test_medigan_twin_matches_synthmed_package(unpacked: dict[str, Path], built: dict[str, Any],
                                               tmp_path: Path) -> None:
    twin = import_file("starter_ihc_medigan_twin", unpacked["ihc-patch-dcgan-medigan"] / "__init__.py")
    model_file = str(unpacked["ihc-patch-dcgan-medigan"] / "model.pt")
    ref = built["ihc-patch-dcgan"].sample([0, 1, 2])["image"]
    got = []
    for s in (0, 1, 2):
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)
        imgs = twin.generate(model_file, 1, str(tmp_path / "unused"), save_images=False)
        assert isinstance(imgs, list) and imgs[0].shape == (64, 64, 3) and imgs[0].dtype == np.uint8
        got.append(imgs[0])
    assert np.array_equal(np.stack(got), ref)
    assert twin.generate(model_file, 3, str(tmp_path / "png"), save_images=True, seed=7) is None
    pngs = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert pngs == ["0.png", "1.png", "2.png"]
    assert (tmp_path / "png" / "0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_medigan_twin_through_the_sdk_is_pixel_identical_with_chunk_size_1(tmp_path: Path) -> None:
    """docs/models.md: through the SDK with chunk size 1 the twin gives ihc-patch-dcgan's
    pixels; with the chunk size chosen per run it is another sample stream."""
    from synthmed.registry.packages import prepare_archive
    from synthmed.registry.runner import RunnerOptions
    from synthmed.site import Model

    def model(model_id: str, **options: Any) -> Model:
        rec = load_record(record_path(model_id))
        package = prepare_archive(rec, artefact_path(model_id), tmp_path / "packages")
        return Model(package, RunnerOptions(device="cpu", mode="inline", **options))

    original = model("ihc-patch-dcgan").sample(5, seed=3)["image"]
    twin = model("ihc-patch-dcgan-medigan", medigan_chunk=1)
    assert np.array_equal(twin.sample(5, seed=3)["image"], original)
    out = twin.generate_to(tmp_path / "twin", 5, format="npy", seed=3)
    assert json.loads(out.sidecar.read_text())["runner"]["medigan_seed_chunk"] == 1
    chosen = model("ihc-patch-dcgan-medigan").sample(5, seed=3)["image"]  # chunk 5, chosen for the run
    assert chosen.shape == original.shape and not np.array_equal(chosen, original)


# --- through synthmed's own model test (inline runner) --------------------------------------


@pytest.mark.parametrize("model_id", MODELS)
@pytest.mark.slow
def test_synthmed_model_test_passes(model_id: str, tmp_path: Path) -> None:
    from synthmed.registry.checks.modeltest import test_model as run_model_test
    from synthmed.registry.packages import prepare_archive
    from synthmed.registry.runner import RunnerOptions

    rec = load_record(record_path(model_id))
    package = prepare_archive(rec, artefact_path(model_id), tmp_path / "packages")  # checks the index's pin
    result = run_model_test(package, RunnerOptions(device="cpu", mode="inline"), num_samples=3)
    assert result.status == "passed", json.dumps([c.as_dict() for c in result.checks], indent=1)[:2000]
