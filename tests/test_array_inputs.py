"""Array inputs: records declare them (and bind them like ``inputs``), folders of PNG/NPY/
NIfTI/DICOM files and SDK arrays are read and checked before any model code runs, the
seed contract holds with inputs (determinism, batch invariance, inline = worker), the
model test uses the inputs shipped in the package, and a medigan-1 translator built in
medigan's layout runs with ``--input`` and ``Generators.generate(..., input_path=...)``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from synthmed.cli import main
from synthmed.registry.authoring import medigan_import as mi
from synthmed.registry.accepted import AcceptedVersion, _digest, conflict
from synthmed.registry.array_inputs import check_inputs, plan
from synthmed.registry.errors import InputError, ParamError, SynthmedError
from synthmed.registry.checks.modeltest import test_model as run_model_test
from synthmed.registry.packages import VerifiedPackage, prepare_archive
from synthmed.registry.records import validate_data
from synthmed.registry.runner import Runner, RunnerOptions
from synthmed.site import Model

from helpers import REPO_ROOT
from helpers.packages import make_zip
from helpers.records import load_valid_record, package_record, to_record
from helpers.sites import make_site_home

# a mask-to-image model: image = 200 where the mask is set, else 40 + seed % 7; its
# module leaves a marker when imported, so a test can tell whether model code ran
TRANSLATE = '''
from pathlib import Path
import numpy as np

Path(__file__).resolve().parent.parent.joinpath("MODEL_CODE_RAN").write_text("imported")


class T:
    def sample(self, seeds, *, mask, gain=1):
        mask = np.asarray(mask)
        assert mask.shape == (len(seeds), 8, 8) and mask.dtype == np.uint8 and mask.max() <= 1
        base = np.stack([np.full((8, 8), 40 + int(s) % 7, np.uint8) for s in seeds])
        return {"image": np.where(mask > 0, np.uint8(200 // gain), base).astype(np.uint8)}


def build(package_dir, device):
    return T()
'''

MASK_INPUT = {"name": "mask", "kind": "mask", "dims": 2, "shape": [8, 8], "dtype": "uint8", "channels": 1,
              "value_range": [0, 1], "test": "test-inputs"}


def _mask(i: int) -> np.ndarray:
    m = np.zeros((8, 8), np.uint8)
    m[i % 8, :] = 1
    return m


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture(scope="module")
def translator(tmp_path_factory: pytest.TempPathFactory) -> VerifiedPackage:
    tmp = tmp_path_factory.mktemp("translator")
    entries: dict[str, Any] = {"model.py": TRANSLATE}
    for i in range(3):
        p = _png(tmp / "t" / f"{i}.png", _mask(i) * 255)
        entries[f"test-inputs/{i:03d}.png"] = p.read_bytes()
    zp = make_zip(tmp / "t.zip", entries)
    data = package_record("mask-translator", zp, task="mask-to-image", array_inputs=[MASK_INPUT],
                          package_entry_point="model:build",
                          inputs={"type": "object", "properties": {"gain": {"type": "integer", "minimum": 1,
                                                                             "default": 1}},
                                  "additionalProperties": False},
                          test={"num_samples": 6, "seed": 3, "timeout_s": 60,
                                "checks": ["shapes", "dtypes", "value_range", "determinism", "batch_invariance",
                                           "params"]})
    return prepare_archive(to_record(data), zp, tmp / "packages")


def _ran(pkg: VerifiedPackage) -> bool:
    return (pkg.folder.parent / "MODEL_CODE_RAN").exists()


def _forget(pkg: VerifiedPackage) -> None:
    (pkg.folder.parent / "MODEL_CODE_RAN").unlink(missing_ok=True)


# --- records -------------------------------------------------------------------------


def test_record_array_inputs_validate_and_bind_with_inputs() -> None:
    old = load_valid_record()
    assert "array_inputs" not in old
    # a record without array inputs keeps the digest it was bound with before they existed
    assert AcceptedVersion.of(old, "c", "p").inputs == _digest(old["inputs"])
    new = json.loads(json.dumps(old))
    new["array_inputs"] = [dict(MASK_INPUT)]
    errors, _ = validate_data(new)
    assert errors == []
    changed = json.loads(json.dumps(new))
    changed["array_inputs"][0]["shape"] = [16, 16]
    a, b, c = (AcceptedVersion.of(d, "c", "p") for d in (old, new, changed))
    assert conflict(a, b) == ["inputs"] and conflict(b, c) == ["inputs"] and conflict(b, b) == []

    bad = json.loads(json.dumps(new))
    bad["array_inputs"] += [dict(MASK_INPUT), {**MASK_INPUT, "name": "x", "shape": [8, 8, 8], "medigan_arg": "p"}]
    bad["inputs"] = {"type": "object", "properties": {"mask": {"type": "string"}}}
    msgs: dict[str, str] = {}
    for p in validate_data(bad)[0]:
        msgs[p.json_path] = msgs.get(p.json_path, "") + " | " + p.message
    assert "duplicate input name 'mask'" in msgs["$.array_inputs[1].name"]
    assert "also a parameter" in msgs["$.array_inputs[0].name"]
    assert "3 values but the input has 2 dims" in msgs["$.array_inputs[2].shape"]
    assert "only a medigan-1 package" in msgs["$.array_inputs[2].medigan_arg"]


# --- reading and checking ----------------------------------------------------------------


def test_folder_formats_natural_order_and_mask_pictures(tmp_path: Path, translator: VerifiedPackage) -> None:
    import nibabel as nib
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rec = translator.record
    folder = tmp_path / "in"
    _png(folder / "2.png", _mask(2) * 255)          # a 0/255 picture reads as 0/1
    np.save(folder / "10.npy", _mask(10))
    nib.save(nib.Nifti1Image(_mask(3), np.eye(4)), str(folder / "3.nii.gz"))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = (_mask(4) * 255).tobytes()
    ds.save_as(str(folder / "4.dcm"), enforce_file_format=True)
    (folder / "notes.txt").write_text("ignored")
    checked = check_inputs(rec, {"mask": folder})
    assert [Path(s).name for s in checked.sources["mask"]] == ["2.png", "3.nii.gz", "4.dcm", "10.npy"]
    assert np.array_equal(checked.arrays["mask"], np.stack([_mask(i) for i in (2, 3, 4, 10)]))
    # k samples per input: sample i takes input i // k
    assert plan(rec, checked, None, per_input=2) == 8
    assert [int(a.argmax() // 8) for a in checked.for_samples(range(8), 2)["mask"]] == [2, 2, 3, 3, 4, 4, 2, 2]


@pytest.mark.parametrize("case, expect", [
    ("shape", "has shape 9x8"),
    ("channels", "has 3 channel(s)"),
    ("dtype", "a uint8 input takes whole numbers, not floats"),
    ("range", "has values 0..7, outside 0..1"),
    ("missing", "does not exist"),
    ("empty", "holds no PNG, NPY, NIfTI or DICOM files"),
    ("too-few", "too few inputs: 5 samples asked, input 'mask' has 2"),
    ("unknown", "unknown parameter(s) 'masks'"),
])
def test_wrong_inputs_are_refused_before_model_code_runs(tmp_path: Path, translator: VerifiedPackage,
                                                         case: str, expect: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _png(folder / "a.png", _mask(0) * 255)
    bad = {"shape": lambda: _png(folder / "b.png", np.zeros((9, 8), np.uint8)),
           "channels": lambda: _png(folder / "b.png", np.zeros((8, 8, 3), np.uint8)),
           "dtype": lambda: np.save(folder / "b.npy", np.full((8, 8), 0.5, np.float32)),
           "range": lambda: np.save(folder / "b.npy", np.eye(8, dtype=np.uint8) * 7),
           "too-few": lambda: _png(folder / "b.png", _mask(1) * 255)}
    if case in bad:
        bad[case]()
    given: dict[str, Any] = {"mask": folder}
    if case == "missing":
        given = {"mask": tmp_path / "nowhere"}
    elif case == "empty":
        given = {"mask": tmp_path / "empty"}
        (tmp_path / "empty").mkdir()
    elif case == "unknown":
        given = {"masks": folder}
    _forget(translator)
    model = Model(translator, RunnerOptions(mode="inline"))
    with pytest.raises(ParamError) as err:  # InputError is a ParamError; an unknown name is a parameter
        model.sample(5 if case == "too-few" else None, **given)
    assert isinstance(err.value, InputError) == (case != "unknown")
    msg = str(err.value)
    assert expect in msg and "mask-translator@1.0.0" in msg
    if case in ("shape", "channels"):
        assert "input 'mask'" in msg and str(folder / "b.png") in msg
    if case in ("dtype", "range"):
        assert str(folder / "b.npy") in msg
    if case == "missing":
        assert str(tmp_path / "nowhere") in msg
    assert not _ran(translator)
    # the CLI refuses the same before fetching or running anything
    model.close()


def test_runner_refuses_a_model_with_inputs_called_without_them(translator: VerifiedPackage) -> None:
    _forget(translator)
    with Runner(translator, RunnerOptions(mode="inline")) as runner:
        with pytest.raises(InputError, match="takes array inputs \\(mask\\); none were given"):
            runner.sample([0, 1])
    assert not _ran(translator)


# --- the seed contract ---------------------------------------------------------------


def test_samples_depend_on_seed_and_input_only_inline_and_worker(translator: VerifiedPackage) -> None:
    masks = np.stack([_mask(i) for i in range(5)])
    want = np.where(masks > 0, 200, np.stack([np.full((8, 8), 40 + (10 + i) % 7) for i in range(5)])).astype(np.uint8)
    inline = Model(translator, RunnerOptions(mode="inline", batch_size=2))
    out = inline.sample(seed=10, mask=masks)["image"]
    assert np.array_equal(out, want)
    assert np.array_equal(inline.sample(5, seed=10, mask=list(masks))["image"], want)
    # one at a time: the same sample for the same seed and input, whatever the batch
    singles = np.concatenate([inline.sample_seeds([10 + i], mask=masks[i:i + 1])["image"] for i in range(5)])
    assert np.array_equal(singles, want)
    with Model(translator, RunnerOptions(mode="worker", batch_size=3)) as worker:
        assert np.array_equal(worker.sample(seed=10, mask=masks)["image"], want)
    # k per input, each with its own seed
    two = inline.sample(seed=0, per_input=2, mask=masks[:2], gain=2)["image"]
    assert two.shape == (4, 8, 8) and [int(two[i, 0, 0]) for i in range(4)] == [100, 100, 42, 43]
    inline.close()


def test_model_test_uses_the_inputs_in_the_package(translator: VerifiedPackage) -> None:
    result = run_model_test(translator, RunnerOptions(mode="inline"))
    assert result.status == "passed", result.reason
    names = {c.name for c in result.checks}
    assert {"determinism", "batch_invariance", "params"} <= names


def test_generate_writes_inputs_identity_and_resumes(tmp_path: Path, translator: VerifiedPackage) -> None:
    folder = tmp_path / "masks"
    for i in range(4):
        _png(folder / f"{i:02d}.png", _mask(i) * 255)
    model = Model(translator, RunnerOptions(mode="inline"))
    res = model.generate_to(tmp_path / "out", None, inputs={"mask": folder})  # type: ignore[arg-type]
    assert res.written == 4
    side = json.loads(res.sidecar.read_text())
    assert side["runner"]["inputs"]["count"] == 4 and side["runner"]["inputs"]["mask"]["source"] == str(folder)
    again = model.generate_to(tmp_path / "out", 4, inputs={"mask": folder})
    assert again.skipped == 4 and again.written == 0
    # other inputs are another run: never mixed into this folder
    other = tmp_path / "other"
    for i in range(4):
        _png(other / f"{i:02d}.png", _mask(i + 1) * 255)
    with pytest.raises(SynthmedError):
        model.generate_to(tmp_path / "out", 4, inputs={"mask": other})
    model.close()


# --- medigan's translators -------------------------------------------------------------

# medigan's translator layout (e.g. 00003_CYCLEGAN_MMG_DENSITY_FULL): __init__.py with
# generate(model_file, num_samples, output_path, save_images, input_path, image_size,
# gpu_id, translate_all_images) that reads the .png images in input_path and returns
# num_samples translated images; the default input_path is a folder in medigan's tree
MEDIGAN_TRANSLATOR = '''
import glob
import os

import numpy as np
from PIL import Image


def generate(model_file, num_samples=10, output_path=None, save_images=True,
             input_path="models/00099_TOY_TRANSLATOR/images", image_size=[8, 8], gpu_id=0,
             translate_all_images=False):
    shift = int(np.load(model_file)[0])
    files = sorted(glob.glob(os.path.join(input_path, "*.png")))
    if not translate_all_images:
        files = files[:num_samples]
    out = []
    for f in files:
        img = np.asarray(Image.open(f).convert("L").resize(tuple(image_size)))
        noise = np.random.randint(0, 3, img.shape)
        out.append(((255 - img).astype(np.int64) // 2 + shift + noise).clip(0, 255).astype(np.uint8)[:, :, None])
    if save_images:
        for i, img in enumerate(out):
            Image.fromarray(img[:, :, 0]).save(os.path.join(output_path, f"{i}.png"))
        return None
    return out
'''


def medigan_translator_record(zp: Path) -> dict[str, Any]:
    entry = {"execution": {"package_name": "00099_TOY_TRANSLATOR", "model_name": "translator", "extension": ".npy",
                           "image_size": [8, 8], "dependencies": ["numpy", "Pillow"],
                           "generate_method": {"name": "generate", "args": {"base": ["model_file", "num_samples",
                                                                                      "output_path", "save_images"],
                                                                             "custom": {"input_path":
                                                                                        "models/00099/images",
                                                                                        "image_size": [8, 8],
                                                                                        "gpu_id": 0,
                                                                                        "translate_all_images": False}}},
                           "package_link": "https://zenodo.org/record/1/files/00099_TOY_TRANSLATOR.zip"},
             "selection": {"modality": ["mammography"], "organ": ["breast"], "generates": ["image"],
                           "tags": ["CycleGAN"], "license": "MIT"},
             "description": {"title": "A toy translator in medigan's layout", "comment": "For tests.",
                             "inputs": ["input_path: default=models/00099/images, help=the path to .png images "
                                        "that are translated"]}}
    entry["selection"]["function"] = ["image to image"]  # the catalogue says what it takes
    outcome = mi.convert_entry("00099_TOY_TRANSLATOR", entry)
    assert outcome.ok, outcome.reason
    rec = outcome.record
    assert rec is not None
    assert [a["medigan_arg"] for a in rec["array_inputs"]] == ["input_path"]
    assert "input_path" not in rec["inputs"]["properties"] and "input_path" not in rec["package"]["generate_args"]
    rec["id"], rec["version"] = "toy-translator", "1.0.0"
    rec["package"]["requirements"] = []
    from helpers.records import artefact_of
    rec["package"]["artefact"] = artefact_of(zp)
    rec["test"] = {"num_samples": 2, "seed": 0, "timeout_s": 60, "checks": ["shapes", "finite", "determinism"]}
    return rec


def test_imported_medigan_translators_take_array_inputs() -> None:
    cat = json.loads((REPO_ROOT / "tests" / "fixtures" / "medigan" / "medigan-global-00001-00015.json").read_text())
    mapped = {}
    for oid, entry in cat.items():
        rec = mi.convert_entry(oid, entry).record
        if rec and rec.get("array_inputs"):
            mapped[oid[:5]] = (rec["task"], [(a["name"], a["medigan_arg"]) for a in rec["array_inputs"]])
    assert mapped["00003"] == ("image-to-image", [("image", "input_path")])
    assert {"00013", "00014", "00015"} <= set(mapped)
    # 00004 is mask-to-image, but its input_path holds mammograms for the image pool
    assert mapped["00004"] == ("mask-to-image", [("image", "input_path")])
    assert "00001" not in mapped  # an unconditional model takes no folder


def test_medigan_translator_runs_with_input_and_generators(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "00099_TOY_TRANSLATOR").mkdir(parents=True)
    (pkg / "00099_TOY_TRANSLATOR" / "__init__.py").write_text(MEDIGAN_TRANSLATOR)
    np.save(pkg / "00099_TOY_TRANSLATOR" / "translator.npy", np.array([5]))
    zp = make_zip(tmp_path / "toy.zip", {p.relative_to(pkg).as_posix(): p.read_bytes()
                                          for p in pkg.rglob("*") if p.is_file()})
    rec = medigan_translator_record(zp)
    home = make_site_home(tmp_path / "site", [rec])
    images = tmp_path / "mammograms"
    for i in range(3):
        _png(images / f"img{i}.png", np.full((12, 10), 30 * (i + 1), np.uint8))
    # a wrong input is refused by the CLI before the package is even fetched
    bad = tmp_path / "bad"
    _png(bad / "a.png", np.zeros((12, 10, 3), np.uint8))
    assert main(["--site", str(home), "generate", "toy-translator", "--input", f"image={bad}", "-o",
                 str(tmp_path / "x"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "input 'image'" in err and str(bad / "a.png") in err and "has 3 channel(s)" in err
    assert not (home / "packages").exists() or not any((home / "packages").iterdir())
    out = tmp_path / "out"
    assert main(["--site", str(home), "generate", "toy-translator", "--input", f"image={images}", "-o", str(out),
                 "--no-progress", "--seed", "4"]) == 0
    files = sorted((out / "image").iterdir())
    assert len(files) == 3
    first = np.asarray(Image.open(files[0]))
    assert first.shape == (8, 8) and 5 + (255 - 30) // 2 <= first.min() <= first.max() <= 5 + (255 - 30) // 2 + 2

    from synthmed import Generators

    gens = Generators(home)
    try:
        samples = gens.generate("toy-translator", num_samples=3, input_path=str(images), save_images=False, seed=4)
        assert len(samples) == 3
        assert np.array_equal(np.asarray(samples[0])[..., 0] if np.asarray(samples[0]).ndim == 3
                              else np.asarray(samples[0]), first)
        gens.generate("toy-translator", num_samples=2, input_path=str(images), output_path=tmp_path / "g", seed=4)
        assert len(list(Path(gens.last_output_path).glob("*.png"))) == 2  # medigan's layout
        with pytest.raises(InputError, match="too few inputs: 30 samples asked"):
            gens.generate("toy-translator", input_path=str(images), output_path=tmp_path / "h")
    finally:
        gens.close()


def test_gate_refuses_adding_array_inputs_to_a_merged_version(index_repo, make_record) -> None:
    from synthmed.registry.authoring.indexcheck import check_index

    from helpers.records import write_record
    from helpers.repos import commit

    root = Path(index_repo.working_dir)
    data = make_record()
    write_record(root, data)
    base = commit(index_repo, "add toy-gan 1.0.0")
    index_repo.git.checkout("-b", "pr")
    data["array_inputs"] = [dict(MASK_INPUT)]
    write_record(root, data)
    commit(index_repo, "give it a mask input")
    result = check_index(index_repo.working_dir, base)
    assert not result.ok
    assert any("cannot change in a merged version" in p.message and "inputs" in (p.json_path + p.message)
               for p in result.problems), [str(p) for p in result.problems]


# --- pipeline files ---------------------------------------------------------------------

GOOD_PIPE = {"format": "synthmed-pipeline-1",
             "stages": [{"name": "geometry", "ref": "mask-model@1.0.0", "sha256": "a" * 64, "params": {}},
                        {"name": "photo", "ref": "mask-translator@1.0.0", "sha256": "b" * 64}],
             "wiring": ["geometry.mask -> photo.mask"],
             "outputs": {"image": "photo.image"}}


@pytest.mark.parametrize("change, expect", [
    ({}, None),
    ({"format": "synthmed-pipeline-2"}, "is not a synthmed-pipeline-1 file"),
    ({"stages": []}, "names no stages"),
    ({"wiring": ["photo.image -> geometry.mask"]}, "points backwards"),
    ({"wiring": ["geometry.mask photo.mask"]}, "is not 'stage.output -> stage.input'"),
    ({"wiring": ["geometry.mask -> paint.mask"]}, "names a stage the pipeline does not have"),
    ({"outputs": {}}, "the record's output 'image' is not mapped"),
    ({"stages": [{"name": "geometry", "ref": "mask-model", "sha256": "a" * 64}]}, "is not ID@VERSION"),
    ({"stages": [{"name": "geometry", "ref": "mask-model@1.0.0", "sha256": "xyz"}]}, "is not 64 hexadecimal"),
])
def test_pipeline_files_are_checked_for_form(tmp_path: Path, change: dict[str, Any], expect: str | None) -> None:
    from synthmed.registry.errors import ModelRunError
    from synthmed.registry.pipeline import load_spec, open_runner

    doc = {**GOOD_PIPE, **change}
    zp = make_zip(tmp_path / "p.zip", {"pipeline.json": json.dumps(doc)})
    data = package_record("a-pipeline", zp, package_format="synthmed-pipeline-1", package_entry_point="pipeline.json")
    pkg = prepare_archive(to_record(data), zp, tmp_path / "packages")
    if expect is None:
        spec = load_spec(pkg)
        assert [s.name for s in spec.stages] == ["geometry", "photo"] and spec.outputs == {"image": ("photo", "image")}
        with pytest.raises(Exception, match="its stages were not prepared"):
            open_runner(pkg)  # a pipeline runs only with its stages prepared (through a site)
        return
    with pytest.raises(ModelRunError, match=expect):
        load_spec(pkg)


def test_a_medigan_translators_bundled_examples_are_its_default_input(tmp_path: Path) -> None:
    """A translator whose medigan default is a folder of its own package
    (``models/<id>/images``): the importer keeps it as the input's ``default`` (and the
    model test's inputs); the medigan API uses it when no input is given, cycling through
    the 3 bundled images for 4 samples as medigan's packages do (issue #26)."""
    from synthmed import Generators

    cat = json.loads((REPO_ROOT / "tests" / "fixtures" / "medigan" / "medigan-global-00001-00015.json").read_text())
    imported = mi.convert_entry("00003_CYCLEGAN_MMG_DENSITY_FULL", cat["00003_CYCLEGAN_MMG_DENSITY_FULL"]).record
    assert imported is not None and imported["array_inputs"][0]["default"] == "images"
    assert imported["array_inputs"][0]["test"] == "images"

    pkg = tmp_path / "pkg"  # medigan's zip: __init__.py, the weights and images/ at its root
    pkg.mkdir()
    (pkg / "__init__.py").write_text(MEDIGAN_TRANSLATOR)
    np.save(pkg / "translator.npy", np.array([5]))
    for i in range(3):
        _png(pkg / "images" / f"img{i}.png", np.full((12, 10), 30 * (i + 1), np.uint8))
    zp = make_zip(tmp_path / "toy.zip", {p.relative_to(pkg).as_posix(): p.read_bytes()
                                          for p in pkg.rglob("*") if p.is_file()})
    rec = medigan_translator_record(zp)
    rec["array_inputs"][0]["default"] = "images"
    home = make_site_home(tmp_path / "site", [rec])
    gens = Generators(home, progress=False)
    try:
        samples = gens.generate("toy-translator", num_samples=4, save_images=False, seed=4)
        given = gens.generate("toy-translator", num_samples=3, input_path=str(pkg / "images"), save_images=False,
                              seed=4)
        assert len(samples) == 4
        assert all(np.array_equal(samples[i], given[i]) for i in range(3))
        # the fourth sample translates the first image again (its own seed: noise of 0..2)
        assert abs(int(np.asarray(samples[3]).mean()) - int(np.asarray(samples[0]).mean())) <= 2
        gens.generate("toy-translator", num_samples=4, output_path=tmp_path / "g", seed=4)
        assert sorted(p.name for p in (tmp_path / "g").iterdir()) == [f"batch_0_{i}.png" for i in range(4)]
        side = json.loads((tmp_path / "g.synthmed.json").read_text())
        assert side["num_samples"] == 4
    finally:
        gens.close()
    # without a default, a missing input is still a clear error
    rec2 = medigan_translator_record(zp)
    gens = Generators(make_site_home(tmp_path / "site2", [rec2]), progress=False)
    try:
        with pytest.raises(InputError, match="input 'image' is missing"):
            gens.generate("toy-translator", num_samples=2, save_images=False)
    finally:
        gens.close()
