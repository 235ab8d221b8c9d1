"""Record builders: every record starts from ``tests/fixtures/records/valid/full.json``.

- :func:`make_record`: the valid record with dotted-key overrides
- :func:`package_record`: a record for a package zip in tmp_path (pinned to its sha256)
- :func:`unverified` / :func:`with_artefact`: index records without a sha256, or with a
  small artefact in the index itself (an ``index:`` source)
- :func:`write_record`: put a record where an index keeps it (``models/<id>/<version>.json``)
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from synthmed.registry.record_paths import record_relpath
from synthmed.registry.records import Record, load_record_text

from . import FIXTURES

#: one 8x8 uint8 grey image, the output of most test models
IMAGE_8: dict[str, Any] = {"name": "image", "kind": "image", "dims": 2, "shape": [8, 8], "dtype": "uint8",
                           "channels": 1, "value_range": [0, 255]}


@functools.lru_cache(maxsize=1)
def _valid_text() -> str:
    return (FIXTURES / "records" / "valid" / "full.json").read_text()


def load_valid_record() -> dict[str, Any]:
    """A fresh copy of the valid record fixture."""
    data: dict[str, Any] = json.loads(_valid_text())
    return data


def deep_set(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``deep_set(d, "package.artefact.sha256", "x")``; a value of ``...`` deletes the key."""
    keys = dotted.split(".")
    cur: Any = data
    for k in keys[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur[k]
    last = keys[-1]
    if value is ...:
        if isinstance(cur, list):
            del cur[int(last)]
        else:
            del cur[last]
    elif isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value


def make_record(**overrides: Any) -> dict[str, Any]:
    """The valid record; keyword arguments with dotted keys override fields
    (``make_record(**{"package.artefact.sha256": "ab"*32})``)."""
    data = load_valid_record()
    for key, value in overrides.items():
        deep_set(data, key, value)
    return data


def to_record(data: Mapping[str, Any], where: str = "<test>") -> Record:
    """A loaded (validated) :class:`Record` from a record dict."""
    return load_record_text(json.dumps(data), where)


def write_record(index_dir: Path, data: Mapping[str, Any], subfolder: str = "", *, sharded: bool = False) -> Path:
    """Write ``data`` at ``<index_dir>[/<subfolder>]/models/<id>/<version>.json`` (``sharded``:
    at ``models/<shard>/<id>@<version>.json``)."""
    root = index_dir / subfolder if subfolder else index_dir
    path = root / record_relpath(str(data["id"]), str(data["version"]), sharded=sharded)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def artefact_of(path: Path, source: str | None = None,
                media_type: str = "application/zip") -> dict[str, Any]:
    """``package.artefact`` pinned to the file at ``path``; its source is the file's
    ``file://`` URI unless ``source`` names another (``index:...``)."""
    blob = path.read_bytes()
    return {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob), "media_type": media_type,
            "sources": [source or path.resolve().as_uri()]}


def package_record(model_id: str, zip_path: Path | None = None, **fields: Any) -> dict[str, Any]:
    """A valid record for a test package: no requirements, any device, one 8x8 uint8
    image, no inputs, an unconditional task. ``fields`` replace top-level keys or, with a
    ``package_`` prefix, keys of ``package``. With ``zip_path`` the artefact is pinned to
    that file (a ``file://`` source)."""
    data = load_valid_record()
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
            data["package"][key[len("package_"):]] = copy.deepcopy(value)
        else:
            data[key] = copy.deepcopy(value)
    if zip_path is not None:
        data["package"]["artefact"] = artefact_of(zip_path)
    return data


def unverified(model_id: str, version: str = "1.0.0", **overrides: Any) -> dict[str, Any]:
    """The valid record as ``model_id@version`` with no sha256 (it syncs as unverified)."""
    data = make_record(**overrides)
    data["id"], data["version"] = model_id, version
    del data["package"]["artefact"]["sha256"]
    return data


def with_artefact(root: Path, model_id: str, version: str = "1.0.0", subfolder: str = "",
                  content: bytes | None = None, **overrides: Any) -> dict[str, Any]:
    """A verified record whose artefact is a small file in the index (an index: source)."""
    data = make_record(**overrides)
    data["id"], data["version"] = model_id, version
    content = content if content is not None else f"weights of {model_id} {version}\n".encode() * 8
    rel = f"artefacts/{model_id}/{version}.bin"
    f = (root / subfolder / rel) if subfolder else root / rel
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(content)
    data["package"]["artefact"] = artefact_of(f, f"index:{rel}", "application/octet-stream")
    return data
