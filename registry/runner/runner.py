"""The runner: one verified model, its parameters checked, its device chosen, its
samples made in bounded batches, inline (in this process) or in a worker process."""

from __future__ import annotations

import logging
import sys
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..errors import EnvironmentBuildError, InputError, ModelRunError, ParamError, SynthmedError, Unverified
from ..formats import PackageFormat
from ..outputs import working_nbytes
from ..packages import VerifiedPackage
from ..records import Record
from . import allocator
from .answers import normalise_outputs
from .client import WorkerClient
from .device import resolve_device
from .envs import build_env
from .options import RunnerOptions
from .params import CheckedParams, check_params
from .reqs import unsatisfied

log = logging.getLogger(__name__)


def sample_nbytes(record: Record) -> int:
    """Bytes one sample's outputs take while computed (:func:`~synthmed.registry.outputs.working_nbytes`)."""
    return working_nbytes(record.outputs)


def python_ok(record: Record) -> bool:
    spec = record.data["package"].get("python")
    if not spec:
        return True
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return SpecifierSet(spec).contains(".".join(map(str, sys.version_info[:3])), prereleases=True)
    except InvalidSpecifier:
        return True


class Runner:
    """Runs one verified package. Parameters are checked once (:meth:`check_params`, or
    on the way into :meth:`sample`/:meth:`iter_batches` when they come unchecked); the
    model is loaded on first use; ``close`` frees it (and stops its worker).

    Only a :class:`~synthmed.registry.packages.VerifiedPackage` is accepted, and only one
    prepared for running (``may_run``): nothing else reaches model code."""

    def __init__(self, package: VerifiedPackage, options: RunnerOptions | None = None, **overrides: Any) -> None:
        if not isinstance(package, VerifiedPackage):
            raise TypeError(f"Runner needs a VerifiedPackage from synthmed.registry.packages.prepare, "
                            f"got {type(package).__name__}")
        if not package.may_run:
            raise Unverified(f"{package.ref}: this package was prepared for mirroring only; the site does not run "
                             "code from its upstream (allow_code = false)",
                             hint="a site admin may allow it in site.toml", model=package.ref)
        opts = (options or RunnerOptions()).with_(**overrides)
        self.package = package
        self.options = opts
        self.record = record = package.record
        self.sha256 = package.sha256
        self.package_dir = package.folder
        #: the package format's adapter: how the model loads, its seed chunks, what it records
        self.format: PackageFormat = package.format
        #: seeds per call for a format that serves seeds in chunks (medigan-1), else None
        self.chunk = self.format.load_chunk(opts.medigan_chunk)
        if not self.package_dir.is_dir():
            raise ModelRunError(f"{package.ref}: package folder {self.package_dir} does not exist",
                                hint="prepare it again (the SDK does so on the next use; or `synthmed verify`)",
                                model=package.ref)
        self.device = resolve_device(opts.device, record.data["package"].get("devices"), model=record.ref)
        self.batch_size = self._bounded_batch(opts.batch_size, opts.memory_budget_mb)
        self.missing = unsatisfied(record.data["package"].get("requirements") or [])
        self.mode = self._choose_mode(opts.mode)
        self._model: Any = None
        self._worker: Any = None

    @property
    def timeout_s(self) -> float | None:
        return self.options.timeout_s

    # -- decisions -------------------------------------------------------------------

    def _bounded_batch(self, batch_size: int, budget_mb: float | None) -> int:
        if not budget_mb:
            return batch_size
        per = sample_nbytes(self.record)
        fit = int(budget_mb * 1024 * 1024 // per)
        if fit < 1:
            log.warning("%s: one sample (%d bytes) exceeds the memory budget of %s MB; using batches of 1",
                        self.record.ref, per, budget_mb)
        return max(1, min(batch_size, fit))

    def _choose_mode(self, mode: str) -> str:
        if not python_ok(self.record):
            raise EnvironmentBuildError(
                f"{self.record.ref} needs python {self.record.data['package'].get('python')}, "
                f"this is python {sys.version.split()[0]}",
                hint="run it from an environment with a matching python", model=self.record.ref)
        if mode == "inline" and self.missing:
            log.warning("%s: running inline although the current environment does not satisfy %s",
                        self.record.ref, ", ".join(self.missing))
        if mode == "auto":
            return "worker" if self.missing else "inline"
        return mode

    @property
    def info(self) -> dict[str, Any]:
        info = {"mode": self.mode, "device": self.device, "batch_size": self.batch_size,
                "missing_requirements": list(self.missing)}
        info.update(self.format.runner_info(self.record, self.chunk))
        return info

    # -- loading ---------------------------------------------------------------------

    def _load_inline(self) -> Any:
        if self._model is None:
            if self.options.keep_freed_memory:
                allocator.keep_freed_memory()
            try:
                self._model = self.format.load(self.record, self.package_dir, self.device, self.sha256, self.chunk)
            except SynthmedError:
                raise
            except Exception as exc:
                raise ModelRunError(f"{self.record.ref}: loading the model failed: {type(exc).__name__}: {exc}",
                                    hint="run it with --mode worker to isolate it, or report it to its authors",
                                    model=self.record.ref, reason=repr(exc)) from exc
        return self._model

    def _load_worker(self) -> Any:
        if self._worker is None:
            python = sys.executable
            if self.missing:
                envs_dir = self.options.envs_dir
                if envs_dir is None:
                    raise EnvironmentBuildError(
                        f"{self.record.ref} needs {', '.join(self.missing)}, which this environment lacks, and no "
                        "folder for worker environments was given", model=self.record.ref,
                        hint="run it from a site (its envs/ folder is used), or pass RunnerOptions(envs_dir=...)")
                python = str(build_env(self.record.data["package"].get("requirements") or [], envs_dir,
                                       self.options.env_options, model=self.record.ref))
            self._worker = WorkerClient(self.record, self.package_dir, self.device, python,
                                        timeout_s=self.timeout_s, package_key=self.sha256,
                                        chunk=self.chunk, keep_freed_memory=self.options.keep_freed_memory)
            self._worker.start()
        return self._worker

    def prepare(self) -> None:
        """Load the model now (or start its worker), instead of on the first batch."""
        if self.mode == "worker":
            self._load_worker()
        else:
            self._load_inline()

    # -- sampling --------------------------------------------------------------------

    def _run_batch(self, seeds: list[int], params: Mapping[str, Any],
                   arrays: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        if self.mode == "worker":
            outputs: dict[str, np.ndarray] = self._load_worker().sample(seeds, params, arrays)
            return outputs
        model = self._load_inline()
        try:
            raw = model.sample(seeds, **params, **(arrays or {}))
        except SynthmedError:
            raise
        except Exception as exc:
            raise ModelRunError(
                f"{self.record.ref}: the model raised {type(exc).__name__} while sampling seeds "
                f"{seeds[0]}..{seeds[-1]}: {exc}",
                hint="check the parameters; run with --mode worker to isolate a crashing model",
                model=self.record.ref, reason=f"{type(exc).__name__}: {exc}") from exc
        return normalise_outputs(self.record, seeds, raw)

    def check_params(self, params: Mapping[str, Any] | None) -> CheckedParams:
        """The parameters checked against the record's inputs (defaults filled in), or
        ParamError; runs no model code. Checked parameters are never checked again."""
        return check_params(self.record, params)

    def iter_batches(self, seeds: Sequence[int], params: Mapping[str, Any] | None = None, /,
                     **raw: Any) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
        """Yield ``(seeds of the batch, outputs)`` batch by batch. Pass checked parameters
        (or a mapping) positionally, or raw ones as keywords; unchecked ones are checked
        here, before any model code runs."""
        if params is not None and raw:
            raise ParamError(f"{self.record.ref}: pass checked parameters or keyword parameters, not both",
                             model=self.record.ref)
        checked = self.check_params(params if params is not None else raw)
        seeds = [int(s) for s in seeds]
        if self.record.array_inputs:
            names = ", ".join(str(a["name"]) for a in self.record.array_inputs)
            raise InputError(f"{self.record.ref} takes array inputs ({names}); none were given",
                             hint="give them: --input NAME=FOLDER, or model.sample(n, NAME=arrays)",
                             model=self.record.ref, input=names.split(",")[0])
        return self._iter(seeds, dict(checked), None)

    def iter_input_batches(self, seeds: Sequence[int], params: Mapping[str, Any] | None,
                           arrays: Mapping[str, np.ndarray]) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
        """As :meth:`iter_batches` for a model with array inputs: ``arrays[name][j]`` is the
        input of ``seeds[j]`` (checked by :func:`synthmed.registry.array_inputs.check_inputs`
        and laid out by ``CheckedInputs.for_samples``)."""
        checked = self.check_params(params)
        seeds = [int(s) for s in seeds]
        want = sorted(str(a["name"]) for a in self.record.array_inputs)
        if sorted(arrays) != want:
            raise InputError(f"{self.record.ref}: inputs {sorted(arrays)} given, the model takes {want}",
                             model=self.record.ref)
        for name, arr in arrays.items():
            if len(arr) != len(seeds):
                raise InputError(f"{self.record.ref}: input {name!r} has {len(arr)} items for {len(seeds)} seeds",
                                 model=self.record.ref, input=name)
        return self._iter(seeds, dict(checked), dict(arrays))

    def _iter(self, seeds: list[int], params: dict[str, Any],
              arrays: dict[str, np.ndarray] | None) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
        for start in range(0, len(seeds), self.batch_size):
            chunk = seeds[start:start + self.batch_size]
            part = None if arrays is None else {k: v[start:start + self.batch_size] for k, v in arrays.items()}
            yield chunk, self._run_batch(chunk, params, part)

    def sample(self, seeds: Sequence[int], params: Mapping[str, Any] | None = None, /,
               **raw: Any) -> dict[str, np.ndarray]:
        """All outputs for ``seeds``: ``{output: array (len(seeds), ...)}``; parameters as
        for :meth:`iter_batches`."""
        return self._gather(self.iter_batches(seeds, params, **raw))

    def sample_inputs(self, seeds: Sequence[int], params: Mapping[str, Any] | None,
                      arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """All outputs for ``seeds`` with their array inputs (see :meth:`iter_input_batches`)."""
        return self._gather(self.iter_input_batches(seeds, params, arrays))

    def _gather(self, batches: Iterator[tuple[list[int], dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {str(o["name"]): [] for o in self.record.outputs}
        for _, outputs in batches:
            for name, arr in outputs.items():
                parts[name].append(arr)
        return {name: (np.concatenate(arrs) if arrs else np.empty((0,))) for name, arrs in parts.items()}

    def peak_memory_mb(self) -> float | None:
        """Peak resident memory (VmHWM) of this runner's worker process in MiB; None when it
        runs inline or the figure cannot be read."""
        if self._worker is None:
            return None
        return self._worker.peak_rss_mb()

    @property
    def loaded(self) -> bool:
        """Whether model code was loaded (inline) or a worker started."""
        return self._worker is not None or self._model is not None

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        if self._model is not None:
            close = getattr(self._model, "close", None)
            if callable(close):
                close()
            allocator.release_freed_memory()
            self._model = None

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
