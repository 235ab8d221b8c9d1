"""Package builders: zips and tars, small model packages in tmp_path (pinned records
from :mod:`.records`), and a hand-written wheel for worker environments.

The numpy-only packages (faulty, marker, volume, rgb, dep, the model-test
``MODEL_CODE``) never import torch, so a worker for them starts without it; the toy GAN
and the medigan-style package use torch (imported here only when their weights are made).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

from synthmed.registry.catalog import CatalogEntry
from synthmed.registry.packages import VerifiedPackage, prepare_archive
from synthmed.registry.records import Record

from .records import IMAGE_8, package_record, to_record, write_record

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

PROBE_MODEL = '''
import sys

import numpy as np


class P:
    def sample(self, seeds, use_torch=False):
        threads = 0
        if use_torch:
            import torch

            threads = torch.get_num_threads()
        loaded = 100 if "torch" in sys.modules else 0
        return {"image": np.stack([np.full((8, 8), loaded + threads, dtype=np.uint8) for s in seeds])}


def build(package_dir, device):
    return P()
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


# --- the model-test package: numpy only, its behaviour chosen when it is written -----------

#: ``MODEL_CODE.format(behaviour=...)``: "good", or one way of being broken
MODEL_CODE = '''
import os
import signal
import time
import numpy as np

BEHAVIOUR = {behaviour!r}


class Model:
    def __init__(self, package_dir, device):
        if BEHAVIOUR == "load-raises":
            raise RuntimeError("cannot find my weights on purpose")
        if BEHAVIOUR == "load-hangs":
            time.sleep(600)
        self.calls = 0

    def sample(self, seeds, label="benign"):
        self.calls += 1
        n = len(seeds)
        imgs = np.stack([np.random.default_rng(int(s) + (7 if label == "malignant" else 0))
                         .integers(0, 256, (8, 8), dtype=np.uint8) for s in seeds])
        if BEHAVIOUR == "wrong-shape":
            return {{"image": imgs[:, :7, :]}}
        if BEHAVIOUR == "wrong-dtype":
            return {{"image": imgs.astype(np.float64)}}
        if BEHAVIOUR == "nan":
            out = imgs.astype(np.float32) / 255.0
            out[1, 2, 3] = np.nan
            return {{"image": out}}
        if BEHAVIOUR == "out-of-range":
            return {{"image": imgs.astype(np.float32) / 255.0 * 2.0}}
        if BEHAVIOUR == "nondeterministic":
            return {{"image": np.random.randint(0, 256, (n, 8, 8)).astype(np.uint8)}}
        if BEHAVIOUR == "batch-dependent":
            return {{"image": (imgs // 2 + n).astype(np.uint8)}}
        if BEHAVIOUR == "raises":
            raise ValueError("the generator exploded on purpose")
        if BEHAVIOUR == "hangs":
            time.sleep(600)
        if BEHAVIOUR == "crashes":
            os.kill(os.getpid(), signal.SIGSEGV)
        return {{"image": imgs}}


def build(package_dir, device):
    return Model(package_dir, device)
'''

FLOAT_IMAGE = {"name": "image", "kind": "image", "dims": 2, "shape": [8, 8], "dtype": "float32", "channels": 1,
               "value_range": [0, 1]}
UINT8_IMAGE = IMAGE_8
INPUTS = {"type": "object", "properties": {"label": {"enum": ["benign", "malignant"], "default": "benign"}},
          "additionalProperties": False}




def model_record(model_id: str, zip_path: Path | None = None, *, output: dict[str, Any] | None = None,
                 test: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of a model-test package (``model:build``, class-conditional)."""
    return package_record(model_id, zip_path, task="class-conditional", inputs=inputs or INPUTS,
                          outputs=[output or UINT8_IMAGE], package_entry_point="model:build",
                          test=test or {"num_samples": 3, "seed": 5, "params": {"label": "malignant"},
                                        "timeout_s": 5})


def make_model(tmp: Path, behaviour: str, model_id: str | None = None,
               **record_kw: Any) -> tuple[Record, VerifiedPackage]:
    """A model-test package of the given behaviour, zipped, pinned and prepared: (record, package)."""
    model_id = model_id or f"model-{behaviour}"
    z = make_zip(tmp / "zips" / f"{model_id}.zip", {"model.py": MODEL_CODE.format(behaviour=behaviour)})
    record = to_record(model_record(model_id, z, **record_kw), f"{model_id}.json")
    return record, prepare_archive(record, z, tmp / "pkgs", upstream="public")


def with_record(tmp: Path, package: VerifiedPackage, data: Mapping[str, Any]) -> VerifiedPackage:
    """The archive of a :func:`make_model` package prepared for an edited record (as an index
    would serve it); refused like any other (an unpinned record raises Unverified)."""
    z = tmp / "zips" / f"{package.record.id}.zip"
    return prepare_archive(Record(data=data, path="x.json"), z, tmp / "pkgs", upstream=package.upstream)


def index_model(root: Path, model_id: str, behaviour: str, **kw: Any) -> dict[str, Any]:
    """A model-test package whose zip lives in the index at ``root`` (an index: source),
    its record pinned and written there; the record dict."""
    rel = f"artefacts/{model_id}/1.0.0.zip"
    z = make_zip(root / rel, {"model.py": MODEL_CODE.format(behaviour=behaviour)})
    data = model_record(model_id, z, **kw)
    data["package"]["artefact"]["sources"] = [f"index:{rel}"]
    write_record(root, data)
    return data


def package_folder(tmp: Path, behaviour: str = "good") -> Path:
    """An unzipped model-test package, with byte code a contributor would not ship."""
    pkg = tmp / f"pkg-{behaviour}"
    (pkg / "__pycache__").mkdir(parents=True, exist_ok=True)
    (pkg / "model.py").write_text(MODEL_CODE.format(behaviour=behaviour))
    (pkg / "weights.txt").write_text("no weights needed\n")
    (pkg / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"junk")
    return pkg


def contribution_metadata(tmp: Path, **over: Any) -> Path:
    """``meta.json`` for contributing a model-test package: its record without format, id,
    version and artefact (``over`` replaces top-level keys)."""
    data = model_record("placeholder")
    for key in ("format", "id", "version"):
        data.pop(key)
    data["package"].pop("artefact")
    data["test"] = {"num_samples": 2, "seed": 3, "params": {"label": "benign"}, "timeout_s": 10}
    data.update(over)
    path = tmp / "meta.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def toy_weights() -> bytes:
    import torch

    torch.manual_seed(0)
    ns: dict[str, Any] = {}
    exec(TOY_NET, ns)
    net = ns["Net"]()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return buf.getvalue()


def medigan_weights() -> bytes:
    import torch

    torch.manual_seed(1)
    ns: dict[str, Any] = {}
    exec(MEDIGAN_MODEL, ns)
    buf = io.BytesIO()
    torch.save(ns["Generator"]().state_dict(), buf)
    return buf.getvalue()


# --- archives ----------------------------------------------------------------------

#: every entry written from a mapping carries this date, so a zip's bytes depend only on its files
ZIP_DATE = (2026, 1, 1, 0, 0, 0)

Entries = Union[Mapping[str, Union[str, bytes]], Iterable[tuple[Union[str, zipfile.ZipInfo], Union[str, bytes]]]]


def zip_bytes(entries: Entries, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``entries``: a mapping (name -> text or bytes) is written sorted by name, a
    sequence of (name or ZipInfo, data) pairs in its order, duplicates and hostile names
    included (a ZipInfo is written as given). Every named entry has :data:`ZIP_DATE`."""
    pairs = sorted(entries.items()) if isinstance(entries, Mapping) else list(entries)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in pairs:
            if isinstance(name, zipfile.ZipInfo):
                info = name
            else:
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
                info.compress_type = compression
            zf.writestr(info, data.encode() if isinstance(data, str) else data)
    return buf.getvalue()


def make_zip(path: Path, entries: Entries, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """:func:`zip_bytes` written to ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zip_bytes(entries, compression))
    return path


def tinfo(name: str, type_: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.linkname = linkname
    return ti


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    """A tar of ``members`` in order (data None: a member without a body: links, devices)."""
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


# --- packages -----------------------------------------------------------------------

def build_package(tmp: Path, model_id: str, files: Mapping[str, str | bytes],
                  **fields: Any) -> tuple[Record, VerifiedPackage, Path]:
    """Zip ``files``, write a record pinned to the zip's sha256 (``fields`` as for
    :func:`.records.package_record`), prepare it (verify, unpack) as a package of upstream
    "public". Returns (record, package, zip_path)."""
    zip_path = make_zip(tmp / "artefacts" / f"{model_id}.zip", files)
    record = to_record(package_record(model_id, zip_path, **fields), str(tmp / f"{model_id}.json"))
    return record, package_for(record, zip_path, tmp), zip_path


def package_for(record: Record, zip_path: Path, tmp: Path) -> VerifiedPackage:
    """``zip_path`` prepared for ``record`` (which must pin it), under ``tmp/packages``."""
    return prepare_archive(record, zip_path, tmp / "packages", upstream="public")


def catalog_entry(record: Record, *, upstream: str = "public", index_repo: Path | None = None,
                  index_commit: str | None = None, index_subfolder: str = "") -> CatalogEntry:
    """A catalog entry for ``record`` as a sync would make it (what prepare() takes)."""
    return CatalogEntry(upstream=upstream, id=record.id, version=record.version, record=record,
                        index_repo=index_repo or Path("."), index_commit=index_commit or "HEAD",
                        index_subfolder=index_subfolder, artefact_state="missing", status=record.status)


TOY_INPUTS = INPUTS


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


def probe_package(tmp: Path, model_id: str = "torch-probe") -> tuple[Record, VerifiedPackage, Path]:
    """A numpy-only model whose pixels tell whether torch is loaded where it runs (100 if
    it is, plus torch's thread count when ``use_torch=True`` made the model import it)."""
    inputs = {"type": "object", "properties": {"use_torch": {"type": "boolean", "default": False}},
              "additionalProperties": False}
    return build_package(tmp, model_id, {"probe.py": PROBE_MODEL}, package_entry_point="probe:build",
                         inputs=inputs)


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
