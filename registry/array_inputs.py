"""Array inputs: the images, masks, volumes and label maps a model takes, one per sample.

A record declares them in ``array_inputs`` (name, kind, dims, shape or a shape range,
dtype, channels, value range, spacing for volumes). A value comes

- from a folder of files, one file per input, taken in name order (digits compared as
  numbers, so ``2.png`` comes before ``10.png``): PNG, NPY, NIfTI (``.nii``, ``.nii.gz``)
  or DICOM (``.dcm``); other files in the folder are ignored; a single file is one input;
- from arrays through the SDK: an array whose first axis runs over the inputs, or a list
  of arrays;
- from another model's output, in a pipeline (:mod:`.pipeline`).

Everything is checked here, before any model code runs: every declared input given and
no other, each file readable, each array's spatial shape, channels, dtype and value range,
and the same number of inputs for every name. A failure is an :class:`InputError` naming
the input and the file (or the array's position).

**The seed contract with inputs.** ``n`` samples from seed ``s`` with ``m`` inputs and
``per_input = k`` (default 1): sample ``i`` uses seed ``s + i`` and input ``i // k``, so
the ``k`` samples of input ``j`` are ``j*k .. j*k+k-1``, each with its own seed. Sample
``i`` depends only on its seed, the parameters and its input. ``n`` may be at most
``m * k`` (more is refused as too few inputs); fewer uses the first inputs.

Masks read from image files are binarised (1 where the pixel is above 0), so a 0/255
mask PNG written by ``synthmed generate`` reads as 0/1.
"""

from __future__ import annotations

import hashlib
import logging
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .decoding import DEFAULT_MAX_DECODED_BYTES, read_array
from .errors import DecodeError, InputError
from .records import Record

log = logging.getLogger(__name__)

#: file suffixes read as inputs (lower case; ``.nii.gz`` is matched as a whole)
SUFFIXES = (".png", ".npy", ".nii", ".nii.gz", ".dcm")
#: the most inputs one run takes (a folder is listed before anything is read)
MAX_INPUTS = 100_000
#: a file larger than this many times the bytes its input declares (and above 64 MiB)
#: is refused before it is read; so is a file whose header declares more decoded bytes
#: than that (or than the site's ``[inputs] max_decoded_bytes``), before it is decoded
MAX_FILE_FACTOR = 16


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _suffix(path: Path) -> str | None:
    low = path.name.lower()
    for s in SUFFIXES:
        if low.endswith(s):
            return s
    return None


def _hint(ref: str) -> str:
    return f"see the model's array inputs: `synthmed show {ref}`"


def describe(spec: Mapping[str, Any]) -> str:
    shape = "x".join(map(str, spec["shape"]))
    if spec.get("shape_max"):
        shape += " to " + "x".join(map(str, spec["shape_max"]))
    vr = spec.get("value_range")
    rng = f", values {vr[0]}..{vr[1]}" if vr else ""
    return f"{spec.get('kind', 'image')} {shape}, {spec['channels']} channel(s), {spec['dtype']}{rng}"


# -- reading files ------------------------------------------------------------------


def list_files(name: str, path: Path, ref: str) -> list[Path]:
    """The input files at ``path`` (a folder, in natural name order, or one file)."""
    try:
        mode = path.stat().st_mode  # stat only: a FIFO is never opened (it would block)
    except FileNotFoundError:
        raise InputError(f"{ref}: input {name!r}: {path} does not exist", hint="give a folder of files or one file",
                         model=ref, input=name, file=str(path)) from None
    except OSError as exc:
        raise InputError(f"{ref}: input {name!r}: {path} cannot be read ({exc.strerror or exc})",
                         hint="give a folder of files or one file", model=ref, input=name, file=str(path)) from None
    if not stat.S_ISDIR(mode) and not stat.S_ISREG(mode):
        raise InputError(f"{ref}: input {name!r}: {path} is neither a folder nor a regular file (a device, FIFO or "
                         "socket is never read)", hint="give a folder of files or one file", model=ref, input=name,
                         file=str(path))
    if stat.S_ISREG(mode):
        if _suffix(path) is None:
            raise InputError(f"{ref}: input {name!r}: {path} is not a PNG, NPY, NIfTI or DICOM file",
                             hint=f"files ending in {', '.join(SUFFIXES)}", model=ref, input=name, file=str(path))
        return [path]
    files = []
    for p in path.iterdir():
        if p.name.startswith(".") or _suffix(p) is None:
            continue
        if not p.is_file():
            raise InputError(f"{ref}: input {name!r}: {p} is not a regular file", model=ref, input=name, file=str(p))
        files.append(p)
        if len(files) > MAX_INPUTS:
            raise InputError(f"{ref}: input {name!r}: {path} holds more than {MAX_INPUTS} input files",
                             hint="split the run", model=ref, input=name, file=str(path))
    if not files:
        raise InputError(f"{ref}: input {name!r}: the folder {path} holds no PNG, NPY, NIfTI or DICOM files",
                         hint=f"files ending in {', '.join(SUFFIXES)}, one per input, in name order",
                         model=ref, input=name, file=str(path))
    return sorted(files, key=lambda p: _natural_key(p.name))


def read_file(path: Path, max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> np.ndarray:
    """One file as an array (rows, columns[, slices][, channels]); a DecodeError, before
    decoding, when its header declares more than ``max_decoded_bytes``
    (:mod:`.decoding`)."""
    suffix = _suffix(path)
    if suffix is None:
        raise ValueError(f"not an input file: {path}")
    return read_array(path, suffix, max_decoded_bytes)


# -- checking ------------------------------------------------------------------------


def check_array(record: Record, spec: Mapping[str, Any], arr: Any, where: str) -> np.ndarray:
    """One input ``arr`` checked against ``spec`` and converted to its dtype; ``where``
    names the file or the array's position in the error."""
    ref, name = record.ref, str(spec["name"])

    def bad(what: str) -> InputError:
        return InputError(f"{ref}: input {name!r}, {where}: {what}; the model takes {describe(spec)}",
                          hint=_hint(ref), model=ref, input=name, file=where)

    try:
        a = np.asarray(arr)
    except Exception as exc:  # noqa: BLE001 - anything numpy cannot read is the caller's error
        raise bad(f"is not an array ({exc})") from None
    if a.dtype.hasobject or a.dtype.kind not in "biuf" or a.dtype.fields is not None:
        raise bad(f"has dtype {a.dtype}, not numbers")
    dims, channels = int(spec["dims"]), int(spec["channels"])
    if channels == 1 and a.ndim == dims + 1 and a.shape[-1] == 1:
        a = a[..., 0]
    want_nd = dims if channels == 1 else dims + 1
    if a.ndim != want_nd:
        got_ch = a.shape[-1] if a.ndim == dims + 1 else 1
        if a.ndim in (dims, dims + 1) and got_ch != channels:
            raise bad(f"has {got_ch} channel(s)")
        raise bad(f"has shape {a.shape} ({a.ndim} axes), expected {want_nd}")
    if channels > 1 and a.shape[-1] != channels:
        raise bad(f"has {a.shape[-1]} channel(s)")
    spatial = list(a.shape[:dims])
    lo, hi = list(spec["shape"]), list(spec.get("shape_max") or spec["shape"])
    if any(s < x or s > y for s, x, y in zip(spatial, lo, hi)):
        raise bad(f"has shape {'x'.join(map(str, spatial))}")
    kind = spec.get("kind")
    target = np.dtype(spec["dtype"])
    if kind == "mask" and a.dtype.kind in "biu" and where.lower().endswith((".png", ".dcm")):
        a = (a > 0).astype(target)  # a 0/255 mask picture reads as 0/1
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise bad("holds NaN or infinite values")
        if target.kind != "f" and target != np.bool_:
            raise bad(f"has dtype {a.dtype}; a {target} input takes whole numbers, not floats")
    elif not np.can_cast(a.dtype, target, "safe"):
        if target.kind in "iu" and a.size:
            info = np.iinfo(target)
            if a.min() < info.min or a.max() > info.max:
                raise bad(f"has dtype {a.dtype} with values {a.min()}..{a.max()}, outside {target}")
        elif target == np.bool_ and a.size and not np.isin(a, (0, 1)).all():
            raise bad(f"has dtype {a.dtype} with values other than 0 and 1")
    vr = spec.get("value_range")
    if vr and a.size:
        amin, amax = float(a.min()), float(a.max())
        if amin < vr[0] or amax > vr[1]:
            raise bad(f"has values {amin:g}..{amax:g}, outside {vr[0]}..{vr[1]}")
    return a.astype(target, copy=False)


@dataclass(frozen=True)
class CheckedInputs:
    """Every array input of one record, checked: ``arrays[name]`` is (m, ...) in the
    declared dtype; ``sources[name]`` says where each came from. Made by
    :func:`check_inputs`; the runner takes them without checking again."""

    record_ref: str
    arrays: Mapping[str, np.ndarray]
    sources: Mapping[str, list[str]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return next((len(a) for a in self.arrays.values()), 0)

    def digest(self) -> str:
        """sha256 over every input's name, shape, dtype and bytes (the run's identity)."""
        h = hashlib.sha256()
        for name in sorted(self.arrays):
            a = np.ascontiguousarray(self.arrays[name])
            h.update(f"{name}|{a.shape}|{a.dtype.str}|".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """What the sidecar records: the count, the digest, each input's source."""
        out: dict[str, Any] = {"count": self.count, "sha256": self.digest()}
        for name, src in self.sources.items():
            folders = sorted({str(Path(s).parent) if s.startswith("/") or "/" in s else s for s in src})
            out[name] = {"source": folders[0] if len(folders) == 1 else folders, "files": len(src)}
        return out

    def for_samples(self, indices: Sequence[int], per_input: int = 1) -> dict[str, np.ndarray]:
        """The input of each sample index (``i // per_input``), stacked."""
        idx = np.asarray([int(i) // per_input for i in indices], dtype=np.int64)
        return {name: a[idx] for name, a in self.arrays.items()}


def _declared_nbytes(spec: Mapping[str, Any]) -> int:
    shape = spec.get("shape_max") or spec["shape"]
    n = int(np.prod([int(x) for x in shape])) * int(spec["channels"])
    return n * np.dtype(spec["dtype"]).itemsize


def _values(record: Record, spec: Mapping[str, Any], value: Any,
            max_decoded_bytes: int) -> tuple[list[np.ndarray], list[str]]:
    name = str(spec["name"])
    if isinstance(value, (str, Path)):
        files = list_files(name, Path(value), record.ref)
        arrays = []
        limit = max(64 << 20, MAX_FILE_FACTOR * _declared_nbytes(spec))
        decoded_limit = min(limit, max_decoded_bytes)
        for f in files:
            size = f.stat().st_size
            if size > limit:
                raise InputError(f"{record.ref}: input {name!r}: {f} has {size} bytes, far more than one input of "
                                 f"{describe(spec)} needs", hint="give one input per file", model=record.ref,
                                 input=name, file=str(f))
            try:
                raw = read_file(f, decoded_limit)
            except DecodeError as exc:
                raise InputError(f"{record.ref}: input {name!r}: {exc.message}; one input is {describe(spec)}",
                                 hint=exc.hint, model=record.ref, input=name, file=str(f)) from None
            except Exception as exc:  # noqa: BLE001 - an unreadable file is the caller's error
                raise InputError(f"{record.ref}: input {name!r}: cannot read {f}: {type(exc).__name__}: {exc}",
                                 hint="give PNG, NPY, NIfTI or DICOM files", model=record.ref, input=name,
                                 file=str(f)) from None
            arrays.append(check_array(record, spec, raw, str(f)))
        return arrays, [str(f) for f in files]
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        try:
            stack = np.asarray(value)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{record.ref}: input {name!r}: {type(value).__name__} is not an array ({exc})",
                             hint=_hint(record.ref), model=record.ref, input=name) from None
        if stack.ndim == 0:
            raise InputError(f"{record.ref}: input {name!r}: a scalar is not an array of inputs",
                             hint="give an array whose first axis runs over the inputs, a list of arrays, "
                                  "or a folder", model=record.ref, input=name)
        items = list(stack)
    return ([check_array(record, spec, a, f"array item {i}") for i, a in enumerate(items)],
            [f"array item {i}" for i in range(len(items))])


def check_inputs(record: Record, given: Mapping[str, Any] | None, *,
                 max_decoded_bytes: int | None = None) -> CheckedInputs:
    """Every declared array input read and checked (folders, files, arrays), or
    InputError; runs no model code. Already-checked inputs of the same record pass.
    A file is decoded only when its header declares at most the smaller of
    ``max_decoded_bytes`` (the site's ``[inputs] max_decoded_bytes``; default
    :data:`~.decoding.DEFAULT_MAX_DECODED_BYTES`) and 16 times its input's declared size
    (at least 64 MiB)."""
    if isinstance(given, CheckedInputs):
        if given.record_ref != record.ref:
            raise InputError(f"{record.ref}: these inputs were checked for {given.record_ref}", model=record.ref)
        return given
    given = dict(given or {})
    specs = {str(s["name"]): s for s in record.array_inputs}
    unknown = sorted(set(given) - set(specs))
    if unknown:
        have = ", ".join(specs) or "none"
        raise InputError(f"{record.ref}: unknown input(s) {', '.join(map(repr, unknown))}; its array inputs: {have}",
                         hint=_hint(record.ref), model=record.ref, input=unknown[0])
    missing = [n for n in specs if n not in given]
    if missing:
        raise InputError(f"{record.ref}: input {missing[0]!r} is missing ({describe(specs[missing[0]])})",
                         hint=f"give it: --input {missing[0]}=FOLDER, or {missing[0]}=arrays in the SDK",
                         model=record.ref, input=missing[0])
    arrays: dict[str, np.ndarray] = {}
    sources: dict[str, list[str]] = {}
    for name, spec in specs.items():
        items, srcs = _values(record, spec, given[name],
                              DEFAULT_MAX_DECODED_BYTES if max_decoded_bytes is None else max_decoded_bytes)
        if not items:
            raise InputError(f"{record.ref}: input {name!r} is empty", hint="give at least one input",
                             model=record.ref, input=name)
        shapes = {a.shape for a in items}
        if len(shapes) > 1:
            first = items[0].shape
            j = next(i for i, a in enumerate(items) if a.shape != first)
            raise InputError(f"{record.ref}: input {name!r}: {srcs[j]} has shape {items[j].shape}, {srcs[0]} "
                             f"has {first}; the inputs of one run share a shape", model=record.ref, input=name,
                             file=srcs[j])
        arrays[name] = np.stack(items)
        sources[name] = srcs
    counts = {n: len(a) for n, a in arrays.items()}
    if len(set(counts.values())) > 1:
        raise InputError(f"{record.ref}: the inputs differ in number ({', '.join(f'{n}: {c}' for n, c in counts.items())});"
                         " input i of every name belongs to sample i", model=record.ref)
    return CheckedInputs(record.ref, arrays, sources)


def plan(record: Record, inputs: CheckedInputs, n: int | None, per_input: int = 1) -> int:
    """The number of samples of a run: ``n``, or every input ``per_input`` times when
    ``n`` is None; InputError when ``n`` asks for more than the inputs cover."""
    if per_input < 1:
        raise InputError(f"{record.ref}: per_input must be at least 1, got {per_input}", model=record.ref)
    m = inputs.count
    if n is None:
        return m * per_input
    if n > m * per_input:
        name = next(iter(inputs.arrays), "?")
        src = inputs.sources.get(name) or []
        where = str(Path(src[0]).parent) if src and not src[0].startswith("array") else "the arrays given"
        raise InputError(f"{record.ref}: too few inputs: {n} samples asked, input {name!r} has {m} in {where} "
                         f"({per_input} sample(s) per input)",
                         hint=f"give {-(-n // per_input)} or more inputs, fewer samples, or more samples per input "
                              "(--per-input K / per_input=K)", model=record.ref, input=name)
    return n


def default_inputs(record: Record, package_dir: Path, n: int) -> CheckedInputs | None:
    """The inputs a model takes when none is given (the medigan API): each array input's
    ``default`` folder inside the package (a medigan translator's bundled examples), read
    and checked, and cycled to cover ``n`` samples as medigan's packages do (sample ``i``
    takes image ``i % m`` of the ``m`` bundled). None when an input has no default."""
    specs = record.array_inputs
    if not specs or any(not s.get("default") for s in specs):
        return None
    given = {str(s["name"]): _inside(record, Path(package_dir), str(s["default"]), str(s["name"]), "default")
             for s in specs}
    checked = check_inputs(record, given)
    m = checked.count
    if n <= m:
        return checked
    idx = np.arange(n) % m
    return CheckedInputs(checked.record_ref, {k: a[idx] for k, a in checked.arrays.items()},
                         {k: [src[i] for i in idx] for k, src in checked.sources.items()})


def _inside(record: Record, package_dir: Path, rel: str, name: str, what: str) -> Path:
    root = package_dir.resolve()
    folder = (root / rel).resolve()
    if folder != root and root not in folder.parents:
        raise InputError(f"{record.ref}: input {name!r}: {what} folder {rel!r} leaves the package",
                         model=record.ref, input=name)
    return folder


def test_inputs(record: Record, package_dir: Path, *, max_decoded_bytes: int | None = None) -> CheckedInputs | None:
    """The model test's inputs shipped inside the package (each array input's ``test``
    folder), checked; None when the record has no array inputs."""
    specs = record.array_inputs
    if not specs:
        return None
    given: dict[str, Any] = {}
    root = Path(package_dir).resolve()
    for spec in specs:
        rel = spec.get("test")
        if not rel:
            raise InputError(f"{record.ref}: input {spec['name']!r} names no test folder inside the package",
                             hint="add array_inputs[].test: a folder in the package with one file per test input",
                             model=record.ref, input=str(spec["name"]))
        given[str(spec["name"])] = _inside(record, root, str(rel), str(spec["name"]), "test")
    return check_inputs(record, given, max_decoded_bytes=max_decoded_bytes)
