"""NIfTI and DICOM of the phantom-lesion starter: NIfTI in its index order with an affine in
the declared orientation (nibabel, and MONAI when installed), an axial slice staying axial;
DICOM volumes as per-slice series with geometry and window, masks as DICOM SEG referencing
them (pydicom, highdicom, and dciodvfy when installed); old records keep working."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers.packages import package_for, volume_package
from synthmed.output_formats import DEFAULT_ORIENTATION, orientation_of
from synthmed.registry.errors import ConfigError
from helpers.records import to_record
from synthmed.registry.records import load_record
from synthmed.registry.runner import RunnerOptions
from synthmed.site import Model

REPO = Path(__file__).resolve().parent.parent
RECORD = REPO / "index" / "models" / "phantom-lesion" / "1.0.0.json"
ARTEFACT = REPO / "index" / "artefacts" / "phantom-lesion" / "1.0.0.zip"
PARAMS = {"dims": 3, "lesion_count": 2}


def phantom(tmp: Path, **changes: Any) -> Model:
    record = load_record(RECORD)
    if changes:
        data = json.loads(json.dumps(dict(record.data)))
        for out in data["outputs"]:
            out.update(changes.get(out["name"], {}))
        record = to_record(data, str(tmp / "phantom.json"))
    return Model(package_for(record, ARTEFACT, tmp), RunnerOptions())


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("phantom")
    m = phantom(tmp)
    want = m.sample(2, seed=7, **PARAMS)
    m.generate_to(tmp / "nii", 2, format="nifti", seed=7, **PARAMS)
    m.generate_to(tmp / "dcm", 2, format="dicom", seed=7, **PARAMS)
    return {"want": want, "nii": tmp / "nii", "dcm": tmp / "dcm", "model": m}


# --- NIfTI ---------------------------------------------------------------------------


def test_nifti_index_order_affine_and_axial_slices(written: dict[str, Any]) -> None:
    import nibabel as nib

    vol = written["want"]["volume"][1]  # (slices, rows, cols)
    img = nib.load(str(written["nii"] / "volume" / "000001.nii.gz"))
    assert img.shape == (64, 64, 64)
    assert "".join(nib.aff2axcodes(img.affine)) == DEFAULT_ORIENTATION == "LPS"
    assert np.allclose(img.header.get_zooms()[:3], (3.0, 3.0, 3.0))
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    data = np.asarray(img.dataobj)
    for k in (0, 20, 40, 63):
        assert np.array_equal(data[:, :, k].T, vol[k]), k
    # the grid is centred on the world origin
    centre = img.affine @ np.array([31.5, 31.5, 31.5, 1.0])
    assert np.allclose(centre[:3], 0)
    mask = nib.load(str(written["nii"] / "volume_mask" / "000000.nii.gz"))
    assert np.array_equal(np.asarray(mask.dataobj)[:, :, 30].T, written["want"]["volume_mask"][0][30])
    assert np.allclose(mask.affine, nib.load(str(written["nii"] / "volume" / "000000.nii.gz")).affine)


def test_nifti_anisotropic_spacing_and_declared_orientation(tmp_path: Path) -> None:
    import nibabel as nib

    _, pkg, _ = volume_package(tmp_path)  # (6, 5, 4) with spacing (slice 0.5, row 0.75, col 2.0)
    m = Model(pkg, RunnerOptions())
    want = m.sample(1, seed=2)["volume"][0]
    m.generate_to(tmp_path / "a", 1, format="nifti", seed=2)
    img = nib.load(str(tmp_path / "a" / "volume" / "000000.nii.gz"))
    assert img.shape == (4, 5, 6) and np.allclose(img.header.get_zooms(), (2.0, 0.75, 0.5))
    assert np.allclose(np.abs(np.diag(img.affine))[:3], (2.0, 0.75, 0.5))
    assert np.allclose(img.get_fdata()[:, :, 3].T, want[3])
    ras = phantom(tmp_path / "p", volume={"orientation": "RAS"})
    ras.generate_to(tmp_path / "r", 1, format="nifti", seed=1, **PARAMS)
    r = nib.load(str(tmp_path / "r" / "volume" / "000000.nii.gz"))
    assert nib.aff2axcodes(r.affine) == ("R", "A", "S")
    assert nib.aff2axcodes(nib.load(str(tmp_path / "r" / "volume_mask" / "000000.nii.gz")).affine) == ("L", "P", "S")


def test_orientation_and_window_in_the_schema(tmp_path: Path) -> None:
    from synthmed.registry.errors import RecordError

    data = json.loads(RECORD.read_text())
    assert "orientation" not in data["outputs"][2]  # the merged record relies on the default
    data["outputs"][2].update(orientation="RAS", window={"center": 40, "width": 80})
    data["outputs"][3]["segments"] = "volume"
    to_record(data, "ok.json")
    data["outputs"][3]["segments"] = "volume_mask"
    with pytest.raises(RecordError, match="names no other output"):
        to_record(data, "bad.json")
    for bad in ({"orientation": "LLS"}, {"orientation": "ras"}, {"window": {"center": 1}},
                {"window": {"center": 1, "width": 0}}):
        d = json.loads(RECORD.read_text())
        d["outputs"][2].update(bad)
        with pytest.raises(RecordError):
            to_record(d, "bad.json")
    assert orientation_of({}) == "LPS" and orientation_of({"orientation": "RAS"}) == "RAS"
    with pytest.raises(ConfigError):
        orientation_of({"orientation": "XYZ"})


@pytest.mark.slow
def test_monai_loads_an_axial_slice_as_axial(written: dict[str, Any]) -> None:
    pytest.importorskip("monai")
    from monai.transforms import LoadImage

    vol = written["want"]["volume"][1]
    data, meta = LoadImage(image_only=False)(str(written["nii"] / "volume" / "000001.nii.gz"))
    arr = np.asarray(data)
    assert arr.shape == (64, 64, 64)
    assert np.array_equal(arr[:, :, 20].T, vol[20])
    assert np.allclose(np.asarray(meta["pixdim"])[1:4], (3.0, 3.0, 3.0))


# --- DICOM ---------------------------------------------------------------------------


def _series(folder: Path) -> list[Any]:
    import pydicom

    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"{k:04d}.dcm" for k in range(1, len(files) + 1)]
    return [pydicom.dcmread(f) for f in files]


def test_dicom_volume_is_a_ct_series_with_geometry(written: dict[str, Any]) -> None:
    import nibabel as nib
    import pydicom.uid as puid

    vol = written["want"]["volume"][1]
    series = _series(written["dcm"] / "volume" / "000001")
    assert len(series) == 64
    first = series[0]
    assert first.SOPClassUID == puid.CTImageStorage and first.Modality == "CT"
    assert {(d.StudyInstanceUID, d.SeriesInstanceUID, d.FrameOfReferenceUID) for d in series} == \
        {(first.StudyInstanceUID, first.SeriesInstanceUID, first.FrameOfReferenceUID)}
    other = _series(written["dcm"] / "volume" / "000000")[0]
    assert other.SeriesInstanceUID != first.SeriesInstanceUID  # one series per sample
    assert [float(x) for x in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]  # axial
    assert [float(x) for x in first.PixelSpacing] == [3.0, 3.0] and float(first.SliceThickness) == 3.0
    positions = np.array([[float(x) for x in d.ImagePositionPatient] for d in series])
    assert np.allclose(np.diff(positions, axis=0), [0, 0, 3.0])  # steps along the normal (feet to head)
    # the same voxel is at the same place in the NIfTI file (RAS = LPS with x, y negated)
    aff = nib.load(str(written["nii"] / "volume" / "000001.nii.gz")).affine
    for k in (0, 33):
        ras = aff @ np.array([0, 0, k, 1.0])
        assert np.allclose(positions[k], [-ras[0], -ras[1], ras[2]])
    for k in (0, 31, 63):
        d = series[k]
        assert d.InstanceNumber == k + 1
        hu = d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)
        assert np.array_equal(hu, vol[k])
    assert (float(first.WindowCenter), float(first.WindowWidth)) == (40.0, 80.0)  # head/brain: brain window
    assert first.RescaleType == "HU"
    # the synthetic markers
    assert str(first.PatientName) == "SYNTHETIC^SYNTHMED" and first.BurnedInAnnotation == "NO"
    assert "SYNTHETIC DATA generated by synthmed phantom-lesion@1.0.0" in first.ImageComments
    assert first.private_block(0x0071, "SYNTHMED")[0x01].value == "SYNTHETIC"
    side = json.loads((written["dcm"] / "synthmed.json").read_text())
    assert {o["name"]: o["files"] for o in side["outputs"]}["volume"] == "volume/000000"


def test_dicom_masks_are_seg_referencing_their_images(written: dict[str, Any]) -> None:
    import highdicom as hd
    import pydicom

    want = written["want"]
    seg_ds = pydicom.dcmread(written["dcm"] / "volume_mask" / "000001.dcm")
    seg = hd.seg.Segmentation.from_dataset(seg_ds)
    series = _series(written["dcm"] / "volume" / "000001")
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == series[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == series[0].FrameOfReferenceUID
    refs = {r.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence
            for r in item.ReferencedInstanceSequence}
    assert refs == {d.SOPInstanceUID for d in series}
    volume = seg.get_volume(combine_segments=False) if hasattr(seg, "get_volume") else None
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=[d.SOPInstanceUID for d in series],
                                               segment_numbers=[1])[..., 0]
    assert np.array_equal(pixels.astype(bool), want["volume_mask"][1].astype(bool))
    assert pixels.any() and volume is None or volume is not None
    assert "SYNTHETIC DATA generated by synthmed" in seg_ds.ImageComments
    assert seg_ds.private_block(0x0071, "SYNTHMED")[0x01].value == "SYNTHETIC"
    assert str(seg_ds.PatientName) == "SYNTHETIC^SYNTHMED"
    # the 2D mask refers to the 2D image of the same sample
    seg2 = pydicom.dcmread(written["dcm"] / "mask" / "000000.dcm")
    img2 = pydicom.dcmread(written["dcm"] / "image" / "000000.dcm")
    assert seg2.SOPClassUID == seg_ds.SOPClassUID
    assert {r.ReferencedSOPInstanceUID for item in seg2.ReferencedSeriesSequence
            for r in item.ReferencedInstanceSequence} == {img2.SOPInstanceUID}


def test_dicom_window_and_orientation_from_the_record(tmp_path: Path) -> None:
    m = phantom(tmp_path, volume={"orientation": "RAS", "window": {"center": 50, "width": 350}})
    m.generate_to(tmp_path / "d", 1, format="dicom", seed=1, **PARAMS)
    series = _series(tmp_path / "d" / "volume" / "000000")
    first = series[0]
    assert (float(first.WindowCenter), float(first.WindowWidth)) == (50.0, 350.0)
    assert [float(x) for x in first.ImageOrientationPatient] == [-1, 0, 0, 0, -1, 0]  # RAS in LPS terms
    positions = np.array([[float(x) for x in d.ImagePositionPatient] for d in series])
    assert np.allclose(np.diff(positions, axis=0), [0, 0, 3.0])
    # the 2D CT slice has the default window of a head record (brain 40/80)
    import pydicom

    img = pydicom.dcmread(tmp_path / "d" / "image" / "000000.dcm")
    assert (float(img.WindowCenter), float(img.WindowWidth)) == (40.0, 80.0)
    assert list(img.PatientOrientation) == ["L", "P"]


def test_dicom_mask_without_its_image_falls_back_with_a_note(tmp_path: Path) -> None:
    import pydicom

    # the record says the 3D mask segments the 2D image: no SEG can refer to it
    m = phantom(tmp_path, volume_mask={"segments": "image"})
    m.generate_to(tmp_path / "d", 1, format="dicom", seed=1, **PARAMS)
    side = json.loads((tmp_path / "d" / "synthmed.json").read_text())
    assert "not a DICOM SEG" in side["run"]["dicom"]["notes"]["volume_mask"]
    # today's multi-frame Secondary Capture, frames along the slice axis
    ds = pydicom.dcmread(tmp_path / "d" / "volume_mask" / "000000.dcm")
    assert int(ds.NumberOfFrames) == 64 and ds.ConversionType == "SYN"
    assert pydicom.dcmread(tmp_path / "d" / "mask" / "000000.dcm").Modality == "SEG"


def test_dicom_resume_skips_written_series_and_removes_partial_ones(written: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "d"
    shutil.copytree(written["dcm"], folder)
    (folder / "volume" / ".000001.tmp-99").mkdir()
    (folder / "volume" / ".000001.tmp-99" / "0001.dcm").write_bytes(b"partial")
    before = sorted(p.name for p in (folder / "volume" / "000000").iterdir())
    res = written["model"].generate_to(folder, 3, format="dicom", seed=7, **PARAMS)
    assert res.written == 1 and res.skipped == 2
    assert not (folder / "volume" / ".000001.tmp-99").exists()
    assert sorted(p.name for p in (folder / "volume" / "000000").iterdir()) == before
    assert len(list((folder / "volume" / "000002").iterdir())) == 64


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools' dciodvfy is not installed")
def test_dciodvfy_finds_no_errors(written: dict[str, Any]) -> None:
    files = [written["dcm"] / "volume" / "000000" / "0001.dcm", written["dcm"] / "volume_mask" / "000000.dcm",
             written["dcm"] / "image" / "000000.dcm", written["dcm"] / "mask" / "000000.dcm"]
    for f in files:
        out = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert not errors, (f, errors)


def test_dicom_and_png_share_one_window_policy(tmp_path: Path) -> None:
    """--window (window=) sets the DICOM window as it sets the PNG's; without it both use the
    record's or CT's default (one owner: registry/outputs.py)."""
    import pydicom

    m = phantom(tmp_path)
    m.generate_to(tmp_path / "w", 1, format="dicom", seed=1, window=(60, 120), **PARAMS)
    first = _series(tmp_path / "w" / "volume" / "000000")[0]
    assert (float(first.WindowCenter), float(first.WindowWidth)) == (60.0, 120.0)
    img = pydicom.dcmread(tmp_path / "w" / "image" / "000000.dcm")
    assert (float(img.WindowCenter), float(img.WindowWidth)) == (60.0, 120.0)
    # --bit-depth 16 (a PNG option: the full range) does not take the DICOM's window away
    m.generate_to(tmp_path / "b", 1, format="dicom", seed=1, bit_depth=16, **PARAMS)
    img = pydicom.dcmread(tmp_path / "b" / "image" / "000000.dcm")
    assert (float(img.WindowCenter), float(img.WindowWidth)) == (40.0, 80.0)  # the head record's brain window


def _dciodvfy_errors(path: Path) -> list[str]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.parametrize("spacing", [[1.5, 1.5], None], ids=["spacing", "no-spacing"])
def test_a_2d_dicom_seg_reads_back_with_highdicom_and_passes_dciodvfy(tmp_path: Path, spacing: Any) -> None:
    """`generate phantom-lesion --outputs image,mask --format dicom --param dims=2`: the
    mask's SEG has a complete Pixel Measures (spacing and a 1 mm slice thickness, as the
    NIfTI twin's third axis) or none, so highdicom reads it back (issue #26)."""
    import highdicom as hd
    import pydicom

    m = phantom(tmp_path)
    if not spacing:
        data = json.loads(RECORD.read_text())
        for out in data["outputs"]:
            if out["dims"] == 2:
                out.pop("spacing_mm", None)
        m = Model(package_for(to_record(data, str(tmp_path / "p.json")), ARTEFACT, tmp_path / "p"), RunnerOptions())
    want = m.sample(2, seed=7, dims=2)["mask"]
    m.generate_to(tmp_path / "d", 2, format="dicom", seed=7, outputs=["image", "mask"], dims=2)
    for i in range(2):
        path = tmp_path / "d" / "mask" / f"{i:06d}.dcm"
        seg = hd.seg.segread(path)
        measures = seg.SharedFunctionalGroupsSequence[0].get("PixelMeasuresSequence")
        if spacing:
            assert [float(x) for x in measures[0].PixelSpacing] == spacing
            assert float(measures[0].SliceThickness) == 1.0
        else:
            assert measures is None
        image = pydicom.dcmread(tmp_path / "d" / "image" / f"{i:06d}.dcm")
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == image.SeriesInstanceUID
        got = seg.get_pixels_by_source_instance([image.SOPInstanceUID], segment_numbers=[1])
        assert np.array_equal(got[0, :, :, 0] != 0, np.squeeze(want[i]) != 0)
        if shutil.which("dciodvfy"):
            assert not _dciodvfy_errors(path), path
            assert not _dciodvfy_errors(tmp_path / "d" / "image" / f"{i:06d}.dcm")


def test_medigan_dataset_items_keep_every_output(tmp_path: Path) -> None:
    """get_as_torch_dataset("phantom-lesion")'s medigan items: image as "sample", its
    mask as "mask", the volume as "other_imaging_output", and the volume's mask under its
    own name, "volume_mask", not dropped (issue #26)."""
    from synthmed.datasets import SyntheticDataset

    m = phantom(tmp_path)
    want = m.sample(1, seed=3, **PARAMS)
    item = SyntheticDataset(m.for_run(1).spec(), 1, seed=3, params=PARAMS, item_format="medigan")[0]
    assert set(item) == {"sample", "mask", "other_imaging_output", "volume_mask"}
    assert np.array_equal(np.asarray(item["volume_mask"]), want["volume_mask"][0])
    assert np.array_equal(np.asarray(item["other_imaging_output"]), want["volume"][0])
