"""``medigan-1``: medigan's ``generate(model_file, num_samples, output_path, save_images,
**custom)`` in the package's ``__init__.py``.

medigan models draw from the global generators, so each call seeds them all (``random``,
numpy, torch). Seeds are served in fixed chunks of ``chunk`` consecutive seeds: the sample
of seed ``s`` is item ``s % chunk`` of ``generate(num_samples=chunk)`` called with the
generators seeded with ``s // chunk``. It therefore depends only on ``s`` (and the chunk
size, which is recorded in the provenance), never on the batch it was asked for in, while a
long run makes one call per ``chunk`` samples instead of one per sample (medigan models
reload their weights on every call). ``chunk=1`` gives one seeded call per sample. The
chunk size is chosen per run (:func:`choose_medigan_chunk`: as many seeds as the run asks
for, at most :data:`MEDIGAN_CHUNK_MAX`, within the memory budget) unless a user sets it
(site.toml ``runner.medigan_chunk``, ``--chunk-size``, ``chunk_size=``), and a run resumed
in a folder keeps the chunk it recorded there. The last chunk's samples are kept, so
batches smaller than a chunk cost no extra call. Calls run under ``torch.inference_mode()``;
a model that needs autograd tensors (it fails with "Inference tensors ...") is called again
without it, and from then on never with it. A translator (a record with array inputs) makes
each sample with one seeded call of its own, its input in a folder of its own.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import ConfigError, ModelRunError
from ..records import Record
from .base import LoadedModel, PackageFormat, split_entry_point, to_numpy
from .loader import import_package_module

log = logging.getLogger(__name__)

FORMAT = "medigan-1"

#: the verified package's folder in a medigan-1 package's arguments (``{package}/images``)
PACKAGE_PLACEHOLDER = "{package}"

#: number of consecutive seeds a medigan-1 model makes per generate() call when nothing
#: chose another (a Runner built without a chunk size)
MEDIGAN_CHUNK = 16
#: the largest chunk :func:`choose_medigan_chunk` picks
MEDIGAN_CHUNK_MAX = 128

WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".h5", ".hdf5", ".pkl", ".onnx", ".npz", ".npy")

#: the sidecar's runner entry that records the chunk size of a run
CHUNK_KEY = "medigan_seed_chunk"


def choose_medigan_chunk(num_samples: int, sample_bytes: int = 0, memory_budget_mb: float | None = None) -> int:
    """The chunk size of a run of ``num_samples`` samples: all of them in one call, up to
    :data:`MEDIGAN_CHUNK_MAX`, and no more than the memory budget holds (one chunk's
    samples are kept in memory)."""
    chunk = max(1, min(int(num_samples), MEDIGAN_CHUNK_MAX))
    if memory_budget_mb and sample_bytes > 0:
        chunk = max(1, min(chunk, int(memory_budget_mb * 1024 * 1024 // sample_bytes)))
    return chunk


def recorded_chunk(runner_info: Mapping[str, Any]) -> int | None:
    """The chunk size an earlier run recorded (its sidecar's ``runner.medigan_seed_chunk``)."""
    value = runner_info.get(CHUNK_KEY)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def seed_everything(seed: int) -> None:
    """medigan models draw from the global generators: seed them all."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch
    except ImportError:  # pragma: no cover - medigan models without torch
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def find_medigan_root(package_dir: Path, module_name: str) -> Path:
    """The folder holding medigan's ``__init__.py``: the entry point's folder, the
    package root, or its single sub-folder (medigan zips often wrap one folder)."""
    candidates = []
    if module_name:
        candidates.append(package_dir.joinpath(*module_name.split(".")))
    candidates.append(package_dir)
    subdirs = [p for p in package_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))]
    if len(subdirs) == 1:
        candidates.append(subdirs[0])
    for c in candidates:
        if (c / "__init__.py").is_file():
            return c
    raise ModelRunError(f"no medigan __init__.py found in {package_dir} (looked in "
                        f"{', '.join(str(c) for c in candidates)})",
                        hint="a medigan-1 package holds __init__.py with generate(model_file, num_samples, "
                             "output_path, save_images, **custom)")


def find_weights(record: Record, package_dir: Path, root: Path) -> Path:
    named = record.data["package"].get("weights")
    if named:
        for base in (package_dir, root):
            p = (base / named).resolve()
            if p.is_file() and (p == package_dir.resolve() or package_dir.resolve() in p.parents):
                return p
        raise ModelRunError(f"{record.ref}: package.weights names {named!r}, which is not in the package {package_dir}",
                            model=record.ref)
    found = sorted(p for p in package_dir.rglob("*") if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ModelRunError(f"{record.ref}: no weights file ({', '.join(WEIGHT_SUFFIXES)}) in {package_dir}",
                            hint="name it in the record's package.weights", model=record.ref)
    raise ModelRunError(f"{record.ref}: several weights files in {package_dir} "
                        f"({', '.join(str(p.relative_to(package_dir)) for p in found[:6])})",
                        hint="name the right one in the record's package.weights", model=record.ref)


class MediganModel:
    def __init__(self, record: Record, package_dir: Path, device: str, package_key: str,
                 chunk: int = MEDIGAN_CHUNK) -> None:
        if chunk < 1:
            raise ValueError(f"medigan chunk must be at least 1, got {chunk}")
        self.chunk = chunk
        self.record = record
        module_name, func_name = split_entry_point(record.entry_point)
        root = find_medigan_root(package_dir, module_name)
        module = import_package_module(root, None, package_key)
        fn = getattr(module, func_name or "generate", None)
        if not callable(fn):
            raise ModelRunError(f"{record.ref}: {root / '__init__.py'} has no function {func_name or 'generate'!r}",
                                model=record.ref)
        self.generate: Callable[..., Any] = fn
        self.model_file = find_weights(record, package_dir, root)
        self.custom = dict(record.data["package"].get("generate_args") or {})
        self.names = [str(o["name"]) for o in record.outputs]
        self.package_dir = package_dir
        self.device = device
        #: the last chunk made: (chunk id, parameters as text) -> its samples
        self._last: tuple[tuple[int, str], list[Any]] | None = None
        self.inference_mode = True

    def _call(self, kwargs: dict[str, Any]) -> Any:
        """generate(**kwargs), under torch.inference_mode() unless the model cannot take it."""
        if self.inference_mode:
            try:
                import torch
            except ImportError:  # pragma: no cover - medigan models without torch
                self.inference_mode = False
            else:
                state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
                try:
                    with torch.inference_mode():
                        return self.generate(**kwargs)
                except RuntimeError as exc:
                    if "inference" not in str(exc).lower():
                        raise
                    log.info("%s: generate() needs autograd tensors (%s); calling it without inference mode",
                             self.record.ref, exc)
                    self.inference_mode = False
                    random.setstate(state[0])
                    np.random.set_state(state[1])
                    torch.set_rng_state(state[2])
        return self.generate(**kwargs)

    @staticmethod
    def _key(chunk_id: int, params: Mapping[str, Any]) -> tuple[int, str]:
        return chunk_id, repr(sorted(params.items()))

    def _chunk(self, chunk_id: int, params: Mapping[str, Any], tmp: Path) -> list[Any]:
        """One seeded generate() call making ``self.chunk`` samples (the last one is kept)."""
        key = self._key(chunk_id, params)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        self._last = None  # free the previous chunk before making the next
        seed_everything(chunk_id)
        kwargs = {k: self._package_path(k, v) for k, v in {**self.custom, **params}.items()}
        kwargs.update(model_file=str(self.model_file), num_samples=self.chunk, output_path=str(tmp),
                      save_images=False)
        result = self._call(kwargs)
        if result is None:
            raise ModelRunError(f"{self.record.ref}: generate(..., save_images=False) returned None; "
                                "a medigan model must return its samples as a list", model=self.record.ref)
        items = list(result)
        if len(items) < self.chunk:
            raise ModelRunError(f"{self.record.ref}: generate(num_samples={self.chunk}) returned {len(items)} "
                                "samples", model=self.record.ref)
        self._last = (key, items)
        return items

    def _package_path(self, key: str, value: Any) -> Any:
        """``{package}/rel`` -> the path of ``rel`` inside the verified package folder (the
        medigan importer writes package-relative default arguments this way); a path that
        leaves the package is refused."""
        if not isinstance(value, str) or not value.startswith(PACKAGE_PLACEHOLDER):
            return value
        rest = value[len(PACKAGE_PLACEHOLDER):].lstrip("/")
        root = self.package_dir.resolve()
        path = (root / rest).resolve()
        if path != root and root not in path.parents:
            raise ModelRunError(f"{self.record.ref}: argument {key}={value!r} leaves the package folder",
                                hint="a {package}/... path must name a file or folder inside the package",
                                model=self.record.ref)
        return str(path)

    def _split(self, item: Any) -> list[Any]:
        """One medigan sample -> one value per record output (medigan returns an image,
        or a tuple such as (image, mask, other, label))."""
        if isinstance(item, (tuple, list)) and not isinstance(item, np.ndarray):
            arrays = [x for x in item if not isinstance(x, (str, bytes)) and x is not None]
            if len(arrays) < len(self.names):
                raise ModelRunError(f"{self.record.ref}: a sample holds {len(arrays)} arrays, the record names "
                                    f"{len(self.names)} outputs ({self.names})", model=self.record.ref)
            return [to_numpy(a) for a in arrays[: len(self.names)]]
        if len(self.names) != 1:
            return self._split_channels(to_numpy(item))
        return [to_numpy(item)]

    def _split_channels(self, arr: np.ndarray) -> list[Any]:
        """One array for several outputs: its channels are the outputs' channels in record
        order (a medigan RGB image with its mask in channel 4), on the last axis or the first."""
        widths = [int(o.get("channels") or 1) for o in self.record.outputs]
        for axis in (-1, 0):
            if arr.ndim >= 3 and arr.shape[axis] == sum(widths):
                parts, start = [], 0
                for w in widths:
                    parts.append(np.take(arr, range(start, start + w), axis=axis))
                    start += w
                return parts
        raise ModelRunError(f"{self.record.ref}: a sample is one array of shape {arr.shape}; the record names "
                            f"{len(self.names)} outputs ({self.names}) with {sum(widths)} channels in all",
                            model=self.record.ref)

    def sample(self, seeds: list[int], **params: Any) -> Mapping[str, Any]:
        folder_args = {str(a["name"]): str(a.get("medigan_arg") or a["name"]) for a in self.record.array_inputs}
        self.kinds = {str(a["name"]): str(a.get("kind", "image")) for a in self.record.array_inputs}
        if folder_args:
            return self._sample_translating(seeds, folder_args, params)
        wanted: dict[int, list[tuple[int, int]]] = {}
        for pos, seed in enumerate(seeds):
            wanted.setdefault(int(seed) // self.chunk, []).append((pos, int(seed) % self.chunk))
        per_output: list[list[Any]] = [[None] * len(seeds) for _ in self.names]
        # medigan models write relative to the working directory, and some change it: each
        # call runs in a private folder (its output_path too), and the caller's working
        # directory is restored afterwards whatever the model did (by descriptor, so even a
        # working directory that was renamed or removed meanwhile comes back). The working
        # directory is the process's: inline, other threads see the private folder meanwhile.
        # The folder is made only when a chunk needs a call (a batch inside the chunk made
        # last costs no folder).
        tmp: Path | None = None
        caller_cwd = os.open(".", getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0))
        try:
            for chunk_id, members in wanted.items():
                if self._last is None or self._last[0] != self._key(chunk_id, params):
                    if tmp is None:
                        tmp = Path(tempfile.mkdtemp(prefix="synthmed-medigan-"))
                        (tmp / "output").mkdir()
                    os.chdir(tmp)
                    try:
                        items = self._chunk(chunk_id, params, tmp / "output")
                    finally:
                        os.fchdir(caller_cwd)
                else:
                    items = self._last[1]
                for pos, offset in members:
                    for i, value in enumerate(self._split(items[offset])):
                        per_output[i][pos] = value
                del items
        finally:
            os.fchdir(caller_cwd)
            os.close(caller_cwd)
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        return {name: np.stack(vals) for name, vals in zip(self.names, per_output)}

    def _sample_translating(self, seeds: list[int], folder_args: Mapping[str, str],
                            params: Mapping[str, Any]) -> Mapping[str, Any]:
        """A translator (image-to-image): medigan's ``generate`` reads the images it
        translates from a folder (``input_path``). Each sample is one call, seeded with its
        own seed, its input written alone into a fresh folder (:func:`stage_input`)
        passed as that argument, with ``num_samples=1``: the sample of seed s with input x
        depends on nothing else (no chunks here)."""
        arrays = {name: params[name] for name in folder_args}
        rest = {k: v for k, v in params.items() if k not in folder_args}
        per_output: list[list[Any]] = [[None] * len(seeds) for _ in self.names]
        tmp = Path(tempfile.mkdtemp(prefix="synthmed-medigan-"))
        caller_cwd = os.open(".", getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0))
        try:
            for pos, seed in enumerate(seeds):
                call = tmp / f"sample-{pos}"
                output_path = call / "output"
                output_path.mkdir(parents=True)
                kwargs = {**self.custom, **rest}
                for name, arg in folder_args.items():
                    kwargs[arg] = str(stage_input(np.asarray(arrays[name][pos]), call / "inputs" / name,
                                                     mask=self.kinds[name] == "mask"))
                kwargs.update(model_file=str(self.model_file), num_samples=1, output_path=str(output_path),
                              save_images=False)
                seed_everything(int(seed))
                os.chdir(call)
                try:
                    result = self.generate(**kwargs)
                finally:
                    os.fchdir(caller_cwd)
                items = list(result) if result is not None else []
                if len(items) < 1:
                    raise ModelRunError(f"{self.record.ref}: generate(num_samples=1) with one input returned "
                                        f"{len(items)} samples", model=self.record.ref)
                for i, value in enumerate(self._split(items[0])):
                    per_output[i][pos] = value
                shutil.rmtree(call, ignore_errors=True)
        finally:
            os.fchdir(caller_cwd)
            os.close(caller_cwd)
            shutil.rmtree(tmp, ignore_errors=True)
        return {name: np.stack(vals) for name, vals in zip(self.names, per_output)}

    def close(self) -> None:
        self._last = None


def stage_input(arr: np.ndarray, folder: Path, *, mask: bool = False) -> Path:
    """Write one input into ``folder`` (made here) as medigan's translators read them: a
    PNG for a 2D uint8/uint16 image or mask (1, 3 or 4 channels; a mask as 0/255),
    else an ``.npy`` file. Returns the folder."""
    folder.mkdir(parents=True)
    if arr.ndim in (2, 3) and arr.dtype in (np.uint8, np.uint16, np.bool_) and (
            arr.ndim == 2 or arr.shape[-1] in (1, 3, 4)):
        from PIL import Image

        a = arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr
        if a.dtype == np.bool_ or mask:
            a = (a > 0).astype(np.uint8) * 255
        Image.fromarray(a).save(folder / "0000.png")
    else:
        np.save(folder / "0000.npy", arr, allow_pickle=False)
    return folder


class Medigan1(PackageFormat):
    """The adapter of ``medigan-1`` packages: seeds in chunks, chosen per run and recorded."""

    name = FORMAT

    def load(self, record: Record, package_dir: Path, device: str, package_key: str,
             chunk: int | None = None) -> LoadedModel:
        return MediganModel(record, package_dir, device, package_key, chunk=chunk or MEDIGAN_CHUNK)

    def load_chunk(self, asked: int | None) -> int | None:
        return asked or MEDIGAN_CHUNK

    def run_chunk(self, num_samples: int, asked: int | None, sample_bytes: int,
                  memory_budget_mb: float | None) -> int | None:
        return asked or choose_medigan_chunk(num_samples, sample_bytes, memory_budget_mb)

    def resume_chunk(self, folder: Path, recorded: Mapping[str, Any], asked: int | None) -> int | None:
        earlier = recorded_chunk(recorded)
        if earlier and asked and earlier != asked:
            raise ConfigError(f"{folder} holds samples made with chunk size {earlier}; this run asks for "
                              f"{asked}, which makes other samples from the same seeds",
                              hint=f"use chunk size {earlier} to resume it, or write to another folder")
        return earlier

    def runner_info(self, record: Record, chunk: int | None) -> dict[str, Any]:
        if record.array_inputs:
            return {"medigan_calls": "one seeded generate(num_samples=1) per sample, its input in a folder of its own"}
        return {CHUNK_KEY: self.load_chunk(chunk)}  # the samples of a seed depend on it
