"""Where a model record lives inside an index folder: the one owner of the layout.

An index keeps each model version in a file of its own, in one of two layouts, told apart by
the path alone:

- **flat** ``models/<id>/<version>.json``: one folder per model, easy to browse; the layout of
  every index so far and of this repository's ``index/``;
- **sharded** ``models/<shard>/<id>@<version>.json``, where ``<shard>`` is the first two hex
  digits of the sha256 of the id: 256 folders of files, for an index of many thousand models.

Why two: a git commit carries every tree object on the path of the file it changes, and a
site's ``git fetch`` checks the connectivity of what it received by walking every tree of
the commit it had. In the flat layout the ``models`` tree has one entry and one subtree per
model, so one changed record costs a fetch in proportion to the number of models (0.48 s at
100,000 models, docs/performance.md "Sync"); the sharded layout has no per-model trees and
a ``models`` tree of at most 256 entries.

Both layouts name the same ``(id, version)`` with three path parts, so an index may hold
either (or move from one to the other, ``synthmed index shard``); a version held at two
paths at once is an error wherever an index is read (:func:`duplicate_versions`). A model id
has at least three characters, so a two-character shard folder is never a model folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

MODELS_DIR = "models"

#: hex digits of sha256(id) naming a shard folder (256 folders)
SHARD_DIGITS = 2

_HEX = frozenset("0123456789abcdef")


def shard_of(model_id: str) -> str:
    """The shard folder of ``model_id`` in the sharded layout."""
    return hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:SHARD_DIGITS]


def record_relpath(model_id: str, version: str, *, sharded: bool = False) -> str:
    """The path of a record relative to the index folder, in the flat or the sharded layout."""
    if sharded:
        return f"{MODELS_DIR}/{shard_of(model_id)}/{model_id}@{version}.json"
    return f"{MODELS_DIR}/{model_id}/{version}.json"


def record_relpaths(model_id: str, version: str) -> tuple[str, str]:
    """Both places a record of ``model_id`` ``version`` may be (flat first)."""
    return record_relpath(model_id, version), record_relpath(model_id, version, sharded=True)


def twin_relpath(rel: str) -> str | None:
    """The path the same version has in the other layout (None: ``rel`` is not a record path)."""
    key = parse_record_relpath(rel)
    return None if key is None else next(p for p in record_relpaths(*key) if p != rel)


def is_shard_name(name: str) -> bool:
    return len(name) == SHARD_DIGITS and set(name) <= _HEX


def parse_record_relpath(rel: str) -> tuple[str, str] | None:
    """``(id, version)`` named by a record path relative to the index folder, in either
    layout; None for any other path (a sharded path whose shard is not its id's is none)."""
    parts = PurePosixPath(rel).parts
    if len(parts) != 3 or parts[0] != MODELS_DIR or not parts[2].endswith(".json"):
        return None
    folder, stem = parts[1], parts[2][: -len(".json")]
    if is_shard_name(folder):
        model_id, at, version = stem.partition("@")
        if not at or not model_id or not version or shard_of(model_id) != folder:
            return None
        return model_id, version
    if "@" in stem or not stem:
        return None
    return folder, stem


def expected_text(model_id: str, version: str) -> str:
    """The two paths a record may have, for an error message."""
    flat, sharded = record_relpaths(model_id, version)
    return f"{flat} (or {sharded} in a sharded index)"


def layout_hint() -> str:
    return ("records live at models/<id>/<version>.json, or models/<shard>/<id>@<version>.json in a sharded index "
            "(<shard>: the first two hex digits of the id's sha256)")


def record_files(index_dir: Path) -> list[Path]:
    """The files of an index folder that sit where a record of either layout sits, sorted
    (whether each is a valid record, its name included, is the validation's question)."""
    models = index_dir / MODELS_DIR
    if not models.is_dir():
        return []
    return sorted(p for p in models.glob("*/*.json") if p.is_file())


def holds_shards(folder_names: Iterable[str]) -> bool:
    """Whether the folders of a ``models/`` folder (of a folder on disk, of a git tree) make a
    sharded index: one of them is a shard folder (what ``contribute`` and ``import-medigan``
    follow when they add a record)."""
    return any(is_shard_name(n) for n in folder_names)


def is_sharded(index_dir: Path) -> bool:
    """Whether an index folder keeps its records sharded (:func:`holds_shards`)."""
    models = index_dir / MODELS_DIR
    return models.is_dir() and holds_shards(p.name for p in models.iterdir() if p.is_dir())


def find_record(index_dir: Path, model_id: str, version: str) -> Path | None:
    """The record file of ``model_id`` ``version`` in an index folder, in either layout."""
    for rel in record_relpaths(model_id, version):
        p = index_dir / rel
        if p.is_file():
            return p
    return None


def new_record_path(index_dir: Path, model_id: str, version: str) -> Path:
    """Where a new record goes: where it already is, else in the index folder's layout."""
    return find_record(index_dir, model_id, version) or index_dir / record_relpath(
        model_id, version, sharded=is_sharded(index_dir))


def versions_of(index_dir: Path, model_id: str) -> list[str]:
    """The versions of ``model_id`` in an index folder, in either layout (unsorted)."""
    models = index_dir / MODELS_DIR
    found = [p.stem for p in (models / model_id).glob("*.json")] if (models / model_id).is_dir() else []
    shard = models / shard_of(model_id)
    if shard.is_dir():
        found += [p.stem.partition("@")[2] for p in shard.glob(f"{_glob_escape(model_id)}@*.json")]
    return found


def model_ids(rels: Iterable[str]) -> set[str]:
    """The model ids named by record paths (other paths are ignored)."""
    return {k[0] for k in map(parse_record_relpath, rels) if k}


def duplicate_versions(rels: Iterable[str]) -> Iterator[tuple[tuple[str, str], list[str]]]:
    """``((id, version), paths)`` for each version named by more than one record path."""
    seen: dict[tuple[str, str], list[str]] = {}
    for rel in rels:
        key = parse_record_relpath(rel)
        if key:
            seen.setdefault(key, []).append(rel)
    for key, paths in sorted(seen.items()):
        if len(paths) > 1:
            yield key, sorted(paths)


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


__all__ = ["MODELS_DIR", "SHARD_DIGITS", "duplicate_versions", "expected_text", "find_record", "holds_shards",
           "is_shard_name",
           "is_sharded", "layout_hint", "model_ids", "new_record_path", "parse_record_relpath", "record_files",
           "record_relpath", "record_relpaths", "shard_of", "twin_relpath", "versions_of"]
