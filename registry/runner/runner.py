"""The runner: one verified model, its parameters checked, its device chosen, its
samples made in bounded batches, inline (in this process) or in a worker process."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, EnvironmentBuildError, ModelRunError, SynthmedError
from ..outputs import working_nbytes
from ..records import Record
from .device import resolve_device
from .envs import EnvOptions, build_env
from .formats import MEDIGAN_CHUNK, load_model, normalise_outputs
from .params import validate_params
from .reqs import unsatisfied
from .verify import require_verified

log = logging.getLogger(__name__)

MODES = ("auto", "inline", "worker")


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
    """Runs one model. ``sample`` and ``iter_batches`` check the parameters first;
    the model is loaded on first use; ``close`` frees it (and stops its worker)."""

    def __init__(self, record: Record, package_dir: Path, *, device: str = "auto", mode: str = "auto",
                 batch_size: int = 32, envs_dir: Path | None = None, timeout_s: float | None = None,
                 memory_budget_mb: float | None = None, env_options: EnvOptions | None = None,
                 package_key: str | None = None, medigan_chunk: int = MEDIGAN_CHUNK) -> None:
        self.sha256 = require_verified(record)
        self.record = record
        self.package_dir = Path(package_dir)
        if not self.package_dir.is_dir():
            raise ModelRunError(f"{record.ref}: package folder {self.package_dir} does not exist",
                                hint="fetch it with `synthmed sync` or let the SDK fetch it", model=record.ref)
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        if mode not in MODES:
            raise ConfigError(f"unknown run mode {mode!r}", hint="use auto, inline or worker")
        self.requested_mode = mode
        self.device = resolve_device(device, record.data["package"].get("devices"), model=record.ref)
        self.batch_size = self._bounded_batch(batch_size, memory_budget_mb)
        self.envs_dir = envs_dir
        self.timeout_s = timeout_s
        self.env_options = env_options
        self.package_key = package_key or self.sha256
        if medigan_chunk < 1:
            raise ConfigError(f"medigan chunk must be at least 1, got {medigan_chunk}")
        self.medigan_chunk = medigan_chunk
        self.missing = unsatisfied(record.data["package"].get("requirements") or [])
        self.mode = self._choose_mode(mode)
        self._model: Any = None
        self._worker: Any = None

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
        if self.record.package_format == "medigan-1":
            info["medigan_seed_chunk"] = self.medigan_chunk  # the samples of a seed depend on it
        return info

    # -- loading ---------------------------------------------------------------------

    def _load_inline(self) -> Any:
        if self._model is None:
            try:
                self._model = load_model(self.record, self.package_dir, self.device, self.package_key,
                                         self.medigan_chunk)
            except SynthmedError:
                raise
            except Exception as exc:
                raise ModelRunError(f"{self.record.ref}: loading the model failed: {type(exc).__name__}: {exc}",
                                    hint="run it with --mode worker to isolate it, or report it to its authors",
                                    model=self.record.ref, reason=repr(exc)) from exc
        return self._model

    def _load_worker(self) -> Any:
        if self._worker is None:
            from .client import WorkerClient

            python = sys.executable
            if self.missing:
                envs_dir = self.envs_dir
                if envs_dir is None:
                    from ..settings import default_home

                    envs_dir = default_home() / "envs"
                python = str(build_env(self.record.data["package"].get("requirements") or [], envs_dir,
                                       self.env_options, model=self.record.ref))
            self._worker = WorkerClient(self.record, self.package_dir, self.device, python,
                                        timeout_s=self.timeout_s, package_key=self.package_key,
                                        medigan_chunk=self.medigan_chunk)
            self._worker.start()
        return self._worker

    def prepare(self) -> None:
        """Load the model now (or start its worker), instead of on the first batch."""
        if self.mode == "worker":
            self._load_worker()
        else:
            self._load_inline()

    # -- sampling --------------------------------------------------------------------

    def _run_batch(self, seeds: list[int], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if self.mode == "worker":
            outputs: dict[str, np.ndarray] = self._load_worker().sample(seeds, params)
            return outputs
        model = self._load_inline()
        try:
            raw = model.sample(seeds, **params)
        except SynthmedError:
            raise
        except Exception as exc:
            raise ModelRunError(
                f"{self.record.ref}: the model raised {type(exc).__name__} while sampling seeds "
                f"{seeds[0]}..{seeds[-1]}: {exc}",
                hint="check the parameters; run with --mode worker to isolate a crashing model",
                model=self.record.ref, reason=f"{type(exc).__name__}: {exc}") from exc
        return normalise_outputs(self.record, seeds, raw)

    def check_params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        return validate_params(self.record, params)

    def iter_batches(self, seeds: Sequence[int], **params: Any) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
        """Yield ``(seeds of the batch, outputs)`` batch by batch; parameters are checked
        before any model code runs."""
        checked = validate_params(self.record, params)
        seeds = [int(s) for s in seeds]
        return self._iter(seeds, checked)

    def _iter(self, seeds: list[int], params: dict[str, Any]) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
        for start in range(0, len(seeds), self.batch_size):
            chunk = seeds[start:start + self.batch_size]
            yield chunk, self._run_batch(chunk, params)

    def sample(self, seeds: Sequence[int], **params: Any) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {str(o["name"]): [] for o in self.record.outputs}
        for _, outputs in self.iter_batches(seeds, **params):
            for name, arr in outputs.items():
                parts[name].append(arr)
        return {name: (np.concatenate(arrs) if arrs else np.empty((0,))) for name, arrs in parts.items()}

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        if self._model is not None:
            close = getattr(self._model, "close", None)
            if callable(close):
                close()
            self._model = None

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
