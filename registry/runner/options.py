"""Typed runner options, built once (from a site's Settings, or explicitly) and passed
whole: no flattening into dicts, no environment read here."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..decoding import DEFAULT_MAX_DECODED_BYTES
from ..errors import ConfigError
from ..settings import Settings
from .envs import EnvOptions

MODES = ("auto", "inline", "worker")


@dataclass(frozen=True)
class RunnerOptions:
    """How a :class:`~.runner.Runner` runs its package.

    ``envs_dir`` is where worker environments are built for models whose requirements the
    current environment does not meet; None means such a model cannot run (it is refused
    with a clear error, never built in some default folder)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    mode: str = "auto"  # auto | inline | worker
    batch_size: int = 32
    envs_dir: Path | None = None
    timeout_s: float | None = None
    memory_budget_mb: float | None = None
    env_options: EnvOptions = field(default_factory=EnvOptions)
    #: seeds per call of a medigan-1 package's generate() (its samples depend on it);
    #: None: chosen per run (:meth:`~synthmed.registry.formats.PackageFormat.run_chunk`), MEDIGAN_CHUNK for a bare Runner
    medigan_chunk: int | None = None
    #: the most bytes an array-input file may declare once decoded (site.toml ``[inputs]``)
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
    #: keep memory a batch frees for the next one in the process that runs the model (:mod:`.allocator`)
    keep_freed_memory: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch size must be a whole number of at least 1, got {self.batch_size!r}",
                              hint="e.g. --batch-size 32 (or runner.batch_size in site.toml)")
        if self.mode not in MODES:
            raise ConfigError(f"unknown run mode {self.mode!r}", hint="use auto, inline or worker")
        if self.medigan_chunk is not None and (isinstance(self.medigan_chunk, bool)
                                               or not isinstance(self.medigan_chunk, int) or self.medigan_chunk < 1):
            raise ConfigError(f"chunk size must be a whole number of at least 1, got {self.medigan_chunk!r}",
                              hint="e.g. --chunk-size 64 (or runner.medigan_chunk in site.toml); leave it out to "
                                   "let each run choose")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError(f"timeout {self.timeout_s!r}: it must be above 0 seconds",
                              hint="leave it out for no limit, or give the longest wait for one batch, e.g. 600")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "RunnerOptions":
        """The site's runner settings (site.toml ``[runner]``, its envs folder and offline
        flag), then ``overrides`` (None values ignored)."""
        r = settings.runner
        base = cls(device=r.device, mode=r.mode, batch_size=r.batch_size, envs_dir=settings.envs_dir,
                   memory_budget_mb=r.memory_budget_mb, env_options=EnvOptions(offline=settings.offline),
                   medigan_chunk=r.medigan_chunk, max_decoded_bytes=settings.inputs.max_decoded_bytes,
                   keep_freed_memory=r.keep_freed_memory)
        return base.with_(**overrides)

    def with_(self, **overrides: Any) -> "RunnerOptions":
        """A copy with the given options changed; None leaves an option as it is."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **changes) if changes else self
