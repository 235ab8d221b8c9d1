"""Published datasets on a site (#24 items 3-6): sync (validated, bound like models, tied to
the model the index holds), mirroring through the store, `dataset list/show/get/verify`,
the torch Dataset over a mirrored dataset, search, and the serve pages with downstream
mirroring. The datasets are made here with the SDK and ``dataset_archive.pack`` (the
``dataset create``/``publish`` commands live on another branch)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synthmed.cli import main
from synthmed.registry.artefacts.store import Store
from synthmed.registry.catalog import Catalog
from synthmed.registry.errors import BlobCorrupt, ConfigError
from synthmed.registry.settings import Settings, load_settings

from helpers import published as hp


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A scratch index with ihc-patch-dcgan, a site following it, and the run
    ``-n 16 --seed 7`` published as ihc-s7@1.0.0, synced."""
    root = tmp_path_factory.mktemp("ds")
    index = hp.scratch_index(root)
    home = root / "site"
    assert main(["init", str(home), "--upstream", f"public={index}"]) == 0
    assert main(["--site", str(home), "sync"]) == 0
    run = root / "run"
    assert main(["--site", str(home), "generate", "ihc-patch-dcgan", "-n", "16", "--seed", "7", "--format", "png",
                 "-o", str(run)]) == 0
    record = hp.publish(index, run)
    assert main(["--site", str(home), "sync"]) == 0
    return {"root": root, "index": index, "home": home, "run": run, "record": record,
            "settings": load_settings(home)}


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def test_sync_lists_the_dataset_mirrored(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    site = str(world["home"])
    (row,) = _json(capsys, "--site", site, "dataset", "list", "--json")
    assert row["ref"] == "public/ihc-s7@1.0.0" and row["model"] == "ihc-patch-dcgan@1.0.0"
    assert row["count"] == 16 and row["outputs"] == ["image"] and row["license"] == "MIT"
    assert row["audit"] == "pass" and row["mirrored"] is True
    assert Store(world["settings"].store_dir).has(world["record"]["artefact"]["sha256"])
    shown = _json(capsys, "--site", site, "dataset", "show", "ihc-s7@1.0.0", "--json")
    assert shown["provenance"]["first_seed"] == 7 and shown["provenance"]["model"] == "public/ihc-patch-dcgan@1.0.0"
    assert shown["sha256"] == world["record"]["artefact"]["sha256"] and shown["card"]["limitations"]
    assert main(["--site", site, "dataset", "show", "ihc-s8"]) != 0
    assert "no dataset 'ihc-s8'" in capsys.readouterr().err


def test_get_gives_the_same_files_and_refuses_a_non_empty_folder(world: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "copy"
    assert main(["--site", str(world["home"]), "dataset", "get", "ihc-s7", "-o", str(out)]) == 0
    manifest = json.loads((out / "synthmed.manifest.json").read_text())
    assert len(manifest["files"]) == 16
    for rel in manifest["files"]:
        assert (out / rel).read_bytes() == (world["run"] / rel).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no staging folder left
    assert main(["--site", str(world["home"]), "dataset", "get", "ihc-s7", "-o", str(out)]) != 0


def test_verify_all_passes(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    report = _json(capsys, "--site", str(world["home"]), "dataset", "verify", "ihc-s7", "--samples", "all", "--json")
    assert report["passed"] and report["picked"] == list(range(16))
    assert {f["outcome"] for item in report["items"] for f in item["files"]} == {"identical"}
    assert [item["seed"] for item in report["items"]] == list(range(7, 23))


def _synced(world: dict[str, Any], run: Path, dataset_id: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Publish ``run`` as ``dataset_id`` in the world's index and sync its site; the site folder."""
    hp.publish(world["index"], run, dataset_id=dataset_id)
    site = str(world["home"])
    assert main(["--site", site, "sync"]) == 0
    capsys.readouterr()
    return site


def test_a_changed_byte_makes_verify_fail_naming_the_item(world: dict[str, Any],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    site = _synced(world, hp.tamper_png(world["run"], "image/000005.png"), "ihc-s7-edited", capsys)
    assert main(["--site", site, "dataset", "verify", "ihc-s7-edited", "--samples", "all"]) == 1
    out, err = capsys.readouterr()
    assert "image/000005.png: DIFFERENT" in out and "item(s) 5 were not made by" in err
    assert "image/000004.png: identical" in out


def test_a_verifier_may_accept_one_grey_level_and_the_report_says_so(world: dict[str, Any],
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # what another CPU's kernels did to the dual-GAN's images: one value one grey level off
    site = _synced(world, hp.nudge_png(world["run"], "image/000003.png"), "ihc-s7-nudged", capsys)
    assert main(["--site", site, "dataset", "verify", "ihc-s7-nudged", "--samples", "all"]) == 1
    assert "image/000003.png: DIFFERENT (max diff 1)" in capsys.readouterr().out
    report = _json(capsys, "--site", site, "dataset", "verify", "ihc-s7-nudged", "--samples", "all", "--max-abs", "1",
                   "--json")
    assert report["passed"] and (report["tolerance"], report["tolerance_source"]) == ({"max_abs": 1.0}, "verifier")
    outcomes = {f["file"]: f["outcome"] for item in report["items"] for f in item["files"]}
    assert outcomes.pop("image/000003.png") == "within tolerance" and set(outcomes.values()) == {"identical"}
    assert main(["--site", site, "dataset", "verify", "ihc-s7-nudged", "--samples", "all", "--max-abs", "1"]) == 0
    out = capsys.readouterr().out
    assert "tolerance: max |diff| 1, given with --max-abs (the record declares none" in out
    assert main(["--site", site, "dataset", "verify", "ihc-s7-nudged", "--samples", "all", "--max-abs", "0.5"]) == 1
    assert main(["--site", site, "dataset", "verify", "ihc-s7-nudged", "--max-abs", "nan"]) == 1
    assert "a tolerance is a number >= 0" in capsys.readouterr().err


def test_a_tampered_store_blob_is_refused_by_get(world: dict[str, Any], tmp_path: Path) -> None:
    from synthmed.site import Site

    settings: Settings = world["settings"]
    sha = world["record"]["artefact"]["sha256"]
    path = Store(settings.store_dir).blob_path(sha)
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    try:
        with pytest.raises(BlobCorrupt, match="hashes to .* not to the record's"):
            Site(settings=settings).dataset("ihc-s7").get(tmp_path / "out")
        assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
    finally:
        path.write_bytes(original)
        path.chmod(0o444)


def test_torch_dataset_over_the_mirrored_copy(world: dict[str, Any]) -> None:
    import numpy as np

    from synthmed import Generators
    from synthmed.site import Site

    ds = Site(settings=world["settings"]).dataset("ihc-s7").torch_dataset()
    assert len(ds) == 16
    item = ds[3]
    assert set(item) == {"image", "index", "seed"} and item["seed"] == 10 and item["index"] == 3
    assert tuple(item["image"].shape) == (64, 64, 3) and item["image"].dtype.is_floating_point is False
    from synthmed.registry.array_inputs import read_file

    assert np.array_equal(item["image"].numpy(), read_file(world["run"] / "image" / "000003.png"))
    loader = Generators(site=world["home"]).get_as_torch_dataloader(published="ihc-s7@1.0.0", batch_size=4)
    batch = next(iter(loader))
    assert tuple(batch["image"].shape) == (4, 64, 64, 3) and batch["seed"].tolist() == [7, 8, 9, 10]


def test_search_finds_datasets(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    site = str(world["home"])
    found = _json(capsys, "--site", site, "search", "--datasets", "colon", "--json")
    assert "public/ihc-s7@1.0.0" in [d["ref"] for d in found]
    assert _json(capsys, "--site", site, "search", "--datasets", "--modality", "CT", "--json") == []
    for modality in ("SM", "ihc", "Histopathology"):  # the vocabulary's code, the record's words
        found = _json(capsys, "--site", site, "search", "--datasets", "--modality", modality, "--json")
        assert "public/ihc-s7@1.0.0" in [d["ref"] for d in found], modality
    by_model = _json(capsys, "--site", site, "dataset", "list", "--model", "ihc-patch-dcgan", "--json")
    assert "public/ihc-s7@1.0.0" in [d["ref"] for d in by_model]


def test_a_dataset_of_a_model_the_index_lacks_is_skipped(world: dict[str, Any], tmp_path: Path) -> None:
    record = hp.dataset_record(world["run"], world["record"]["artefact"]["sha256"],
                               world["record"]["artefact"]["size"], dataset_id="ihc-orphan", version="1.0.0",
                               source=world["record"]["artefact"]["sources"][0],
                               model={"id": "ihc-patch-dcgan", "version": "9.9.9",
                                      "sha256": world["record"]["model"]["sha256"]})
    hp.write_dataset(world["index"], record, "a dataset of a model version the index lacks")
    wrong = dict(record, id="ihc-wrongsha", model={**record["model"], "version": "1.0.0", "sha256": "0" * 64})
    hp.write_dataset(world["index"], wrong, "a dataset naming another package")
    settings: Settings = world["settings"]
    from helpers.sites import sync

    (res,) = sync(settings)
    reasons = dict(res.skipped)
    assert "ihc-patch-dcgan@9.9.9 is not in upstream 'public'" in reasons["datasets/ihc-orphan/1.0.0.json"]
    assert "were not made by the model this index holds" in reasons["datasets/ihc-wrongsha/1.0.0.json"]
    with Catalog.open(settings.catalog_path) as cat:
        assert {d.id for d in cat.datasets.list_datasets()} >= {"ihc-s7"}
        assert not {"ihc-orphan", "ihc-wrongsha"} & {d.id for d in cat.datasets.list_datasets()}
        assert any(p["path"] == "datasets/ihc-orphan/1.0.0.json" for p in cat.models.problems("public"))


def test_a_rewrite_of_a_merged_dataset_version_is_refused(world: dict[str, Any], tmp_path: Path) -> None:
    settings: Settings = world["settings"]
    from helpers.sites import sync

    rewritten = dict(world["record"], title="A different title", generation={**world["record"]["generation"],
                                                                             "first_seed": 8})
    hp.write_dataset(world["index"], rewritten, "rewrite ihc-s7@1.0.0")
    (res,) = sync(settings)
    (reason,) = [r for p, r in res.skipped if p == "datasets/ihc-s7/1.0.0.json"]
    assert "a merged dataset version is immutable" in reason and "generation, title" in reason
    with Catalog.open(settings.catalog_path) as cat:
        kept = cat.datasets.resolve("ihc-s7@1.0.0")
        assert kept.record.generation["first_seed"] == 7 and kept.record.data["title"] != "A different title"
    # a fresh site syncing the same history serves the version as first accepted
    fresh = tmp_path / "fresh"
    assert main(["init", str(fresh), "--upstream", f"public={world['index']}"]) == 0
    (res,) = sync(load_settings(fresh))
    assert "datasets/ihc-s7/1.0.0.json" in dict(res.skipped)
    with Catalog.open(load_settings(fresh).catalog_path) as cat:
        assert cat.datasets.resolve("ihc-s7@1.0.0").record.generation["first_seed"] == 7
    # a change of a mutable field (the card) is taken
    hp.write_dataset(world["index"], dict(world["record"], card={"intended_use": "tests, again",
                                                                 "limitations": "16 patches only"}), "card")
    (res,) = sync(settings)
    assert not [p for p, _ in res.skipped if p == "datasets/ihc-s7/1.0.0.json"]
    with Catalog.open(settings.catalog_path) as cat:
        assert cat.datasets.resolve("ihc-s7@1.0.0").record.data["card"]["intended_use"] == "tests, again"


def test_a_generation_8_catalog_gains_the_datasets_at_the_next_sync(world: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    home = tmp_path / "old"
    shutil.copytree(world["home"], home, ignore=shutil.ignore_patterns("store", "packages"))
    conn = sqlite3.connect(home / "catalog.db")
    for table in ("datasets_fts", "datasets", "dataset_accepted", "dataset_sync"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version=8")
    conn.commit()
    conn.close()
    assert main(["--site", str(home), "sync", "--no-mirror"]) == 0  # a no-op sync of the models
    with Catalog.open(home / "catalog.db") as cat:
        assert cat.generation() == 10 and "ihc-s7" in {d.id for d in cat.datasets.list_datasets()}


def test_mirror_policy_for_datasets(world: dict[str, Any]) -> None:
    from synthmed.daemon.dataset_mirror import dataset_selected
    from synthmed.daemon.jobs import selected
    from synthmed.registry.settings import MirrorPolicy

    with Catalog.open(world["settings"].catalog_path) as cat:
        entry = cat.datasets.resolve("ihc-s7")
        assert dataset_selected(MirrorPolicy(), entry, cat, selected)  # default: its model is mirrored
        assert not dataset_selected(MirrorPolicy(policy="none"), entry, cat, selected)
        assert dataset_selected(MirrorPolicy(policy="none", dataset_ids=("ihc-*",)), entry, cat, selected)
        assert not dataset_selected(MirrorPolicy(datasets="select", dataset_ids=("retina-*",)), entry, cat, selected)
        assert not dataset_selected(MirrorPolicy(datasets="none"), entry, cat, selected)
    with pytest.raises(ConfigError, match="datasets"):
        from helpers.sites import write_site

        write_site(world["root"] / "badpolicy", [{"name": "p", "url": str(world["index"])}],
                   mirror={"datasets": "some"})


def test_serve_pages_and_downstream_mirroring(world: dict[str, Any], tmp_path: Path) -> None:
    from helpers.serving import serving
    from test_serve import request

    settings: Settings = world["settings"]
    sha = world["record"]["artefact"]["sha256"]
    with serving(settings) as url:
        status, _, body = request(url, "GET", "/dataset/public/ihc-s7")
        html = body.decode()
        assert status == 200 and sha in html and 'id="audit-badge"' in html and "audit: pass" in html
        assert 'href="/model/public/ihc-patch-dcgan/1.0.0"' in html and "licence MIT" in html
        assert f'href="/store/blobs/sha256/{sha[:2]}/{sha[2:]}"' in html and "seed 7 + <i>i</i>" in html
        assert "/dataset/public/ihc-s7/1.0.0/item/11/image.png" in html and "item/12/" not in html
        status, headers, png = request(url, "GET", "/dataset/public/ihc-s7/1.0.0/item/3/image.png")
        assert status == 200 and headers["content-type"] == "image/png"
        assert png == (world["run"] / "image" / "000003.png").read_bytes()
        assert request(url, "GET", "/dataset/public/ihc-s7/1.0.0/item/3.png")[2] == png  # the first output
        assert request(url, "GET", "/dataset/public/ihc-s7/1.0.0/item/16.png")[0] == 404
        status, _, body = request(url, "GET", "/dataset/public/ihc-s7/1.0.0/item/3/mask.png")
        assert status == 404 and b"no output" in body  # only the record's outputs are served
        assert request(url, "GET", "/dataset/public/no-such-set")[0] == 404
        _, _, body = request(url, "GET", "/model/public/ihc-patch-dcgan")
        assert 'href="/dataset/public/ihc-s7/1.0.0"' in body.decode()  # the model links its datasets
        _, _, body = request(url, "GET", "/?q=colon")
        assert 'data-dataset="public/ihc-s7@1.0.0"' in body.decode()
        # a downstream site follows this one's accepted index and mirrors the dataset from /store
        down = tmp_path / "down"
        assert main(["init", str(down), "--upstream", f"a={url}/git/public#main"]) == 0
        toml = down / "site.toml"
        toml.write_text(toml.read_text().replace("\n# mirrors = ", f'\nmirrors = ["mirror:{url}/store"]  # was: '))
        assert main(["--site", str(down), "sync"]) in (0, 4)  # 4: records the other tests made bad were refused
    with Catalog.open(down / "catalog.db") as cat:
        entry = cat.datasets.resolve("ihc-s7")
        assert entry.mirrored and entry.upstream == "a"
        (row,) = [a for a in cat.artefacts.rows() if a["sha256"] == sha]
        assert str(row["source"]).startswith("mirror:")
    assert Store(load_settings(down).store_dir).has(sha)


def test_compare_bytes_then_arrays_within_the_declared_tolerance(tmp_path: Path) -> None:
    import numpy as np

    from synthmed.published_verify import DIFFERENT, IDENTICAL, WITHIN, compare, pick

    a = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    paths = {}
    for name, arr in (("a", a), ("same", a.copy()), ("near", a + 1e-4), ("far", a + 0.2), ("shape", a[:4])):
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    tol = {"max_abs": 1e-3, "mean_abs": 1e-3}
    assert compare([paths["a"]], [paths["same"]], "x.npy", None, 1 << 20).outcome == IDENTICAL
    near = compare([paths["a"]], [paths["near"]], "x.npy", tol, 1 << 20)
    assert near.outcome == WITHIN and near.max_abs is not None and 0 < near.max_abs < 1e-3
    assert compare([paths["a"]], [paths["near"]], "x.npy", None, 1 << 20).outcome == DIFFERENT  # no tolerance: equal only
    far = compare([paths["a"]], [paths["far"]], "x.npy", tol, 1 << 20)
    assert far.outcome == DIFFERENT and "max |diff| 0.2" in far.detail
    assert "shape" in compare([paths["a"]], [paths["shape"]], "x.npy", tol, 1 << 20).detail
    garbage = tmp_path / "bad.npy"
    garbage.write_bytes(b"not an array")
    assert "cannot be decoded" in compare([garbage], [paths["a"]], "x.npy", tol, 1 << 20).detail
    assert pick(16, "all", 0) == list(range(16))
    assert pick(16, 4, 3) == pick(16, "4", 3) and len(set(pick(16, 4, 3))) == 4 and pick(16, 4, 3) != pick(16, 4, 4)
    with pytest.raises(ConfigError, match="--samples"):
        pick(16, "some", 0)


def test_nifti_items_are_compared_decoded_with_their_geometry(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    from synthmed.published_verify import DIFFERENT, IDENTICAL, compare

    vol = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    first, second, moved = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz", tmp_path / "c.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), first)
    img = nib.Nifti1Image(vol, np.eye(4))
    img.header["descrip"] = b"made at another time"  # other bytes, same voxels and geometry
    nib.save(img, second)
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    nib.save(nib.Nifti1Image(vol, shifted), moved)
    assert first.read_bytes() != second.read_bytes()
    assert compare([first], [second], "v/000000.nii.gz", None, 1 << 20).outcome == IDENTICAL
    assert "geometry" in compare([first], [moved], "v/000000.nii.gz", None, 1 << 20).detail
    assert compare([first], [moved], "v/000000.nii.gz", None, 1 << 20).outcome == DIFFERENT


def test_catalog_rebuild_gives_the_same_datasets(world: dict[str, Any]) -> None:
    settings: Settings = world["settings"]
    with Catalog.open(settings.catalog_path) as cat:
        before = cat.snapshot()["datasets"]
    assert before and main(["--site", str(world["home"]), "catalog", "rebuild"]) == 0
    with Catalog.open(settings.catalog_path) as cat:
        assert cat.snapshot()["datasets"] == before
        assert cat.datasets.resolve("ihc-s7").mirrored  # the blob's state comes back from the store


def test_deleted_and_re_added_dataset_versions(world: dict[str, Any]) -> None:
    """A deletion withdraws a dataset; a version added and deleted between two syncs is bound
    all the same, so re-adding it with other content is refused."""
    import git

    from helpers.sites import sync

    settings: Settings = world["settings"]
    rec = dict(world["record"], id="ihc-tmp", title="Temporary")
    hp.write_dataset(world["index"], rec, "add ihc-tmp")
    repo = git.Repo(world["index"])
    repo.git.rm("datasets/ihc-tmp/1.0.0.json")
    repo.git.commit("-m", "remove ihc-tmp")
    sync(settings)
    with Catalog.open(settings.catalog_path) as cat:
        assert "ihc-tmp" not in {d.id for d in cat.datasets.list_datasets()}
    hp.write_dataset(world["index"], dict(rec, title="Temporary, other items"), "re-add ihc-tmp, changed")
    (res,) = sync(settings)
    assert "a merged dataset version is immutable" in dict(res.skipped)["datasets/ihc-tmp/1.0.0.json"]
    hp.write_dataset(world["index"], dict(world["record"], id="ihc-gone"), "add ihc-gone")
    sync(settings)
    repo.git.rm("datasets/ihc-gone/1.0.0.json")
    repo.git.commit("-m", "remove ihc-gone")
    sync(settings)
    with Catalog.open(settings.catalog_path) as cat:
        assert "ihc-gone" not in {d.id for d in cat.datasets.list_datasets()}


def test_export_and_import_carry_the_dataset_blobs(world: dict[str, Any], tmp_path: Path) -> None:
    settings: Settings = world["settings"]
    sha = world["record"]["artefact"]["sha256"]
    assert main(["--site", str(world["home"]), "export", str(tmp_path / "bundle")]) == 0
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert sha in {b["sha256"] for b in manifest["blobs"]}
    offline = tmp_path / "offline"
    assert main(["init", str(offline)]) == 0
    assert main(["--site", str(offline), "import", str(tmp_path / "bundle")]) == 0
    assert Store(load_settings(offline).store_dir).has(sha)
    with Catalog.open(offline / "catalog.db") as cat, Catalog.open(settings.catalog_path) as here:
        assert cat.snapshot()["datasets"] == here.snapshot()["datasets"]


def test_a_volume_thumbnail_is_drawn_as_the_models_previews_draw_it() -> None:
    """A decoded dataset item is drawn through the model's output spec (outputs.preview: the
    middle slice, CT through its window), min..max only when the site lacks the model."""
    import io as _io

    from PIL import Image

    from synthmed.serve.dataset_pages import _picture_png
    from synthmed.registry.outputs import output_specs, preview

    (spec,) = output_specs([{"name": "volume", "kind": "volume", "dims": 3, "shape": [8, 16, 16], "dtype": "int16",
                             "channels": 1, "value_range": [-1024, 3071]}], ["CT"], ["head"])
    vol = np.full((8, 16, 16), -1000, np.int16)
    vol[:, 4:12, 4:12] = 30  # brain
    vol[4, 6:9, 6:9] = 70  # a lesion in the middle slice
    drawn = np.asarray(Image.open(_io.BytesIO(_picture_png(vol, spec))))
    assert np.array_equal(drawn, preview(vol, spec))
    assert spec.window is not None and drawn[7, 7] > drawn[5, 5] > drawn[0, 0]  # windowed: the lesion stands out
    vol[2, 10:12, 10:12] = 70  # another lesion, two slices from the end
    at2 = np.asarray(Image.open(_io.BytesIO(_picture_png(vol, spec, plane=2))))
    assert np.array_equal(at2, preview(vol[2:3], spec)) and at2[10, 10] == drawn[7, 7] and drawn[10, 10] < at2[10, 10]
    plain = np.asarray(Image.open(_io.BytesIO(_picture_png(vol, None))))
    assert plain.shape == (16, 16) and plain[7, 7] == 255 and plain[0, 0] == 0


def test_picked_items_are_re_derived_in_runs_of_consecutive_indices() -> None:
    from synthmed.published_verify import runs

    assert runs([0, 1, 2, 5, 7, 8]) == [(0, 3), (5, 6), (7, 9)]
    assert runs(list(range(400))) == [(0, 400)]  # --samples all: one generation run
    assert runs([0, 1, 2], merge=False) == [(0, 1), (1, 2), (2, 3)]  # array inputs: one item at a time
    assert runs([]) == []


def _site_with_a_run(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A scratch index, a site synced from it, and a run of 4 samples (seed 7) to publish."""
    index = hp.scratch_index(tmp_path)
    home = tmp_path / "site"
    assert main(["init", str(home), "--upstream", f"public={index}"]) == 0
    assert main(["--site", str(home), "sync"]) == 0
    run = tmp_path / "run"
    assert main(["--site", str(home), "generate", "ihc-patch-dcgan", "-n", "4", "--seed", "7", "-o", str(run),
                 "--no-progress"]) == 0
    return index, home, run


def test_a_dataset_skipped_for_its_missing_model_is_listed_once_the_model_arrives(tmp_path: Path,
                                                                                   capsys: pytest.CaptureFixture[str]
                                                                                   ) -> None:
    """A dataset record whose model version the upstream does not hold yet is skipped with that
    reason; when a later commit adds the model (the dataset file unchanged), the next sync
    applies it."""
    import git

    index, home, run = _site_with_a_run(tmp_path)
    later = {"id": hp.MODEL, "version": "1.0.1", "sha256": hp.model_sha256(), "package_format": "synthmed-1"}
    hp.publish(index, run, dataset_id="late", model=later)
    main(["--site", str(home), "sync"])  # the dataset is skipped: its model version is not there
    assert "late" not in {d["id"] for d in _json(capsys, "--site", str(home), "dataset", "list", "--json")}
    record = json.loads((index / "models" / hp.MODEL / "1.0.0.json").read_text())
    record["version"] = "1.0.1"
    (index / "models" / hp.MODEL / "1.0.1.json").write_text(json.dumps(record, indent=1) + "\n")
    repo = git.Repo(index)
    repo.git.add("-A")
    repo.git.commit("-m", "ihc-patch-dcgan 1.0.1 (the dataset's model) arrives")
    assert main(["--site", str(home), "sync"]) == 0
    listed = {d["id"]: d for d in _json(capsys, "--site", str(home), "dataset", "list", "--json")}
    assert "late" in listed and listed["late"]["model"] == f"{hp.MODEL}@1.0.1"
    with Catalog.open(load_settings(home).catalog_path) as cat:
        assert not cat.models.problem_paths("public", "datasets/")


def test_card_metrics_print_to_the_same_places() -> None:
    from synthmed.serve.dataset_pages import card_metrics

    rows = card_metrics([
        {"name": "a", "value": 0.9017, "reference": {"name": "real", "value": 0.9381}},
        {"name": "b", "value": 0.9},          # stored as 0.9: measured 0.9000
        {"name": "n", "value": 400},          # an integer prints as stored
        {"name": "tiny", "value": 1e-07}])    # exponent form prints as stored
    assert [r["value_text"] for r in rows] == ["0.9017", "0.9000", "400", "1e-07"]
    assert rows[0]["reference_text"] == "0.9381" and rows[1]["reference_text"] == ""
    assert card_metrics([{"name": "x", "value": 1.23456789}])[0]["value_text"] == "1.234568"  # at most 6
    assert card_metrics([]) == []


def test_show_lists_every_version_newest_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`dataset list` serves one version of a dataset; `dataset show` names all the versions
    this site knows, newest first, and which one it shows."""
    index, home, run = _site_with_a_run(tmp_path)
    for version in ("1.0.0", "1.10.0", "1.2.0"):  # versions order as versions, not as text
        hp.publish(index, run, dataset_id="two", version=version)
    assert main(["--site", str(home), "sync"]) == 0
    (row,) = _json(capsys, "--site", str(home), "dataset", "list", "--json")
    assert row["ref"] == "public/two@1.10.0"
    shown = _json(capsys, "--site", str(home), "dataset", "show", "two@1.2.0", "--json")
    assert shown["version"] == "1.2.0" and shown["versions"] == ["1.10.0", "1.2.0", "1.0.0"]
    capsys.readouterr()
    assert main(["--site", str(home), "dataset", "show", "two@1.0.0"]) == 0
    assert "versions:   1.10.0, 1.2.0, 1.0.0 (this one)" in capsys.readouterr().out
