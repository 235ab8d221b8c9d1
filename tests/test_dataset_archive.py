"""The dataset artefact: reproducible packing, safe unpacking held to the manifest."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from synthmed.registry.artefacts import dataset_archive as da
from synthmed.registry.errors import ArtefactError


def _run_folder(root: Path) -> Path:
    folder = root / "run"
    (folder / "image").mkdir(parents=True)
    files = {}
    for i in range(3):
        data = bytes([i]) * (100 + i)
        (folder / "image" / f"{i:06d}.png").write_bytes(data)
        files[f"image/{i:06d}.png"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (folder / "inputs" / "mask").mkdir(parents=True)
    (folder / "inputs" / "mask" / "a.png").write_bytes(b"mask")
    (folder / "synthmed.json").write_text('{"created": "now"}')  # the sidecar is never packed
    (folder / da.MANIFEST).write_text(json.dumps({"manifest_format": "synthmed-manifest/1",
                                                  "run": {"model": "m@1.0.0"}, "files": files}))
    return folder


def test_pack_is_reproducible_and_round_trips(tmp_path):
    folder = _run_folder(tmp_path)
    a = da.pack(folder, tmp_path / "a.tar")
    (folder / "image" / "000001.png").touch()  # a new mtime changes nothing
    b = da.pack(folder, tmp_path / "b.tar")
    assert a == b
    manifest = da.unpack(tmp_path / "a.tar", tmp_path / "out")
    assert sorted(manifest["files"]) == ["image/000000.png", "image/000001.png", "image/000002.png"]
    assert not (tmp_path / "out" / "synthmed.json").exists()
    assert da.inputs_digest(tmp_path / "out", "mask") == da.inputs_digest(folder, "mask")


def test_pack_refuses_a_file_that_differs_from_the_manifest(tmp_path):
    folder = _run_folder(tmp_path)
    (folder / "image" / "000002.png").write_bytes(b"other")
    with pytest.raises(ArtefactError, match="image/000002.png does not match the manifest"):
        da.pack(folder, tmp_path / "a.tar")
    assert not (tmp_path / "a.tar").exists()


def test_check_folder_names_changed_missing_and_extra_files(tmp_path):
    folder = _run_folder(tmp_path)
    out = tmp_path / "copy"
    shutil.copytree(folder, out)
    (out / "synthmed.json").unlink()
    (out / "image" / "000000.png").write_bytes(b"\x01" * 100)
    (out / "image" / "000001.png").unlink()
    (out / "image" / "extra.png").write_bytes(b"x")
    with pytest.raises(ArtefactError) as err:
        da.check_folder(out)
    msg = str(err.value)
    assert "missing: image/000001.png" in msg and "not in the manifest: image/extra.png" in msg
    assert "changed: image/000000.png" in msg
