"""Published datasets for the tests, built without ``dataset create``/``publish`` (another
branch's commands): a scratch index holding ihc-patch-dcgan, a run generated with the SDK,
packed with ``dataset_archive.pack``, and its record committed into the index."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import git

from synthmed.registry.artefacts import dataset_archive

from . import REPO_ROOT

MODEL = "ihc-patch-dcgan"


def scratch_index(root: Path) -> Path:
    """A git index holding only ihc-patch-dcgan@1.0.0 (record and its index: artefact)."""
    index = root / "index"
    for rel in (f"models/{MODEL}/1.0.0.json", f"artefacts/{MODEL}/1.0.0.zip"):
        (index / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / "index" / rel, index / rel)
    repo = git.Repo.init(index, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "test").set_value("user", "email", "test@example.org")
        cw.set_value("commit", "gpgsign", "false")
    repo.git.add("-A")
    repo.git.commit("-m", "ihc-patch-dcgan")
    return index


def model_sha256() -> str:
    data = json.loads((REPO_ROOT / "index" / "models" / MODEL / "1.0.0.json").read_text())
    return str(data["package"]["artefact"]["sha256"])


def dataset_record(run: Path, sha: str, size: int, *, dataset_id: str, version: str, source: str,
                   **over: Any) -> dict[str, Any]:
    manifest = json.loads((run / dataset_archive.MANIFEST).read_text())["run"]
    data: dict[str, Any] = {
        "format": "synthmed-dataset/1", "id": dataset_id, "version": version,
        "title": "IHC patches, seeds 7..22", "summary": "16 synthetic IHC colon patches from ihc-patch-dcgan",
        "status": "active", "modality": ["histopathology", "IHC"], "anatomy": ["colon"], "tags": ["test"],
        "model": {"id": MODEL, "version": "1.0.0", "sha256": manifest["sha256"], "package_format": "synthmed-1"},
        "generation": {"outputs": manifest["outputs"], "params": manifest["params"], "options": manifest["options"],
                       "first_seed": manifest["seeds"]["first"], "count": manifest["num_samples"],
                       "file_format": "png", "layout": "synthmed", "device": "cpu",
                       "manifest_sha256": hashlib.sha256((run / dataset_archive.MANIFEST).read_bytes()).hexdigest()},
        "artefact": {"sha256": sha, "size": size, "media_type": "application/x-tar", "sources": [source]},
        "license": "MIT", "audit": {"verdict": "pass", "reasons": ["no near-copies"], "n_samples": 16},
        "card": {"intended_use": "tests of the dataset mirror", "limitations": "16 patches only"},
        "authors": [{"name": "Test Author"}],
    }
    data.update(over)
    return data


def publish(index: Path, run: Path, *, dataset_id: str = "ihc-s7", version: str = "1.0.0",
            message: str | None = None, **over: Any) -> dict[str, Any]:
    """Pack ``run`` into ``index/artefacts/datasets/<id>/<version>.tar``, write its record at
    ``datasets/<id>/<version>.json`` and commit both; returns the record."""
    rel = f"artefacts/datasets/{dataset_id}/{version}.tar"
    sha, size = dataset_archive.pack(run, index / rel)
    data = dataset_record(run, sha, size, dataset_id=dataset_id, version=version, source=f"index:{rel}", **over)
    write_dataset(index, data, message or f"dataset {dataset_id}@{version}")
    return data


def write_dataset(index: Path, data: dict[str, Any], message: str) -> None:
    path = index / "datasets" / data["id"] / f"{data['version']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    repo = git.Repo(index)
    repo.git.add("-A")
    repo.git.commit("-m", message)


def nudge_png(run: Path, rel: str) -> Path:
    """A copy of ``run`` whose PNG ``rel`` has one value one grey level off (re-encoded; the
    manifest updated to it)."""
    import numpy as np
    from PIL import Image

    out = run.parent / (run.name + "-nudged")
    shutil.copytree(run, out)
    path = out / rel
    with Image.open(path) as im:
        mode, pixels = im.mode, np.array(im)
    flat = pixels.reshape(-1)
    flat[0] = flat[0] + 1 if flat[0] < 255 else flat[0] - 1
    Image.fromarray(pixels, mode).save(path)
    raw = path.read_bytes()
    manifest = json.loads((out / dataset_archive.MANIFEST).read_text())
    manifest["files"][rel] = {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    (out / dataset_archive.MANIFEST).write_text(json.dumps(manifest, indent=1))
    return out


def tamper_png(run: Path, rel: str) -> Path:
    """A copy of ``run`` whose file ``rel`` has one byte changed inside its pixel data (the
    manifest updated to it, so the artefact is self-consistent: only re-deriving catches it)."""
    out = run.parent / (run.name + "-tampered")
    shutil.copytree(run, out)
    path = out / rel
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    manifest = json.loads((out / dataset_archive.MANIFEST).read_text())
    manifest["files"][rel] = {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    (out / dataset_archive.MANIFEST).write_text(json.dumps(manifest, indent=1))
    return out
