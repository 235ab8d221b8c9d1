"""One generation run, said once: :class:`GenerationRequest` and what it gives back,
:class:`GenerationResult`.

A request is built once, from the keywords of :meth:`synthmed.site.Model.generate_to`,
:meth:`synthmed.generators.Generators.generate` or ``synthmed generate``'s flags
(:func:`build_request`: the counts, seed, window and bit depth checked, the array inputs
read and checked, the sample count planned from them), and then passed whole: to the
inline run (:meth:`synthmed.site.Model.run`), to every local device
(:func:`synthmed.parallel.run_on_devices`), inside each shard's job
(:class:`synthmed.parallel.ShardJob`) and to Ray (:func:`synthmed.ray_engine.run_with_ray`).
Every one of them returns a :class:`GenerationResult`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from synthmed.registry.array_inputs import CheckedInputs, check_inputs, plan
from synthmed.registry.errors import ConfigError
from synthmed.registry.outputs import parse_window
from synthmed.registry.records import Record

from .folder_files import sidecar_path
from .shards import ALL, Shard

#: called with (samples written so far, samples asked for)
SampleProgress = Callable[[int, int], None]


def sample_count(n: Any, what: str = "num_samples", minimum: int = 0) -> int:
    """``n`` as a sample count (an int, numpy ints too, >= minimum), or a ConfigError saying so."""
    try:
        if isinstance(n, bool):
            raise TypeError
        value = operator.index(n)
    except TypeError:
        raise ConfigError(f"{what} must be a whole number, got {n!r} ({type(n).__name__})",
                          hint=f"pass an int, e.g. {what}=16") from None
    if value < minimum:
        raise ConfigError(f"cannot make {value} samples: {what} must be {minimum} or more",
                          hint=f"pass an int >= {minimum}, e.g. {what}=16")
    return value


def seed_value(seed: Any) -> int:
    """``seed`` as an int (numpy ints too), or a ConfigError saying so."""
    try:
        if isinstance(seed, bool):
            raise TypeError
        return operator.index(seed)
    except TypeError:
        raise ConfigError(f"seed must be a whole number, got {seed!r} ({type(seed).__name__})",
                          hint="pass an int, e.g. seed=0 (sample i uses seed + i)") from None


@dataclass(frozen=True)
class GenerationRequest:
    """What one run makes and how it writes it; the model it runs is passed beside it.
    Pickles (without ``progress``, which stays in the process that made it)."""

    folder: Path
    n: int
    seed: int = 0
    #: "auto", "png", "npy", "nifti" or "dicom" (checked by the output folder)
    format: str = "auto"
    #: the model's parameters: raw (checked by the run) or already checked
    params: Mapping[str, Any] = field(default_factory=dict)
    #: the array inputs, read and checked (None: the model takes none)
    inputs: CheckedInputs | None = None
    per_input: int = 1
    #: outputs to write (names, or "a,b"); None: every one the format holds
    outputs: Sequence[str] | str | None = None
    #: the display window of 8-bit pictures, parsed ``(center, width)``
    window: tuple[float, float] | None = None
    bit_depth: int | None = None
    layout: str = "synthmed"
    png_compress_level: int | None = None
    writers: int | None = None
    #: the block of indices this call makes (ALL: every one)
    shard: Shard = ALL
    batch_size: int | None = None
    progress: SampleProgress | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))
        object.__setattr__(self, "n", sample_count(self.n))
        object.__setattr__(self, "seed", seed_value(self.seed))
        if not isinstance(self.shard, Shard):
            object.__setattr__(self, "shard", Shard.parse(self.shard))
        if self.bit_depth is not None and self.bit_depth not in (8, 16):
            raise ConfigError(f"bit depth must be 8 or 16, got {self.bit_depth}")
        if self.window is not None:
            if self.bit_depth == 16:
                raise ConfigError("a window maps values onto 8 bits; bit depth 16 keeps the full value range",
                                  hint="give one of window= (--window) and bit_depth=16 (--bit-depth 16)")
            object.__setattr__(self, "window", parse_window(self.window))

    def with_(self, **changes: Any) -> "GenerationRequest":
        return replace(self, **changes)

    @property
    def indices(self) -> range:
        """The sample indices this call makes (its shard's block of ``0..n-1``)."""
        return self.shard.block(self.n)

    @property
    def sharded(self) -> bool:
        return self.shard.count > 1

    def file_options(self, png_compress_level: int) -> dict[str, Any]:
        """What the output folder's encoders take (bit depth, window, PNG level)."""
        options: dict[str, Any] = {"png_compress_level": png_compress_level}
        if self.bit_depth is not None:
            options["bit_depth"] = self.bit_depth
        if self.window is not None:
            options["window"] = self.window
        return options

    def identity_params(self, checked: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters that belong to the run's identity: the checked ones, and the
        inputs' digest (another set of inputs is another run)."""
        identity = dict(checked)
        if self.inputs is not None:
            identity["__inputs__"] = {"sha256": self.inputs.digest(), "per_input": self.per_input}
        return identity

    def inputs_info(self) -> dict[str, Any]:
        """What the sidecar's ``runner`` section says about the inputs ({} without)."""
        if self.inputs is None:
            return {}
        return {"inputs": self.inputs.describe(), "per_input": self.per_input}


def build_request(record: Record, folder: Path | str, n: int | None, *, seed: Any = 0,
                  params: Mapping[str, Any] | None = None, inputs: Mapping[str, Any] | CheckedInputs | None = None,
                  per_input: int = 1, max_decoded_bytes: int | None = None, **options: Any) -> GenerationRequest:
    """The request of a run of ``record``'s model: the array inputs read and checked (a
    model without any takes none) and ``n`` planned from them (None: every input
    ``per_input`` times), before any model code runs. ``options`` are the other fields of
    :class:`GenerationRequest`; ``max_decoded_bytes`` bounds each input file's decoded
    size (the site's ``[inputs] max_decoded_bytes``)."""
    seed = seed_value(seed)
    checked_inputs = inputs if isinstance(inputs, CheckedInputs) else (
        check_inputs(record, inputs, max_decoded_bytes=max_decoded_bytes) if record.array_inputs or inputs else None)
    if checked_inputs is not None:
        n = plan(record, checked_inputs, None if n is None else sample_count(n), per_input)
    return GenerationRequest(Path(folder), sample_count(n), seed, params={} if params is None else params,
                             inputs=checked_inputs, per_input=per_input, **options)


@dataclass
class GenerationResult:
    """What a run did: :meth:`synthmed.site.Model.generate_to` (one process), one shard,
    every local device or a Ray cluster."""

    folder: Path
    num_samples: int
    written: int
    skipped: int
    seconds: float
    sidecar: Path
    #: the outputs written, and those left out with the reason (not selected, or a
    #: volume that PNG cannot hold)
    outputs: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    #: every sample of the run is in the folder (all shards done) and its manifest written
    complete: bool = False
    #: "K/N" when this call made one shard of the run
    shard: str | None = None
    #: several processes: the devices, each worker's counts, the engine ("local" or "ray")
    devices: list[str] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)
    engine: str = "local"
    #: Ray: the number of shards and what each task asked for
    shards: int | None = None
    task_resources: dict[str, Any] | None = None

    @property
    def samples_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    @classmethod
    def of_workers(cls, request: GenerationRequest, workers: list[dict[str, Any]], seconds: float,
                   **extra: Any) -> "GenerationResult":
        """The result of a run made by several processes, from each worker's counts."""
        return cls(request.folder, request.n, sum(int(w["written"]) for w in workers),
                   sum(int(w["skipped"]) for w in workers), seconds, sidecar_path(request.folder, request.layout),
                   complete=any(w["complete"] for w in workers), workers=workers, **extra)

    def counts(self) -> dict[str, Any]:
        """One worker's counts, as a shard job reports them."""
        return {"shard": self.shard or "0/1", "written": self.written, "skipped": self.skipped,
                "seconds": self.seconds, "complete": self.complete}

    def summary(self) -> dict[str, Any]:
        """The summary a run on several devices or on Ray returns (and ``--json`` prints)."""
        common = {"written": self.written, "skipped": self.skipped, "seconds": self.seconds,
                  "samples_per_second": self.samples_per_second, "complete": self.complete,
                  "workers": self.workers}
        if self.engine == "ray":
            return {"folder": str(self.folder), "num_samples": self.num_samples, "engine": "ray",
                    "shards": self.shards, "task_resources": self.task_resources, **common, "devices": []}
        return {"folder": str(self.folder), "num_samples": self.num_samples, "devices": self.devices,
                "shard": self.shard, **common}
