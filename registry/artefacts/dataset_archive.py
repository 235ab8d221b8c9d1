"""A published dataset's artefact: the run folder packed reproducibly, and read back safely.

The artefact of a ``synthmed-dataset/1`` record is an uncompressed tar holding exactly:

- ``synthmed.manifest.json``: the run's manifest (model, seeds, outputs, and the sha256 and
  size of every sample file);
- every sample file the manifest lists (``image/000000.png``, ...);
- ``inputs/<name>/...``: the run's array inputs, where the model took any (pinned in the
  record by :func:`inputs_digest`).

Entries are sorted by name, with fixed times, owners and modes, so the same files always
give the same bytes (and the same sha256). The sidecar (``synthmed.json``) is left out: it
holds times and the machine's runner. Reading back goes through the safe tar reader of
:mod:`.archives`, then :func:`check_folder` holds the unpacked tree to the manifest: no
file missing, none extra, every sha256 as listed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from ..errors import ArtefactError
from ..hashing import hash_path
from .archives import DEFAULT_LIMITS, Limits, unpack_tar

MANIFEST = "synthmed.manifest.json"
INPUTS_DIR = "inputs"
MEDIA_TYPE = "application/x-tar"


def read_manifest(folder: Path) -> dict[str, Any]:
    """The run manifest of ``folder``; ArtefactError when absent or malformed."""
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ArtefactError(f"{folder}: no {MANIFEST}: the folder is not a finished synthmed run",
                            hint="make the dataset with `synthmed dataset create` (or `synthmed generate`) "
                                 "and let the run finish") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtefactError(f"{path}: unreadable manifest: {exc}",
                            hint="re-create the dataset folder; the manifest is damaged") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not files or not isinstance(data.get("run"), dict):
        raise ArtefactError(f"{path}: not a synthmed run manifest (no 'run' or no 'files')",
                            hint="re-create the dataset folder with `synthmed dataset create`")
    for rel, entry in files.items():
        p = PurePosixPath(rel)
        if (p.is_absolute() or ".." in p.parts or not p.parts or p.parts[0] == INPUTS_DIR or rel == MANIFEST
                or not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not isinstance(entry.get("size"), int)):
            raise ArtefactError(f"{path}: manifest entry {rel!r} is not a sample file with sha256 and size",
                                hint="re-create the dataset folder; the manifest was edited or is damaged")
    return data


def _input_files(folder: Path) -> list[str]:
    """Relative paths (``inputs/<name>/...``) of every input file of ``folder``, sorted."""
    root = folder / INPUTS_DIR
    found: list[str] = []
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in filenames:
            found.append(Path(dirpath, f).relative_to(folder).as_posix())
    return sorted(found)


def inputs_digest(folder: Path, name: str) -> tuple[str, int]:
    """(sha256 of the sorted listing ``"<sha256>  <path>\\n"``, file count) of
    ``folder/inputs/<name>/``: what a record's ``generation.inputs[].files_sha256`` pins."""
    base = folder / INPUTS_DIR / name
    rels = [r for r in _input_files(folder) if r.startswith(f"{INPUTS_DIR}/{name}/")]
    if not rels:
        raise ArtefactError(f"{base}: input {name!r} has no files",
                            hint=f"put the run's {name} files under {INPUTS_DIR}/{name}/")
    h = hashlib.sha256()
    for rel in rels:
        digest, _ = hash_path(folder / rel)
        h.update(f"{digest}  {PurePosixPath(rel).relative_to(INPUTS_DIR, name)}\n".encode())
    return h.hexdigest(), len(rels)


def _members(folder: Path, manifest: Mapping[str, Any]) -> list[str]:
    return sorted([MANIFEST, *manifest["files"], *_input_files(folder)])


def pack(folder: Path, dest: Path) -> tuple[str, int]:
    """Pack the run ``folder`` into the tar ``dest`` (see the module docstring); each sample
    file is hashed as it is packed and must match the manifest. Returns (sha256, size)."""
    manifest = read_manifest(folder)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
            for rel in _members(folder, manifest):
                src = folder / rel
                try:
                    size = src.stat().st_size
                except FileNotFoundError:
                    raise ArtefactError(f"{folder}: {rel} is listed in the manifest but missing",
                                        hint="the folder is incomplete: re-create the dataset") from None
                want = manifest["files"].get(rel)
                if want is not None:
                    digest, got_size = hash_path(src)
                    if digest != want["sha256"] or got_size != want["size"]:
                        raise ArtefactError(f"{folder}: {rel} does not match the manifest (sha256 {digest[:12]}..., "
                                            f"manifest {str(want['sha256'])[:12]}...)",
                                            hint="the file changed after the run: re-create the dataset")
                info = tarfile.TarInfo(rel)
                info.size = size
                info.mtime = 0
                info.mode = 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(src, "rb") as fh:
                    tf.addfile(info, fh)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return hash_path(dest)


#: what a run folder holds besides its samples (the sidecar, the run's lock file); never
#: packed, so a run folder may hold them where an unpacked artefact may not
RUN_BOOKKEEPING = frozenset({"synthmed.json", ".synthmed.lock"})


def check_folder(folder: Path, ignore: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Hold an unpacked dataset (or, with ``ignore=RUN_BOOKKEEPING``, a run folder about to be
    packed) to its manifest: every listed file present with its sha256 and size, no other
    file outside ``inputs/`` but the top-level names in ``ignore``. Returns the manifest;
    ArtefactError naming the first files that differ."""
    manifest = read_manifest(folder)
    listed = set(manifest["files"])
    present: set[str] = set()
    for dirpath, _dirs, filenames in os.walk(folder):
        for f in filenames:
            rel = Path(dirpath, f).relative_to(folder).as_posix()
            if rel != MANIFEST and not rel.startswith(f"{INPUTS_DIR}/") and rel not in ignore:
                present.add(rel)
    missing = sorted(listed - present)
    extra = sorted(present - listed)
    changed = []
    for rel in sorted(listed & present):
        digest, size = hash_path(folder / rel)
        want = manifest["files"][rel]
        if digest != want["sha256"] or size != want["size"]:
            changed.append(rel)
    if missing or extra or changed:
        parts = [f"{what}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
                 for what, names in (("missing", missing), ("not in the manifest", extra), ("changed", changed)) if names]
        raise ArtefactError(f"{folder}: the dataset does not match its manifest ({'; '.join(parts)})",
                            hint="the artefact was altered or is incomplete; do not use it, fetch it again "
                                 "from a source whose bytes match the record")
    return manifest


def unpack(blob: Path, staging: Path, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Unpack a verified dataset tar into ``staging`` (safe reader) and check it against its
    manifest; returns the manifest."""
    unpack_tar(blob, staging, limits)
    return check_folder(staging)


def item_files(manifest: dict[str, Any], outputs: Any, count: int, where: str) -> dict[str, dict[int, list[str]]]:
    """``{output: {index: [relative paths]}}`` of a run manifest in synthmed's layout
    (``<output>/<index:06d>.<ext>``, or a DICOM series folder ``<output>/<index:06d>/...``);
    ArtefactError when an output misses an item."""
    found: dict[str, dict[int, list[str]]] = {str(o): {} for o in outputs}
    for rel in manifest["files"]:
        parts = rel.split("/")
        digits = parts[1].split(".")[0] if len(parts) >= 2 else ""
        if parts[0] in found and digits.isdigit():
            found[parts[0]].setdefault(int(digits), []).append(rel)
    for name, items in found.items():
        missing = [i for i in range(count) if i not in items]
        if missing:
            raise ArtefactError(f"{where}: output {name!r} has no file for item(s) "
                                f"{', '.join(map(str, missing[:5]))}{' ...' if len(missing) > 5 else ''}",
                                hint="the dataset is incomplete or not in synthmed's file layout")
        for rels in items.values():
            rels.sort()
    return found
