"""FRD (the frd-radiomics extractor): synthmed's value equals `python -m frd_score A B` of the
pinned frd-score on PNG and on NIfTI folders, flat images are measured instead of crashing,
and the extractor record is checked against what is installed.

Needs the optional dependencies (`pip install 'synthmed[frd]'`, part of `.[test]`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

frd_score = pytest.importorskip("frd_score", reason="FRD needs the optional dependencies: pip install 'synthmed[frd]'")

from synthmed.registry.errors import EvaluationError, NotPinned  # noqa: E402
from synthmed.registry.measuring import radiomics as R  # noqa: E402
from synthmed.registry.measuring.extractors import load_extractor_file, open_extractor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "index" / "extractors" / "frd-radiomics" / "1.0.0.json"


def _frd_score_cli(a: Path, b: Path) -> float:
    """The pinned package's own command, in another process."""
    out = subprocess.run([sys.executable, "-m", "frd_score", str(a), str(b), "--num_workers", "1"],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    m = re.search(r"FRD \(v1\): (\S+)", out)
    assert m, out
    return float(m.group(1))


def _pngs(folder: Path, n: int, seed: int, rgb: bool = False, size: int = 32) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        base = 128 + 60 * np.sin(xx / (2 + i % 3) + seed) * np.cos(yy / (3 + seed % 2))
        img = np.clip(base + rng.normal(0, 20 + 5 * seed, (size, size)), 0, 255).astype(np.uint8)
        if rgb:
            img = np.stack([img, np.roll(img, 3, 0), 255 - img], -1)
        Image.fromarray(img).save(folder / f"{i:03d}.png")


def test_frd_equals_frd_score_on_png_folders(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _pngs(a, 7, 0)
    _pngs(b, 7, 1)
    want = _frd_score_cli(a, b)
    assert R.frd_between_folders(a, b, workers=2) == pytest.approx(want, rel=1e-6)
    # and through the path evaluate takes: pictures as synthmed reads them, RGB as its luminance
    from synthmed.registry.measuring.reference_sets import read_image

    ext = R.RadiomicsExtractor.open(load_extractor_file(RECORD), workers=1)
    fa = ext.features(np.stack([read_image(p)[0] for p in sorted(a.iterdir())]), (0, 255))
    fb = ext.features(np.stack([read_image(p)[0] for p in sorted(b.iterdir())]), (0, 255))
    assert fa.shape == (7, 398)
    assert R.frd_v1(fa, fb) == pytest.approx(want, rel=1e-6)


def test_frd_equals_frd_score_on_rgb_pictures(tmp_path: Path) -> None:
    from synthmed.registry.measuring.reference_sets import read_image

    a, b = tmp_path / "a", tmp_path / "b"
    _pngs(a, 6, 2, rgb=True)
    _pngs(b, 6, 3, rgb=True)
    want = _frd_score_cli(a, b)
    ext = R.RadiomicsExtractor.open(load_extractor_file(RECORD), workers=1)
    fa = ext.features(np.stack([read_image(p)[0] for p in sorted(a.iterdir())]), (0, 255))
    fb = ext.features(np.stack([read_image(p)[0] for p in sorted(b.iterdir())]), (0, 255))
    assert R.frd_v1(fa, fb) == pytest.approx(want, rel=1e-6)


@pytest.mark.slow  # 3-D radiomics (LoG and wavelets of volumes): about a minute on a loaded 2-core machine
def test_frd_equals_frd_score_on_nifti_volumes(tmp_path: Path) -> None:
    import nibabel as nib

    rng = np.random.default_rng(7)
    for name, scale in (("a", 20.0), ("b", 45.0)):
        d = tmp_path / name
        d.mkdir()
        for i in range(5):
            vol = 100 + 50 * np.sin(np.arange(16)[:, None, None] / 3 + i) + rng.normal(0, scale, (16, 20, 20))
            nib.save(nib.Nifti1Image(vol.astype(np.float32), np.diag([1.5, 1.0, 2.0, 1.0])), d / f"v{i}.nii.gz")
    want = _frd_score_cli(tmp_path / "a", tmp_path / "b")
    assert R.frd_between_folders(tmp_path / "a", tmp_path / "b", workers=2) == pytest.approx(want, rel=1e-6)


def test_a_flat_image_is_measured_by_the_documented_rule_not_a_traceback(tmp_path: Path) -> None:
    ext = R.RadiomicsExtractor.open(load_extractor_file(RECORD), workers=1)
    rng = np.random.default_rng(0)
    real = rng.uniform(0, 255, (6, 32, 32)).astype(np.uint8)
    flat = np.stack([np.full((32, 32), v, np.uint8) for v in (0, 77, 77, 200, 255, 128)])
    with pytest.raises(ValueError, match="arange"):  # what frd-score itself does with one
        from frd_score import frd

        frd.process_image_mask_pair((_save(tmp_path / "flat.png", flat[1]), None),
                                    feature_extractor=frd.get_feature_extractor("v1", image_dim=2))
    f = ext.features(flat, (0, 255))
    assert np.isfinite(f).all()
    # the rule: every flat image gets the all-zero image's features, but its own original-image diagnostics
    names, zero = R.image_features((np.zeros((32, 32), np.float32), (1.0, 1.0), None, None))
    own = [i for i, n in enumerate(names) if n in R._FLAT_DIAGNOSTICS]
    rest = [i for i in range(len(names)) if i not in own]
    assert np.array_equal(f[1][rest], f[3][rest]) and f[1][own].tolist() == [77.0] * 3
    fr = ext.features(real, (0, 255))
    ranked = R.frd_v1(fr[:3], fr[3:]), R.frd_v1(fr[:3], f)
    assert ranked[0] < ranked[1]  # flat images are far from real texture


def _save(path: Path, a: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(a).save(path)
    return path


def test_the_record_is_checked_against_what_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = load_extractor_file(RECORD)
    assert rec.is_radiomics and not rec.trained and rec.verified and rec.family == "radiomics"
    assert "NOT TRAINED" in rec.summary()
    data = json.loads(RECORD.read_text())
    data["software"]["packages"]["frd-score"] = "0.9.9"
    other = tmp_path / "extractors" / "frd-radiomics" / "1.0.0.json"
    other.parent.mkdir(parents=True)
    other.write_text(json.dumps(data))
    with pytest.raises(NotPinned, match="frd-score 1.0.1 .the record pins 0.9.9"):
        open_extractor(None, None, str(other))  # type: ignore[arg-type]
    monkeypatch.setattr(R, "installed_versions", lambda names: {n: None for n in names})
    with pytest.raises(NotPinned, match="not installed") as err:
        R.check_software(rec)
    assert "synthmed[frd]" in (err.value.hint or "")


def test_bad_sets_get_a_clear_error() -> None:
    z = np.zeros((4, 5))
    with pytest.raises(EvaluationError, match="no radiomic feature varies"):
        R.frd_v1(z, z + 1)
    with pytest.raises(EvaluationError, match="finite radiomic features"):
        R.frd_v1(np.full((4, 5), np.nan), z)
    with pytest.raises(EvaluationError, match="2-D images"):
        R.image_items([np.zeros((2, 3, 4, 5))])


# -- mask regions and volumes through `synthmed evaluate` ------------------------------------------

#: a model drawing a textured image and the mask of a disc in it (and a small volume with its mask)
REGIONS = '''
import numpy as np


def _disc(shape, seed):
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    centre = [s / 2 + rng.uniform(-2, 2) for s in shape]
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
    return (r2 < (min(shape) / 3) ** 2).astype(np.uint8)


class Model:
    def sample(self, seeds):
        imgs, masks, vols, vmasks = [], [], [], []
        for s in seeds:
            rng = np.random.default_rng(int(s) + 50)
            m = _disc((32, 32), int(s))
            mf, vmf = m.astype(float), _disc((10, 14, 14), int(s)).astype(float)
            imgs.append(np.clip(90 + 70 * mf + rng.normal(0, 25, (32, 32)), 0, 255).astype(np.uint8))
            masks.append(m)
            vm = _disc((10, 14, 14), int(s))
            vols.append((100 + 300 * vmf + rng.normal(0, 40, (10, 14, 14))).astype(np.int16))
            vmasks.append(vm)
        return {"image": np.stack(imgs), "mask": np.stack(masks), "volume": np.stack(vols),
                "volume_mask": np.stack(vmasks)}


def build(package_dir, device):
    return Model()
'''

REGION_OUTPUTS = [
    {"name": "image", "kind": "image", "dims": 2, "shape": [32, 32], "dtype": "uint8", "channels": 1,
     "value_range": [0, 255]},
    {"name": "mask", "kind": "mask", "dims": 2, "shape": [32, 32], "dtype": "uint8", "channels": 1,
     "value_range": [0, 1], "segments": "image"},
    {"name": "volume", "kind": "volume", "dims": 3, "shape": [10, 14, 14], "dtype": "int16", "channels": 1,
     "value_range": [-1024, 3071], "spacing_mm": [2.5, 1.0, 1.0]},
    {"name": "volume_mask", "kind": "mask", "dims": 3, "shape": [10, 14, 14], "dtype": "uint8", "channels": 1,
     "value_range": [0, 1], "spacing_mm": [2.5, 1.0, 1.0]},
]


@pytest.fixture(scope="module")
def region_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.packages import make_zip
    from helpers.records import package_record
    from helpers.sites import make_site_home

    tmp = tmp_path_factory.mktemp("regions")
    z = make_zip(tmp / "regions.zip", {"model.py": REGIONS})
    rec = package_record("regions", z, outputs=REGION_OUTPUTS, package_entry_point="model:build")
    return make_site_home(tmp / "site", [rec])


def _cli(capsys: pytest.CaptureFixture[str], home: Path, *args: str) -> Any:
    from synthmed.cli import main

    capsys.readouterr()
    rc = main(["--site", str(home), *args])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def _real_with_masks(root: Path, n: int, seed: int) -> tuple[Path, Path]:
    """Pictures of a brighter, noisier disc than the model's, and their 0/255 masks."""
    from PIL import Image

    imgs, masks = root / "img", root / "msk"
    imgs.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    for i in range(n):
        m = ((yy - 16 - rng.uniform(-3, 3)) ** 2 + (xx - 16) ** 2 < 100).astype(np.uint8)
        mf = m.astype(float)
        img = np.clip(80 + 110 * mf + rng.normal(0, 35, (32, 32)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(imgs / f"{i:03d}.png")
        Image.fromarray(m * 255).save(masks / f"{i:03d}.png")
    return imgs, masks


def test_frd_on_mask_regions_equals_frd_score_with_masks(region_site: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A reference set with masks: the model is measured on the mask it makes of its image, and
    the value is frd-score's `-m` on the same files (the generated ones as `generate` writes them)."""
    imgs, masks = _real_with_masks(tmp_path / "real", 8, 3)
    rec = str(RECORD)
    _cli(capsys, region_site, "reference", "add", "discs", str(imgs), "--masks", str(masks), "--extractor", rec,
         "--workers", "1")
    ev = json.loads(_cli(capsys, region_site, "evaluate", "regions", "--reference", "discs", "-n", "10",
                         "--extractor", rec, "--workers", "2", "--kid-subsets", "2", "--json", "--no-record"))[0]
    assert ev["provenance"]["region"]["mask_output"] == "mask" and ev["provenance"]["reference"]["masks"] is True
    out = tmp_path / "gen"
    _cli(capsys, region_site, "generate", "regions", "-n", "10", "-o", str(out), "--format", "png", "--no-progress")
    cmd = [sys.executable, "-m", "frd_score", str(imgs), str(out / "image"), "-m", str(masks), str(out / "mask"),
           "--num_workers", "1"]
    got = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
    want = float(re.search(r"FRD \(v1\): (\S+)", got).group(1))  # type: ignore[union-attr]
    assert ev["values"]["frd"] == pytest.approx(want, rel=1e-6)
    assert R.frd_between_folders(imgs, out / "image", masks=(masks, out / "mask"), workers=1) == pytest.approx(want, rel=1e-6)
    # the whole images are another measurement (another key), not this one
    whole = R.frd_between_folders(imgs, out / "image", workers=1)
    assert abs(whole - want) > 1e-3


def test_regions_and_volumes_are_refused_clearly(region_site: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from synthmed.cli import main

    imgs, masks = _real_with_masks(tmp_path / "real", 4, 5)
    (masks / "003.png").unlink()

    def err(*args: str) -> str:
        capsys.readouterr()
        assert main(["--site", str(region_site), *args]) == 1
        e = capsys.readouterr().err
        assert "error: " in e and "hint: " in e and "Traceback" not in e, e
        return e

    assert "no mask for 003.png" in err("reference", "add", "broken", str(imgs), "--masks", str(masks),
                                        "--extractor", str(RECORD))
    # a volume output against 2-D pictures; a volume with a network extractor
    assert "holds 2-D images" in err("evaluate", "regions", "--reference", str(imgs), "--output", "volume", "-n", "10",
                                     "--extractor", str(RECORD), "--no-record")
    randconv = str(REPO / "index" / "extractors" / "randconv-224" / "1.0.0.json")
    assert "measures 2-D outputs" in err("evaluate", "regions", "--reference", str(imgs), "--output", "volume",
                                         "-n", "10", "--extractor", randconv, "--no-record")


@pytest.mark.slow  # 3-D radiomics of 16 volumes: about a minute on a loaded 2-core machine
def test_frd_of_a_volume_output_equals_frd_score_on_the_nifti_files(region_site: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`evaluate --output volume` against a NIfTI reference set equals `python -m frd_score` on that set and
    the files `generate --format nifti` writes, whole volumes and mask regions (volume_mask is the one mask of
    the volume's size)."""
    import nibabel as nib

    ref, ref_m = tmp_path / "vols", tmp_path / "vol-masks"
    ref.mkdir()
    ref_m.mkdir()
    rng = np.random.default_rng(9)
    zz, yy, xx = np.mgrid[0:10, 0:14, 0:14]
    for i in range(6):
        m = ((zz - 5) ** 2 / 4 + (yy - 7 - rng.uniform(-1, 1)) ** 2 + (xx - 7) ** 2 < 16).astype(np.uint8)
        vol = (120 + 250 * m.astype(float) + rng.normal(0, 60, m.shape)).astype(np.float32)
        aff = np.diag([1.0, 1.0, 2.5, 1.0])
        # NIfTI order (col, row, slice), as synthmed writes volumes
        nib.save(nib.Nifti1Image(vol.transpose(2, 1, 0).copy(), aff), ref / f"v{i}.nii.gz")
        nib.save(nib.Nifti1Image(m.transpose(2, 1, 0).copy(), aff), ref_m / f"v{i}.nii.gz")
    rec = str(RECORD)
    out = tmp_path / "gen"
    _cli(capsys, region_site, "generate", "regions", "-n", "10", "-o", str(out), "--format", "nifti", "--no-progress")
    for masks in (False, True):
        name = "vols-masked" if masks else "vols"
        _cli(capsys, region_site, "reference", "add", name, str(ref), "--extractor", rec, "--workers", "2",
             *(["--masks", str(ref_m)] if masks else []))
        ev = json.loads(_cli(capsys, region_site, "evaluate", "regions", "--reference", name, "--output", "volume",
                             "-n", "10", "--extractor", rec, "--workers", "2", "--kid-subsets", "2", "--json",
                             "--no-record"))[0]
        assert ev["provenance"]["region"]["dims"] == 3 and "ms_ssim_diversity" not in ev["values"]
        cmd = [sys.executable, "-m", "frd_score", str(ref), str(out / "volume"), "--num_workers", "1"]
        if masks:
            cmd[5:5] = ["-m", str(ref_m), str(out / "volume_mask")]
        got = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
        want = float(re.search(r"FRD \(v1\): (\S+)", got).group(1))  # type: ignore[union-attr]
        assert ev["values"]["frd"] == pytest.approx(want, rel=1e-6), (masks, got)
