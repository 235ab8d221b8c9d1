"""The manifest of a finished run, and ``synthmed verify-output``.

When the last sample of a run is written (by whichever process or shard writes it), the
output folder gets ``synthmed.manifest.json``: the run's identity (model, package sha256,
seeds, sample count, format, outputs) and the sha256 and size of every sample file, by
path, sorted. It holds nothing that depends on who wrote the files or when, so a run made
by one process, by 7 shards, by every local device or by a Ray cluster has the same
manifest byte for byte (for formats whose files are themselves deterministic: PNG and
``.npy``; NIfTI and DICOM files carry times or UIDs of their own).

:func:`verify_output` checks a folder against its sidecar and manifest: every sample of
``0..num_samples-1`` present for every output, nothing else in the output folders (no
duplicate under another name, no index past the end, no temporary file of a killed
writer), and every file's sha256 as the manifest says.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from synthmed.registry import atomic
from synthmed.registry.errors import ConfigError
from synthmed.registry.hashing import hash_path

from .folder_files import MANIFEST, MANIFEST_FORMAT, SIDECAR, SIDECAR_FORMAT
from .sample_hashes import HashJournal

_INDEX_NAME = re.compile(r"^(\d{6,})(.*)$")


def _hash_file(path: str) -> tuple[str, int]:
    """(sha256, size) of a file, read through one small (64 KiB) reusable buffer: memory stays
    flat however many files a manifest hashes."""
    return hash_path(path, 1 << 16)


def sample_files(folder: Path, outputs: Iterable[str]) -> list[str]:
    """The sample files of an output folder, relative and sorted (``image/000003.png``; a
    DICOM series folder contributes each of its files)."""
    found: list[str] = []
    for name in outputs:
        sub = folder / name
        if not sub.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(sub):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = os.path.relpath(dirpath, folder)
            found.extend(os.path.join(rel, f).replace(os.sep, "/") for f in filenames if not f.startswith("."))
    return sorted(found)


def identity(sidecar: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a sidecar that says which run a folder holds (no times, no runner)."""
    model = sidecar.get("model") or {}
    return {"model": model.get("ref"), "sha256": model.get("sha256"), "format": sidecar.get("format"),
            "options": sidecar.get("options", {}), "params": sidecar.get("params"),
            "seeds": sidecar.get("seeds"), "num_samples": sidecar.get("num_samples"),
            "outputs": [o.get("name") for o in sidecar.get("outputs", []) if isinstance(o, dict)]}


def _sample_entries(folder: Path, sidecar: Mapping[str, Any]) -> Iterator[tuple[str, str, int | None]]:
    """The sample files of a complete run as (relative path, output, index), outputs by
    name, indices in order; index None for the files of a DICOM series folder (sorted).
    Made from the sidecar, not from a listing, so memory stays flat however many samples
    the run has."""
    expected = _expected(sidecar)
    n = int(sidecar.get("num_samples") or 0)
    for name in sorted(expected):
        ext, is_dir = expected[name]
        for i in range(n):
            rel = f"{name}/{i:06d}{ext}"
            if is_dir:
                inside = sorted(f for f in os.listdir(folder / rel) if not f.startswith("."))
                yield from ((f"{rel}/{f}", name, None) for f in inside)
            else:
                yield rel, name, i


def build_manifest(folder: Path, sidecar: Mapping[str, Any], threads: int = 4,
                   journal: HashJournal | None = None) -> Iterator[str]:
    """The manifest of a complete folder as JSON text, piece by piece: its run's identity
    and every sample file's sha256 and size. A hash the writers recorded in ``journal``
    (for a file unchanged since) is taken as it is; any other file is hashed on
    ``threads`` threads, a bounded number of files at a time."""
    yield "{\n" + f' "manifest_format": {json.dumps(MANIFEST_FORMAT)},\n'
    yield f' "run": {json.dumps(identity(sidecar), sort_keys=True)},\n "files": {{'
    first = True
    entries = _sample_entries(folder, sidecar)

    def recorded(entry: tuple[str, str, int | None]) -> tuple[str, int] | None:
        rel, name, index = entry
        return journal.known(name, index, os.path.join(folder, rel)) if journal is not None and index is not None \
            else None

    with ThreadPoolExecutor(max(1, threads)) as ex:
        while True:
            chunk = list(itertools.islice(entries, 256))
            if not chunk:
                break
            known = [recorded(e) for e in chunk]  # a read and a stat each: no thread needed
            hashed = ex.map(lambda e: _hash_file(os.path.join(folder, e[0])),
                            [e for e, k in zip(chunk, known) if k is None])
            for (rel, _, _), k in zip(chunk, known):
                hexdigest, size = k if k is not None else next(hashed)
                yield ("\n" if first else ",\n") + f'  {json.dumps(rel)}: {{"sha256": "{hexdigest}", "size": {size}}}'
                first = False
    yield "\n }\n}\n"


def write_manifest(folder: Path, sidecar: Mapping[str, Any], journal: HashJournal | None = None) -> Path:
    """Write ``synthmed.manifest.json`` (under a temporary name, then renamed), taking the
    hashes the writers recorded in ``journal`` where they still hold."""
    path = folder / MANIFEST
    with atomic.atomic_file(path, mode=0o644) as fh:
        for piece in build_manifest(folder, sidecar, journal=journal):
            fh.write(piece.encode("utf-8"))
    return path


def _expected(sidecar: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    """output name -> (extension, is a folder per sample)."""
    out: dict[str, tuple[str, bool]] = {}
    for o in sidecar.get("outputs", []):
        if not isinstance(o, dict) or not o.get("name"):
            continue
        pattern = str(o.get("files", ""))
        base = pattern.rsplit("/", 1)[-1]
        m = _INDEX_NAME.match(base)
        ext = m.group(2) if m else ""
        out[str(o["name"])] = (ext, ext == "")
    return out


def _load_sidecar(folder: Path) -> tuple[dict[str, Any], int]:
    """The sidecar of an output folder of synthmed's layout and its sample count, or a
    ConfigError saying why the folder cannot be verified."""
    side_path = folder / SIDECAR
    try:
        sidecar = json.loads(side_path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{folder} is not a synthmed output folder (no {SIDECAR})",
                          hint="give the folder that `synthmed generate -o` wrote") from None
    except ValueError as exc:
        raise ConfigError(f"{side_path} is not valid JSON ({exc})", hint="the folder's provenance is damaged") from exc
    if not isinstance(sidecar, dict) or sidecar.get("sidecar_format") != SIDECAR_FORMAT:
        raise ConfigError(f"{side_path} is not a {SIDECAR_FORMAT} sidecar", hint="give a synthmed output folder")
    if sidecar.get("layout", "synthmed") != "synthmed":
        raise ConfigError(f"{folder} uses the {sidecar.get('layout')!r} file layout; verify-output checks "
                          "synthmed's layout (<output>/<index>.<ext>), the one that gets a manifest",
                          hint="generate with the default layout to have a manifest and verify it")
    try:
        n = int(sidecar.get("num_samples") or 0)
        if n < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{side_path}: num_samples {sidecar.get('num_samples')!r} is not a sample count",
                          hint="the folder's provenance is damaged") from None
    return sidecar, n


def _check_samples(folder: Path, expected: Mapping[str, tuple[str, bool]], n: int) -> tuple[list[str], bool]:
    """The problems with the sample files themselves (missing, extra, temporary), and
    whether any sample is missing."""
    problems: list[str] = []
    missing: dict[str, list[int]] = {}
    missing_counts: dict[str, int] = {}
    extra: list[str] = []
    leftovers: list[str] = []
    for name, (ext, _) in expected.items():
        if ".." in Path(name).parts or "/" in name or "\\" in name:
            problems.append(f"output name {name!r} in the sidecar is not a plain name")
            continue
        sub = folder / name
        have: set[int] = set()
        if sub.is_dir():
            with os.scandir(sub) as it:
                for e in it:
                    if e.name.startswith("."):
                        leftovers.append(f"{name}/{e.name}")
                        continue
                    m = _INDEX_NAME.match(e.name)
                    if m and m.group(2) == ext and int(m.group(1)) < n and e.name == f"{int(m.group(1)):06d}{ext}":
                        have.add(int(m.group(1)))
                    else:
                        extra.append(f"{name}/{e.name}")
        if len(have) < n:
            missing_counts[name] = n - len(have)
            # the first few missing indices (found by walking from 0; stops after ten)
            missing[name] = list(itertools.islice((i for i in range(n) if i not in have), 10))
    extra.sort()
    for name, idx in missing.items():
        count = missing_counts[name]
        shown = ", ".join(map(str, idx)) + (f" (+{count - len(idx)} more)" if count > len(idx) else "")
        problems.append(f"{name}: {count} of {n} samples missing: {shown}")
    if extra:
        problems.append(f"{len(extra)} file(s) that are not samples 0..{n - 1} of this run (duplicates or "
                        f"strays): {', '.join(extra[:10])}")
    if leftovers:
        problems.append(f"{len(leftovers)} temporary file(s) of an unfinished or killed writer: "
                        f"{', '.join(leftovers[:5])} (rerun the same command to finish the run)")
    return problems, bool(missing)


def _check_manifest(folder: Path, sidecar: Mapping[str, Any],
                    expected: Mapping[str, tuple[str, bool]]) -> tuple[list[str], int]:
    """The problems with the manifest (absent, damaged, another run, files gone, added or
    changed), and how many files were hashed."""
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        return [f"no {MANIFEST}: the run has not finished (every shard writes it when the last sample "
                "is in; rerun the same command to finish)"], 0
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
        files = manifest["files"]
        run = manifest["run"]
    except (ValueError, KeyError, TypeError) as exc:
        return [f"{manifest_path} is damaged ({exc})"], 0
    problems: list[str] = []
    if run != identity(sidecar):
        diff = sorted(k for k in set(run) | set(identity(sidecar)) if run.get(k) != identity(sidecar).get(k))
        problems.append(f"the manifest describes another run than the sidecar (different {', '.join(diff)})")
    listed = set(files)
    present = set(sample_files(folder, expected))
    if listed - present:
        problems.append(f"{len(listed - present)} file(s) in the manifest are gone: "
                        f"{', '.join(sorted(listed - present)[:10])}")
    if present - listed:
        problems.append(f"{len(present - listed)} file(s) are not in the manifest: "
                        f"{', '.join(sorted(present - listed)[:10])}")
    bad = []
    checked = 0
    for rel in sorted(listed & present):
        digest, size = _hash_file(os.path.join(folder, rel))
        checked += 1
        entry = files[rel]
        if not isinstance(entry, dict) or entry.get("sha256") != digest or entry.get("size") != size:
            bad.append(rel)
    if bad:
        problems.append(f"{len(bad)} file(s) differ from their sha256 in the manifest: {', '.join(bad[:10])}")
    return problems, checked


def verify_output(folder: Path | str) -> dict[str, Any]:
    """Check an output folder; returns ``{"ok": bool, "problems": [...], ...}``. A folder
    that is not an output folder (no sidecar) is a ConfigError."""
    folder = Path(folder)
    sidecar, n = _load_sidecar(folder)
    expected = _expected(sidecar)
    problems, any_missing = _check_samples(folder, expected, n)
    if not sidecar.get("complete") and not any_missing:
        problems.append("the sidecar says the run is not complete (a shard still running, or killed?)")
    manifest_problems, checked = _check_manifest(folder, sidecar, expected)
    problems += manifest_problems
    return {"folder": str(folder), "ok": not problems, "num_samples": n, "outputs": list(expected),
            "files_hashed": checked, "problems": problems}
