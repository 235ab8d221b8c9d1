"""Helpers for the runner/SDK tests: small real torch models packaged as zips in
tmp_path, with records whose sha256 is computed from the zip."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

from synthmed.registry.records import Record, load_record_text
from synthmed.registry.packages import VerifiedPackage, prepare_archive

if TYPE_CHECKING:
    from synthmed.registry.catalog import CatalogEntry

HERE = Path(__file__).parent

# --- package code ------------------------------------------------------------------

TOY_MODEL = '''
import torch
from torch import nn

from .net import Net


class Toy:
    def __init__(self, package_dir, device):
        self.device = device
        self.net = Net()
        state = torch.load(package_dir / "weights.pt", map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.net.to(device=device, dtype=torch.float64).eval()

    @torch.no_grad()
    def sample(self, seeds, label="benign"):
        z = torch.stack([torch.randn(16, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64)
                         for s in seeds]).to(self.device)
        if label == "malignant":
            z = z + 1.0
        x = self.net(z)
        img = ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        return {"image": img}


def build(package_dir, device):
    return Toy(package_dir, device)
'''

TOY_NET = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 64)
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, z):
        x = self.fc(z).view(-1, 1, 8, 8)
        return torch.tanh(self.conv(x)).view(-1, 8, 8)
'''

FAULTY_MODEL = '''
import os
import signal
import sys
import time

import numpy as np


class Faulty:
    def sample(self, seeds, behave="ok"):
        if behave == "raise":
            raise ValueError("the generator exploded on purpose")
        if behave == "hang":
            time.sleep(3600)
        if behave == "segv":
            sys.stderr.write("about to crash\\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGSEGV)
        if behave == "print":
            print("noise on stdout " * 100)
        return {"image": np.stack([np.full((8, 8), s % 256, dtype=np.uint8) for s in seeds])}


def build(package_dir, device):
    return Faulty()
'''

MARKER_MODEL = '''
from pathlib import Path
import numpy as np

Path(__file__).resolve().parent.parent.joinpath("MODEL_CODE_RAN").write_text("imported")


class M:
    def sample(self, seeds, label="benign", steps=10, scale=1.0, flag=False):
        return {"image": np.zeros((len(seeds), 8, 8), dtype=np.uint8)}


def build(package_dir, device):
    Path(package_dir).parent.joinpath("MODEL_CODE_RAN").write_text("built")
    return M()
'''

VOLUME_MODEL = '''
import numpy as np


class V:
    def sample(self, seeds):
        out = []
        for s in seeds:
            rng = np.random.default_rng(int(s))
            out.append(rng.random((6, 5, 4), dtype=np.float32))
        mask = np.stack([(v > 0.5).astype(np.uint8) for v in out])
        return {"volume": np.stack(out), "mask": mask}


def build(package_dir, device):
    return V()
'''

RGB_MODEL = '''
import numpy as np


class R:
    def sample(self, seeds):
        imgs = [np.random.default_rng(int(s)).integers(0, 256, (10, 12, 3), dtype=np.uint8) for s in seeds]
        deep = [np.random.default_rng(int(s) + 7).integers(0, 65536, (10, 12), dtype=np.uint16) for s in seeds]
        return {"image": np.stack(imgs), "depth": np.stack(deep)}


def build(package_dir, device):
    return R()
'''

DEP_MODEL = '''
import numpy as np
import smtestdep


class D:
    def sample(self, seeds):
        return {"image": np.stack([np.full((8, 8), smtestdep.VALUE + (s % 7), dtype=np.uint8) for s in seeds])}


def build(package_dir, device):
    return D()
'''

# medigan's own layout: a folder with __init__.py (generate) and its weights, relative imports
MEDIGAN_INIT = '''
import os

import numpy as np
import torch

from .model import Generator


def generate(model_file, num_samples, output_path, save_images: bool, shift=0.0, **kwargs):
    net = Generator()
    net.load_state_dict(torch.load(model_file, map_location="cpu", weights_only=True))
    net.eval()
    with torch.no_grad():
        z = torch.randn(num_samples, 8, dtype=torch.float64)
        x = net.to(torch.float64)(z) + float(shift)
    images = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    images = [img[:, :, None] for img in images]   # HxWx1, as medigan models return
    if save_images:
        from PIL import Image
        os.makedirs(output_path, exist_ok=True)
        for i, img in enumerate(images):
            Image.fromarray(img[:, :, 0]).save(os.path.join(output_path, f"{i}.png"))
        return None
    return images
'''

MEDIGAN_MODEL = '''
import torch
from torch import nn


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 36)

    def forward(self, z):
        return torch.tanh(self.fc(z)).view(-1, 6, 6)
'''


def toy_weights() -> bytes:
    torch.manual_seed(0)
    ns: dict[str, Any] = {}
    exec(TOY_NET, ns)
    net = ns["Net"]()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return buf.getvalue()


def medigan_weights() -> bytes:
    torch.manual_seed(1)
    ns: dict[str, Any] = {}
    exec(MEDIGAN_MODEL, ns)
    buf = io.BytesIO()
    torch.save(ns["Generator"]().state_dict(), buf)
    return buf.getvalue()


# --- records -----------------------------------------------------------------------

BASE_RECORD = json.loads((HERE / "fixtures" / "records" / "valid" / "full.json").read_text())

IMAGE_8 = {"name": "image", "kind": "image", "dims": 2, "shape": [8, 8], "dtype": "uint8", "channels": 1,
           "value_range": [0, 255]}


def make_zip(files: Mapping[str, str | bytes], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            data = files[name]
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data.encode() if isinstance(data, str) else data)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record_dict(model_id: str, zip_path: Path | None, **fields: Any) -> dict[str, Any]:
    """A valid record for ``model_id``; ``fields`` replace top-level keys or, with a
    ``package_`` prefix, keys of ``package``."""
    data = copy.deepcopy(BASE_RECORD)
    data["id"] = model_id
    data["title"] = f"Test model {model_id}"
    data["task"] = "unconditional"
    data["inputs"] = {"type": "object", "properties": {}, "additionalProperties": False}
    data["outputs"] = [dict(IMAGE_8)]
    data["test"] = {"num_samples": 4, "seed": 0, "timeout_s": 60}
    data["package"]["requirements"] = []
    data["package"].pop("devices", None)
    for key, value in fields.items():
        if key.startswith("package_"):
            data["package"][key[len("package_"):]] = value
        else:
            data[key] = value
    if zip_path is not None:
        data["package"]["artefact"] = {
            "sha256": sha256_of(zip_path), "size": zip_path.stat().st_size,
            "media_type": "application/zip", "sources": [zip_path.resolve().as_uri()],
        }
    return data


def to_record(data: Mapping[str, Any], where: str = "<test>") -> Record:
    return load_record_text(json.dumps(data), where)


def unpack(zip_path: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(dest)
    return dest


def build_package(tmp: Path, model_id: str, files: Mapping[str, str | bytes],
                  **fields: Any) -> tuple[Record, VerifiedPackage, Path]:
    """Zip ``files``, write a record pinned to the zip's sha256, prepare it (verify, unpack).
    Returns (record, package, zip_path)."""
    zip_path = make_zip(files, tmp / "artefacts" / f"{model_id}.zip")
    data = record_dict(model_id, zip_path, **fields)
    record = to_record(data, str(tmp / f"{model_id}.json"))
    return record, prepare_archive(record, zip_path, tmp / "packages", upstream="public"), zip_path


def package_for(record: Record, zip_path: Path, tmp: Path) -> VerifiedPackage:
    """``zip_path`` prepared for ``record`` (which must pin it)."""
    return prepare_archive(record, zip_path, tmp / "packages", upstream="public")


TOY_INPUTS = {"type": "object", "properties": {"label": {"enum": ["benign", "malignant"], "default": "benign"}},
              "additionalProperties": False}


def toy_package(tmp: Path, model_id: str = "toy-gan", **fields: Any) -> tuple[Record, VerifiedPackage, Path]:
    files = {"toymodel/__init__.py": "", "toymodel/model.py": TOY_MODEL, "toymodel/net.py": TOY_NET,
             "weights.pt": toy_weights()}
    fields.setdefault("inputs", TOY_INPUTS)
    fields.setdefault("task", "class-conditional")
    return build_package(tmp, model_id, files, package_entry_point="toymodel.model:build", **fields)


def faulty_package(tmp: Path, model_id: str = "faulty-model") -> tuple[Record, VerifiedPackage, Path]:
    inputs = {"type": "object", "properties": {"behave": {"enum": ["ok", "raise", "hang", "segv", "print"],
                                                            "default": "ok"}},
              "additionalProperties": False}
    return build_package(tmp, model_id, {"faulty.py": FAULTY_MODEL}, package_entry_point="faulty:build",
                         inputs=inputs)


def marker_package(tmp: Path, model_id: str = "marker-model") -> tuple[Record, VerifiedPackage, Path]:
    inputs = {"type": "object", "additionalProperties": False, "properties": {
        "label": {"enum": ["benign", "malignant"], "default": "benign"},
        "steps": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
        "scale": {"type": "number", "default": 1.0},
        "flag": {"type": "boolean", "default": False},
    }}
    return build_package(tmp, model_id, {"markermod.py": MARKER_MODEL}, package_entry_point="markermod:build",
                         inputs=inputs)


def volume_package(tmp: Path, model_id: str = "toy-volume") -> tuple[Record, VerifiedPackage, Path]:
    outputs = [
        {"name": "volume", "kind": "volume", "dims": 3, "shape": [6, 5, 4], "dtype": "float32", "channels": 1,
         "value_range": [0, 1], "spacing_mm": [0.5, 0.75, 2.0]},
        {"name": "mask", "kind": "mask", "dims": 3, "shape": [6, 5, 4], "dtype": "uint8", "channels": 1,
         "value_range": [0, 1], "spacing_mm": [0.5, 0.75, 2.0]},
    ]
    return build_package(tmp, model_id, {"volmod.py": VOLUME_MODEL}, package_entry_point="volmod:build",
                         outputs=outputs, modality=["MR"])


def rgb_package(tmp: Path, model_id: str = "toy-rgb") -> tuple[Record, VerifiedPackage, Path]:
    outputs = [
        {"name": "image", "kind": "image", "dims": 2, "shape": [10, 12], "dtype": "uint8", "channels": 3,
         "value_range": [0, 255]},
        {"name": "depth", "kind": "other", "dims": 2, "shape": [10, 12], "dtype": "uint16", "channels": 1,
         "value_range": [0, 65535]},
    ]
    return build_package(tmp, model_id, {"rgbmod.py": RGB_MODEL}, package_entry_point="rgbmod:build",
                         outputs=outputs)


def medigan_package(tmp: Path, model_id: str = "medigan-toy", folder: str = "toy_medigan_dcgan",
                    entry_point: str | None = None) -> tuple[Record, VerifiedPackage, Path]:
    files = {f"{folder}/__init__.py": MEDIGAN_INIT, f"{folder}/model.py": MEDIGAN_MODEL,
             f"{folder}/generator.pt": medigan_weights()}
    outputs = [{"name": "image", "kind": "image", "dims": 2, "shape": [6, 6], "dtype": "uint8", "channels": 1,
                "value_range": [0, 255]}]
    inputs = {"type": "object", "properties": {"shift": {"type": "number", "default": 0.0}},
              "additionalProperties": False}
    return build_package(tmp, model_id, files, package_format="medigan-1", package_entry_point=entry_point or folder,
                         package_weights=f"{folder}/generator.pt", package_generate_args={"shift": 0.0},
                         outputs=outputs, inputs=inputs)


# --- a local wheel, for worker environments built without network ------------------

def make_wheel(dest: Path, name: str = "smtestdep", version: str = "2.0.0", value: int = 40,
               requires: tuple[str, ...] = ()) -> Path:
    """A pure-python wheel written by hand (no build backend, no network)."""
    dest.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = {value}\n__version__ = {version!r}\n",
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: " + name + "\nVersion: " + version + "\n"
                            + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: synthmed-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record_lines = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record_lines.append(f"{path},sha256={digest},{len(text.encode())}")
    record_lines.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record_lines) + "\n"
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def dep_package(tmp: Path, model_id: str = "dep-model", requirement: str = "smtestdep==2.0.0") -> tuple[Record, VerifiedPackage, Path]:
    return build_package(tmp, model_id, {"depmod.py": DEP_MODEL}, package_entry_point="depmod:build",
                         package_requirements=[requirement, "numpy>=1.20"])


# --- a site whose catalog holds the given records ------------------------------------

def make_site_home(home: Path, records: list[Mapping[str, Any]], upstream: str = "public") -> Path:
    """A site folder with a real catalog holding ``records`` (as a sync would leave it).
    Packages are not mirrored: the SDK fetches them on demand from their file:// sources."""
    from synthmed.registry.catalog import Catalog
    from synthmed.registry.records import record_relpath

    home.mkdir(parents=True, exist_ok=True)
    cat = Catalog.open(home / "catalog.db", readonly=False)
    try:
        cat.put_upstream(upstream, url=str(home / "no-index"), branch="main", priority=100)
        for data in records:
            rel = record_relpath(data["id"], data["version"])
            cat.upsert_record(upstream, rel, to_record(data, rel), "0" * 40)
        cat.refresh_latest(upstream, [d["id"] for d in records])
    finally:
        cat.close()
    return home


def catalog_entry(record: Record, *, upstream: str = "public", index_repo: Path | None = None,
                  index_commit: str | None = None, index_subfolder: str = "") -> "CatalogEntry":
    """A catalog entry for ``record`` as a sync would make it (for prepare())."""
    from synthmed.registry.catalog import CatalogEntry

    return CatalogEntry(upstream=upstream, id=record.id, version=record.version, record=record,
                        index_repo=index_repo or Path("."), index_commit=index_commit or "HEAD",
                        index_subfolder=index_subfolder, artefact_state="missing", status=record.status)
