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
