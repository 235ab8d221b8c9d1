"""``synthmed dataset verify``: re-derive items of a published dataset from its pinned model
and compare them with the published files (#24).

Items are picked at random, reproducibly (``pick_seed``), or all of them. They are made
again through the SDK's normal generation path (``Model.generate_to``: one
:class:`~synthmed.request.GenerationRequest` per run of consecutive picked items, one per
item for a dataset with array inputs; item i from seed ``first_seed + i``, the
record's parameters, outputs, file format and writing options, and the artefact's own
``inputs/`` file of that item) by the model version the record pins, mirrored on this site
(its package sha256 must be the record's). Each file is compared byte for byte; where the
bytes differ, both are decoded and compared as arrays, within the record's
``generation.tolerance`` (``max_abs``, ``mean_abs``; none declared: equal arrays only).
NIfTI and DICOM files embed times and UIDs, so they are compared as arrays and geometry,
never as bytes.

A verifier may give its own tolerance (``max_abs``, in place of the record's): the same
package makes other low bits with other CPU kernels (torch picks AVX-512 or AVX2 code by the
machine), so a dataset published on one machine may re-derive one grey level off in a few
pixels on another (docs/datasets.md). The report says which tolerance it used.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from synthmed.registry.array_inputs import list_files, read_file
from synthmed.registry.artefacts.dataset_archive import INPUTS_DIR, item_files, read_manifest
from synthmed.registry.errors import ArtefactError, ConfigError, DecodeError
from synthmed.registry.formats.medigan1 import CHUNK_KEY

from .published import PublishedDataset
from .site import Site

IDENTICAL, WITHIN, DIFFERENT = "identical", "within tolerance", "DIFFERENT"
#: formats whose files embed times or UIDs: compared decoded, never as bytes
DECODED_ONLY = (".nii", ".nii.gz", ".dcm")


@dataclass
class FileCheck:
    file: str
    outcome: str
    max_abs: float | None = None
    mean_abs: float | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "outcome": self.outcome, "max_abs": self.max_abs, "mean_abs": self.mean_abs,
                "detail": self.detail}


@dataclass
class ItemCheck:
    index: int
    seed: int
    files: list[FileCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(f.outcome != DIFFERENT for f in self.files)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "seed": self.seed, "passed": self.passed,
                "files": [f.as_dict() for f in self.files]}


@dataclass
class VerifyReport:
    dataset: str
    model: str
    model_sha256: str
    picked: list[int]
    pick_seed: int
    tolerance: Mapping[str, Any] | None
    items: list[ItemCheck] = field(default_factory=list)
    tolerance_source: str = "record"  # or "verifier": given to verify in place of the record's

    @property
    def failing(self) -> list[int]:
        return [c.index for c in self.items if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.failing

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "model": self.model, "model_sha256": self.model_sha256,
                "pick_seed": self.pick_seed, "picked": self.picked, "tolerance": dict(self.tolerance or {}),
                "tolerance_source": self.tolerance_source, "passed": self.passed, "failing": self.failing, "items": [c.as_dict() for c in self.items]}


def pick(count: int, samples: int | str, pick_seed: int) -> list[int]:
    """The item indices to check: every one for ``"all"``, else ``samples`` of them drawn
    without replacement by a generator seeded with ``pick_seed`` (sorted)."""
    if samples == "all":
        return list(range(count))
    try:
        k = int(samples)
    except (TypeError, ValueError):
        raise ConfigError(f"--samples {samples!r} is not a number or 'all'", hint="e.g. --samples 8") from None
    if k < 1:
        raise ConfigError(f"--samples must be at least 1, got {k}")
    k = min(k, count)
    return sorted(int(i) for i in np.random.default_rng(pick_seed).choice(count, size=k, replace=False))


def runs(picked: list[int], merge: bool = True) -> list[tuple[int, int]]:
    """The sorted item indices as ``[start, stop)`` runs of consecutive indices, each
    re-derived by one generation run (item i depends on seed first_seed + i alone, so a run
    of many makes the same files as many runs of one); single items when ``merge`` is off
    (a dataset with array inputs: each item's input is staged alone)."""
    out: list[tuple[int, int]] = []
    for i in picked:
        if merge and out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def _suffix(rel: str) -> str:
    low = rel.lower()
    return ".nii.gz" if low.endswith(".nii.gz") else Path(low).suffix


def _decoded(paths: list[Path], max_bytes: int) -> np.ndarray:
    arrays = [read_file(p, max_bytes) for p in paths]
    return arrays[0] if len(arrays) == 1 else np.stack(arrays)


def _geometry(path: Path) -> Any:
    """What places a NIfTI/DICOM file's voxels in space (compared besides the arrays)."""
    suffix = _suffix(path.name)
    if suffix in (".nii", ".nii.gz"):
        import nibabel as nib

        img: Any = nib.load(str(path))
        return np.round(np.asarray(img.affine, dtype=np.float64), 5).tolist()
    if suffix == ".dcm":
        import pydicom

        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        return [[float(v) for v in getattr(ds, k, []) or []] for k in
                ("PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient")]
    return None


def compare(published: list[Path], remade: list[Path], rel: str, tolerance: Mapping[str, Any] | None,
            max_bytes: int) -> FileCheck:
    """One item's file(s) of one output, published against re-derived."""
    decoded_only = _suffix(rel) in DECODED_ONLY
    if not decoded_only and len(published) == len(remade) and all(
            a.read_bytes() == b.read_bytes() for a, b in zip(published, remade)):
        return FileCheck(rel, IDENTICAL, 0.0, 0.0)
    try:
        pub, new = _decoded(published, max_bytes), _decoded(remade, max_bytes)
    except (DecodeError, OSError, ValueError, SyntaxError) as exc:
        return FileCheck(rel, DIFFERENT, detail=f"cannot be decoded: {exc}")
    if pub.shape != new.shape:
        return FileCheck(rel, DIFFERENT, detail=f"shape {pub.shape}, re-derived {new.shape}")
    diff = np.abs(pub.astype(np.float64) - new.astype(np.float64))
    max_abs, mean_abs = (float(diff.max()), float(diff.mean())) if diff.size else (0.0, 0.0)
    if decoded_only and [_geometry(p) for p in published] != [_geometry(p) for p in remade]:
        return FileCheck(rel, DIFFERENT, max_abs, mean_abs, detail="geometry (affine / position / spacing) differs")
    tol = tolerance or {}
    ok = max_abs <= float(tol.get("max_abs", 0.0)) and mean_abs <= float(tol.get("mean_abs", tol.get("max_abs", 0.0)))
    if ok:
        return FileCheck(rel, IDENTICAL if (decoded_only and max_abs == 0) else WITHIN, max_abs, mean_abs)
    return FileCheck(rel, DIFFERENT, max_abs, mean_abs,
                     detail=f"max |diff| {max_abs:g}, mean {mean_abs:g}; tolerance "
                            f"{dict(tol) if tol else 'none (byte-identical or equal arrays only)'}")


def _item_inputs(root: Path, record_inputs: list[Mapping[str, Any]], index: int, per_input: int,
                 scratch: Path) -> dict[str, Path]:
    """A folder per array input holding only the input file item ``index`` was made from."""
    given: dict[str, Path] = {}
    for spec in record_inputs:
        name = str(spec["name"])
        files = list_files(name, root / INPUTS_DIR / name, name)
        j = index // max(per_input, 1)
        if j >= len(files):
            raise ArtefactError(f"{root}: input {name!r} has {len(files)} file(s); item {index} needs file {j}",
                                hint="the artefact's inputs/ do not cover its items")
        folder = scratch / "inputs" / name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(files[j], folder / files[j].name)
        given[name] = folder
    return given


def verify_dataset(site: Site, published: PublishedDataset, *, samples: int | str = 8, pick_seed: int = 0,
                   device: str | None = None, folder: Path | str | None = None,
                   max_abs: float | None = None) -> VerifyReport:
    """Re-derive the picked items of ``published`` and compare them (see the module docstring).
    ``max_abs``: the verifier's own tolerance, in place of the record's."""
    record = published.record
    gen = record.generation
    if gen["layout"] != "synthmed":
        raise ConfigError(f"{published.ref} uses the {gen['layout']!r} file layout; verify re-derives datasets in "
                          "synthmed's layout (<output>/<index>.<ext>)")
    model_ref = published.entry.model_ref
    entry = site.catalog.models.resolve(model_ref, allow_yanked=True)
    if entry.record.sha256 != record.model["sha256"]:
        raise ArtefactError(f"{published.ref} was made by {record.model_ref} with package sha256 "
                            f"{record.model['sha256']}, but this site's {entry.qualified_ref} has "
                            f"{entry.record.sha256}", hint="the dataset cannot be re-derived from this site's model")
    root = published.folder(folder)
    manifest = read_manifest(root)
    count, first = int(gen["count"]), int(gen["first_seed"])
    files = item_files(manifest, gen["outputs"], count, str(root))
    options = dict(gen.get("options") or {})
    write = {k: options[k] for k in ("bit_depth", "png_compress_level") if k in options}
    if isinstance(options.get("window"), Mapping):
        write["window"] = (options["window"]["center"], options["window"]["width"])
    per_input = int((manifest.get("run") or {}).get("per_input", 1) or 1)
    if max_abs is not None and not (max_abs >= 0):  # NaN included
        raise ConfigError(f"max_abs {max_abs}: a tolerance is a number >= 0")
    tolerance = gen.get("tolerance") if max_abs is None else {"max_abs": float(max_abs)}
    report = VerifyReport(published.ref, entry.qualified_ref, str(record.model["sha256"]),
                          pick(count, samples, pick_seed), pick_seed, tolerance,
                          tolerance_source="record" if max_abs is None else "verifier")
    max_bytes = site.settings.inputs.max_decoded_bytes
    # a medigan-1 model makes seeds in chunks: re-derive with the chunk the items were made with
    with site.model(entry, device=device, chunk_size=gen.get(CHUNK_KEY)) as model:
        if model.package.sha256 != record.model["sha256"]:
            raise ArtefactError(f"{entry.qualified_ref}: prepared package {model.package.sha256} is not the "
                                f"dataset's {record.model['sha256']}")
        with tempfile.TemporaryDirectory(prefix="synthmed-verify-") as tmp:
            record_inputs = list(gen.get("inputs") or [])
            for start, stop in runs(report.picked, merge=not record_inputs):
                scratch = Path(tmp) / f"{start:06d}"
                inputs = _item_inputs(root, record_inputs, start, per_input, scratch) if record_inputs else {}
                model.generate_to(scratch / "out", stop - start, format=gen["file_format"], seed=first + start,
                                  outputs=list(gen["outputs"]), inputs=inputs or None, writers=0, **write,
                                  **dict(gen.get("params") or {}))
                remade = item_files(read_manifest(scratch / "out"), gen["outputs"], stop - start, str(scratch))
                for i in range(start, stop):
                    check = ItemCheck(i, first + i)
                    for name in gen["outputs"]:
                        mine = files[str(name)][i]
                        made = remade[str(name)][i - start]
                        check.files.append(compare([root / r for r in mine], [scratch / "out" / r for r in made],
                                                   mine[0] if len(mine) == 1 else str(Path(mine[0]).parent),
                                                   tolerance, max_bytes))
                    report.items.append(check)
                shutil.rmtree(scratch, ignore_errors=True)
    return report
