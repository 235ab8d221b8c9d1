"""Threat model: files synthmed decodes and folders it packs (issue #22, items 5, 11, 12,
13 and 16b; docs/threat-model.md names each test).

- an array input (PNG, NPY, NIfTI, DICOM) or a reference image is refused from its header
  before it is decoded when it declares more than the limit; a gzip'd NIfTI and a deflated
  DICOM are never inflated past it (peak memory of a child process, generous bounds);
- Pillow's decompression-bomb limit is a refusal, and a PNG declaring 100000x100000 gives a
  one-line error;
- one-line errors, never tracebacks, for a damaged cached-features file (recomputed), an
  ``--input`` naming a device or a FIFO (never opened), a pipeline file nested 100,000
  levels deep, ``package init`` onto a dangling symbolic link;
- ``package test`` and ``contribute`` refuse a FIFO in the package folder (never opened)
  and ``package.weights`` outside the package;
- ``reference add`` refuses a bad set name before torch is imported.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synthmed.cli import main
from synthmed.registry.array_inputs import check_inputs
from synthmed.registry.errors import ContributeError, InputError, ModelRunError
from synthmed.registry.records import Record
from synthmed.registry.settings import Settings

from helpers import REPO_ROOT
from helpers.packages import make_zip
from helpers.records import package_record, to_record

MASK = {"name": "mask", "kind": "mask", "dims": 2, "shape": [8, 8], "dtype": "uint8", "channels": 1,
        "value_range": [0, 1]}
VOLUME = {"name": "ct", "kind": "image", "dims": 3, "shape": [8, 8, 8], "dtype": "int16", "channels": 1}
MIB = 1 << 20


def _record(spec: dict[str, Any]) -> Record:
    return Record(data={"id": "bomb-target", "version": "1.0.0", "array_inputs": [spec]}, path="<test>")


# a child process reads the input and reports how much its peak memory grew doing so
CHILD = r'''
import json, resource, sys
import numpy, nibabel, pydicom, PIL.Image
from synthmed.registry.array_inputs import check_inputs
from synthmed.registry.errors import InputError
from synthmed.registry.records import Record

spec = json.loads(sys.argv[2])
rec = Record(data={"id": "bomb-target", "version": "1.0.0", "array_inputs": [spec]}, path="<test>")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    check_inputs(rec, {spec["name"]: sys.argv[1]})
    out = {"error": None}
except InputError as exc:
    out = {"error": str(exc)}
out["grew_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(out))
'''


def _read_in_child(path: Path, spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), json.dumps(spec)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _zeros_into(out: Any, n: int) -> None:
    chunk = bytes(16 * MIB)
    while n > 0:
        out.write(chunk[:min(n, len(chunk))])
        n -= len(chunk)


def _nifti_header(shape: tuple[int, ...], dtype: Any, vox_offset: int = 352) -> bytes:
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr["vox_offset"] = vox_offset
    return bytes(hdr.binaryblock)


# --- item 5: inputs bounded by their declared size before decoding -----------------------


def test_a_small_nii_gz_declaring_a_huge_volume_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    """Item 5: 512 MiB of voxels in a few hundred KiB of gzip; the input declares 8x8x8."""
    path = tmp_path / "bomb.nii.gz"
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(_nifti_header((1024, 1024, 256), np.int16) + b"\0" * 4)
        _zeros_into(out, 1024 * 1024 * 256 * 2)
    assert path.stat().st_size < 4 * MIB
    got = _read_in_child(path, VOLUME)
    assert got["error"] and "declares an array of 1024x1024x256 int16" in got["error"], got
    assert "refused before decoding" in got["error"] and "max_decoded_bytes" in got["error"]
    assert got["grew_mib"] < 128, got  # decoding it would take 512 MiB


def test_a_nifti_extension_bomb_is_not_inflated(tmp_path: Path) -> None:
    """Item 5, the gzip stream bounded too: a valid 8x8x8 header followed by a 256 MiB
    extension of zeros (nibabel reads extensions whole) is refused at the stream's cap."""
    esize = 256 * MIB
    path = tmp_path / "ext.nii.gz"
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(_nifti_header((8, 8, 8), np.int16, vox_offset=352 + esize) + bytes([1, 0, 0, 0]))
        out.write(struct.pack("<ii", esize, 0))
        _zeros_into(out, esize - 8)
        out.write(bytes(8 * 8 * 8 * 2))
    got = _read_in_child(path, VOLUME)
    assert got["error"] and "refused" in got["error"] and "ext.nii.gz" in got["error"], got
    assert got["grew_mib"] < 128, got


def _deflated_dicom(path: Path, rows: int, cols: int) -> None:
    """A deflated DICOM (1.2.840.10008.1.2.1.99) of rows x cols 16-bit zeros, written as a
    stream (the test never holds the pixels)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    head.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(head, meta)
    n = rows * cols * 2
    comp = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "wb") as out:
        out.write(head.getvalue())
        out.write(comp.compress(body.getvalue() + b"\xe0\x7f\x10\x00OW\0\0" + struct.pack("<I", n)))
        zeros = bytes(16 * MIB)
        while n > 0:
            out.write(comp.compress(zeros[:min(n, len(zeros))]))
            n -= len(zeros)
        out.write(comp.flush())


def test_a_deflated_dicom_is_inflated_only_up_to_the_limit(tmp_path: Path) -> None:
    """Item 5: 512 MiB of pixels deflated into a small file, for an 8x8 mask."""
    path = tmp_path / "bomb.dcm"
    _deflated_dicom(path, 16384, 16384)
    assert path.stat().st_size < 4 * MIB
    got = _read_in_child(path, MASK)
    assert got["error"] and "bomb.dcm" in got["error"] and "refused" in got["error"], got
    assert got["grew_mib"] < 200, got  # pydicom alone would inflate 512 MiB, then decode it


def test_png_and_npy_headers_are_checked_before_decoding(tmp_path: Path) -> None:
    """Item 5: a PNG's IHDR and an NPY header decide before any pixel is decoded (the PNG's
    data is cut short: decoding it would fail differently)."""
    png = tmp_path / "big.png"
    _png_header_only(png, 9000, 9000)
    with pytest.raises(InputError, match=r"declares a 9000x9000 L image, 81000000 bytes .* refused before decoding"):
        check_inputs(_record(MASK), {"mask": png})
    npy = tmp_path / "big.npy"
    with open(npy, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (4096, 4096, 8)})
    with pytest.raises(InputError, match=r"declares an array of 4096x4096x8 float64.* refused before decoding"):
        check_inputs(_record(MASK), {"mask": npy})


def test_the_site_setting_bounds_decoding(tmp_path: Path) -> None:
    """Item 5: ``[inputs] max_decoded_bytes`` in site.toml reaches the readers."""
    from synthmed.registry.decoding import DEFAULT_MAX_DECODED_BYTES
    from synthmed.registry.runner import RunnerOptions
    from synthmed.registry.settings import InputSettings, load_settings

    assert InputSettings().max_decoded_bytes == DEFAULT_MAX_DECODED_BYTES
    (tmp_path / "site.toml").write_text("[inputs]\nmax_decoded_bytes = 100\n")
    settings = load_settings(tmp_path, environ={})
    assert settings.inputs.max_decoded_bytes == 100
    assert RunnerOptions.from_settings(settings).max_decoded_bytes == 100
    np.save(tmp_path / "m.npy", np.zeros((8, 8), np.uint8))  # 64 bytes: under the limit
    check_inputs(_record(MASK), {"mask": tmp_path / "m.npy"}, max_decoded_bytes=100)
    np.save(tmp_path / "m.npy", np.zeros((8, 8), np.int16))  # 128 bytes
    with pytest.raises(InputError, match="limit of 100 bytes"):
        check_inputs(_record(MASK), {"mask": tmp_path / "m.npy"}, max_decoded_bytes=100)
    (tmp_path / "site.toml").write_text("[inputs]\nmax_decoded_bytes = 0\n")
    with pytest.raises(Exception, match="max_decoded_bytes"):
        load_settings(tmp_path, environ={})


# --- item 11: PNG bombs in reference sets -------------------------------------------------


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG with a real IHDR for w x h grayscale and a few rows of data (cut short)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = zlib.compress(bytes(min(h, 4) * (w + 1)))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def extractor() -> Any:
    from synthmed.registry.measuring.extractors import FeatureExtractor, load_extractor_file

    index = REPO_ROOT / "index"
    rec = load_extractor_file(index / "extractors" / "randconv-224" / "1.0.0.json")
    return FeatureExtractor.from_file(rec, index / "artefacts" / "extractors" / "randconv-224" / "1.0.0.safetensors")


def _reference_folder(folder: Path, bomb: tuple[int, int]) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    Image.fromarray(np.full((24, 24), 7, np.uint8)).save(folder / "0.png")
    _png_header_only(folder / "1.png", *bomb)
    return folder


@pytest.mark.parametrize("size, expect", [
    ((9500, 9500), r"9500x9500 image has 90250000 pixels, more than Pillow's decompression-bomb limit"),
    ((100000, 100000), r"1.png: Image size \(10000000000 pixels\) exceeds limit"),
])
def test_png_bombs_in_a_reference_set_are_refused_in_one_line(tmp_path: Path, extractor: Any,
                                                              size: tuple[int, int], expect: str) -> None:
    """Item 11: Pillow's bomb warning is a refusal (9500x9500), and its bomb error
    (100000x100000) a one-line error of the reference set, not a traceback."""
    from synthmed.registry.errors import EvaluationError
    from synthmed.registry.measuring.evaluate import config_key
    from synthmed.registry.measuring.reference_sets import add_reference

    src = _reference_folder(tmp_path / "imgs", size)
    settings = Settings(home=tmp_path / "site")
    with pytest.raises(EvaluationError, match=expect) as info:
        add_reference(settings, "bombs", src, extractor=extractor, config_key=config_key(extractor))
    assert "Traceback" not in str(info.value) and not (settings.references_dir / "bombs").exists()


# --- item 12: one-line errors instead of tracebacks ---------------------------------------


def test_a_damaged_cached_features_file_is_computed_again(tmp_path: Path, extractor: Any) -> None:
    """Item 12: a truncated or garbled features file of a reference set is recomputed (and
    replaced), never a traceback."""
    from PIL import Image

    from synthmed.registry.measuring.evaluate import config_key
    from synthmed.registry.measuring.reference_sets import add_reference, open_reference

    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(4):
        Image.fromarray(np.full((24, 24), 40 * i, np.uint8)).save(src / f"{i}.png")
    settings = Settings(home=tmp_path / "site")
    key = config_key(extractor)
    ref = add_reference(settings, "ct", src, extractor=extractor, config_key=key)
    cache = ref.folder / "features" / f"{key}.npz"  # type: ignore[operator]
    good = ref.features(extractor, key)
    whole = cache.read_bytes()
    for damage in (whole[: len(whole) // 2], b"PK\x03\x04" + b"\0" * 40, b"not a zip at all"):
        cache.write_bytes(damage)
        again = open_reference(settings, "ct").features(extractor, key)
        assert np.allclose(again, good)
        assert cache.read_bytes() != damage  # replaced by a good one


@pytest.mark.parametrize("what", ["device", "fifo"])
def test_an_input_naming_a_device_or_a_fifo_is_refused_without_opening_it(tmp_path: Path, what: str) -> None:
    """Item 12: ``--input mask=/dev/null`` or a FIFO: refused by name (stat only; opening a
    FIFO would block)."""
    if what == "device":
        path = Path("/dev/null")
    else:
        path = tmp_path / "mask.png"
        os.mkfifo(path)
    with pytest.raises(InputError, match="is neither a folder nor a regular file"):
        check_inputs(_record(MASK), {"mask": path})


def test_a_pipeline_file_nested_100000_levels_is_refused(tmp_path: Path) -> None:
    """Item 12: a deep pipeline.json is a ModelRunError naming the depth, not a RecursionError."""
    from synthmed.registry.packages import prepare_archive
    from synthmed.registry.pipeline import load_spec

    deep = '{"format": "synthmed-pipeline-1", "stages": ' + "[" * 100_000 + "]" * 100_000 + "}"
    zp = make_zip(tmp_path / "p.zip", {"pipeline.json": deep})
    data = package_record("a-pipeline", zp, package_format="synthmed-pipeline-1", package_entry_point="pipeline.json")
    pkg = prepare_archive(to_record(data), zp, tmp_path / "packages")
    with pytest.raises(ModelRunError, match="more than 64 levels deep"):
        load_spec(pkg)


def test_package_init_onto_a_dangling_symlink_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Item 12: ``package init LINK`` where LINK points nowhere: a one-line error."""
    link = tmp_path / "pkg"
    link.symlink_to(tmp_path / "nowhere")
    assert main(["package", "init", str(link)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is a symbolic link to" in err and "does not exist" in err
    assert "Traceback" not in err and not (tmp_path / "nowhere").exists()


# --- item 13: package tools on hostile package folders ------------------------------------


@pytest.fixture()
def package_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "my-model"
    assert main(["package", "init", str(folder)]) == 0
    return folder


def test_package_test_refuses_a_fifo_in_the_package(package_dir: Path) -> None:
    """Item 13: ``package test`` on a folder holding a FIFO: refused by path, no hang."""
    os.mkfifo(package_dir / "pipe.bin")
    try:
        proc = subprocess.run([sys.executable, "-m", "synthmed.cli", "package", "test", str(package_dir)],
                              capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("package test hung on a FIFO in the package folder")
    assert proc.returncode == 1, proc.stderr
    assert f"error: {package_dir / 'pipe.bin'}: the package holds a FIFO" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_contribute_zip_refuses_a_fifo_in_the_package(package_dir: Path, tmp_path: Path) -> None:
    """Item 13: the zip ``contribute`` makes (the same as ``package test``'s) refuses a FIFO
    by path without opening it (a reader thread would block forever on it)."""
    from synthmed.registry.authoring.contribute_package import reproducible_zip

    fifo = package_dir / "pipe.bin"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            reproducible_zip(package_dir, tmp_path / "out.zip")
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)
    if t.is_alive():  # it opened the FIFO: unblock it (a writer that closes at once), then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(30)
        pytest.fail("the contribution zip opened a FIFO in the package folder")
    assert isinstance(outcome[0], ContributeError) and "the package holds a FIFO" in str(outcome[0])


@pytest.mark.parametrize("weights", ["../outside.bin", "/etc/hostname", "sub/../../outside.bin"])
def test_package_weights_outside_the_package_are_refused(package_dir: Path, weights: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Item 13: ``package.weights`` must name a file inside the package."""
    (package_dir.parent / "outside.bin").write_bytes(b"\0" * 16)
    meta_path = package_dir / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta.setdefault("package", {})["weights"] = weights
    meta_path.write_text(json.dumps(meta))
    assert main(["package", "test", str(package_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"package.weights names {weights!r}, a path outside the package" in err


# --- item 16b: reference add checks its name before loading torch -------------------------


def test_reference_add_refuses_a_bad_name_before_importing_torch(tmp_path: Path) -> None:
    code = ("import sys; from synthmed.cli import main; "
            f"rc = main(['--site', {str(tmp_path / 'site')!r}, 'reference', 'add', 'Bad Name', {str(tmp_path)!r}]); "
            "print(rc, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.split() == ["1", "False"], (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: 'Bad Name' is not a valid reference-set name")
