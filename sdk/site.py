"""The plain modern API: a :class:`Site` (a folder with its catalog, store and
packages), its search, and :class:`Model` objects that sample in memory or write to
disk.

    site = Site()                       # $SYNTHMED_HOME or the user data dir
    model = site.model("ihc-patch-dcgan")
    batch = model.sample(16, seed=0)    # {"image": uint8 array (16, H, W)}
    model.generate_to("out/", 1000, format="png", seed=0)

A model missing from the site's store is fetched on demand through
:func:`synthmed.registry.packages.prepare`, the same boundary the daemon and the model
tests use (verified against the record's sha256), unless the site is offline.
"""

from __future__ import annotations

import json
import logging
import operator
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from synthmed.registry import ranking
from synthmed.registry.catalog import Catalog, CatalogEntry
from synthmed.registry.errors import ConfigError, SiteNotFound
from synthmed.registry.outputs import parse_window
from synthmed.registry.packages import VerifiedPackage, prepare, runnable_upstreams
from synthmed.registry.records import Record
from synthmed.registry.array_inputs import CheckedInputs, check_inputs, plan
from synthmed.registry.pipeline import FORMAT as PIPELINE_FORMAT
from synthmed.registry.pipeline import open_runner, prepare_stages
from synthmed.registry.runner import CheckedParams, EnvOptions, Runner, RunnerOptions, check_params
from synthmed.registry.runner.formats import choose_medigan_chunk
from synthmed.registry.runner.runner import sample_nbytes
from synthmed.registry.settings import Settings, load_settings
from synthmed.registry.store import Store

from .output_folder import SIDECAR, OutputFolder
from .progress import ProgressArg, ProgressBar, progress_bar
from .shards import ALL, Shard
from .writer_pool import WriterOptions, WriterPool

log = logging.getLogger(__name__)

#: called with (samples written so far, samples asked for)
SampleProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to open a model's runner again, in this or another process
    (DataLoader workers): its verified package and the runner options. Pickles."""

    package: VerifiedPackage
    options: RunnerOptions
    #: a pipeline's stage packages (None for a model)
    stages: Mapping[str, VerifiedPackage] | None = None

    @property
    def record(self) -> Record:
        return self.package.record

    def open(self, **overrides: Any) -> Runner:
        return open_runner(self.package, self.options.with_(**overrides), self.stages)


@dataclass
class GenerationResult:
    """What :meth:`Model.generate_to` did."""

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

    @property
    def samples_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


class Model:
    """One model of a site, ready to sample: a verified package and runner options.
    Load happens on first use."""

    def __init__(self, package: VerifiedPackage, options: RunnerOptions,
                 writer_options: WriterOptions | None = None,
                 stages: Mapping[str, VerifiedPackage] | None = None) -> None:
        self.package = package
        self.stages = stages
        self.record = package.record
        self.upstream = package.upstream
        self.options = options
        #: how generate_to writes files (PNG level, writer threads): the site's [output]
        self.writer_options = writer_options or WriterOptions()
        self._runner: Runner | None = None

    # -- identity --
    @property
    def id(self) -> str:
        return self.record.id

    @property
    def version(self) -> str:
        return self.record.version

    @property
    def ref(self) -> str:
        return self.package.ref

    @property
    def package_dir(self) -> Path:
        return self.package.folder

    @property
    def outputs(self) -> list[str]:
        return [str(o["name"]) for o in self.record.outputs]

    def __repr__(self) -> str:
        return f"Model({self.ref!r}, format={self.record.package_format!r})"

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = open_runner(self.package, self.options, self.stages)
        return self._runner

    def spec(self) -> ModelSpec:
        return ModelSpec(self.package, self.options, self.stages)

    def with_options(self, **options: Any) -> "Model":
        """The same model with other runner options (device, mode, batch_size, timeout_s,
        medigan_chunk...)."""
        return Model(self.package, self.options.with_(**options), self.writer_options, self.stages)

    @property
    def array_inputs(self) -> list[str]:
        """The names of the model's array inputs ([] for most models)."""
        return [str(a["name"]) for a in self.record.array_inputs]

    def check_inputs(self, inputs: Mapping[str, Any] | None) -> CheckedInputs | None:
        """The array inputs (folders, files or arrays, by input name) read and checked
        against the record; runs no model code. None for a model without array inputs."""
        if not self.record.array_inputs and not inputs:
            return None
        return check_inputs(self.record, inputs)

    def _split(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        names = set(self.array_inputs)
        return ({k: v for k, v in params.items() if k not in names},
                {k: v for k, v in params.items() if k in names})

    def for_run(self, n: int, chunk: int | None = None) -> "Model":
        """The model for a run of ``n`` samples: a medigan-1 package gets its chunk size
        (``chunk``, else the options', else :func:`choose_medigan_chunk` for ``n``);
        other packages are returned as they are."""
        if self.record.package_format != "medigan-1":
            return self
        chunk = chunk or self.options.medigan_chunk or choose_medigan_chunk(
            n, sample_nbytes(self.record), self.options.memory_budget_mb)
        return self if chunk == self.options.medigan_chunk else self.with_options(medigan_chunk=chunk)

    def check_params(self, params: Mapping[str, Any] | None = None) -> CheckedParams:
        """The parameters checked against the model's inputs (defaults filled in); runs no model code."""
        return check_params(self.record, params)

    # -- sampling --
    def sample(self, n: int | None = None, seed: int = 0, *, per_input: int = 1,
               **params: Any) -> dict[str, np.ndarray]:
        """``n`` samples from seeds ``seed .. seed+n-1``: ``{output: array (n, ...)}``.

        A model with array inputs takes them by name among the keywords (``mask=arrays``:
        an array whose first axis runs over the inputs, a list of arrays, or a folder):
        sample i takes input ``i // per_input``; ``n`` defaults to every input
        ``per_input`` times (see :mod:`synthmed.registry.array_inputs`)."""
        raw, given = self._split(params)
        checked = self.check_params(raw)
        inputs = self.check_inputs(given)
        if inputs is None:
            if n is None:
                raise ConfigError("sample(): give the number of samples n", hint="e.g. model.sample(16, seed=0)")
            n, seed = sample_count(n), seed_value(seed)
            return self._cached_for_run(n).runner.sample(range(seed, seed + n), checked)
        n = plan(self.record, inputs, None if n is None else sample_count(n), per_input)
        seed = seed_value(seed)
        return self._cached_for_run(n).runner.sample_inputs(range(seed, seed + n), checked,
                                                           inputs.for_samples(range(n), per_input))

    def sample_seeds(self, seeds: Sequence[int], **params: Any) -> dict[str, np.ndarray]:
        raw, given = self._split(params)
        inputs = self.check_inputs(given)
        if inputs is None:
            return self._cached_for_run(len(seeds)).runner.sample(list(seeds), self.check_params(raw))
        plan(self.record, inputs, len(seeds))
        return self._cached_for_run(len(seeds)).runner.sample_inputs(list(seeds), self.check_params(raw),
                                                                     inputs.for_samples(range(len(seeds))))

    def _cached_for_run(self, n: int) -> "Model":
        """:meth:`for_run`, keeping the model (and its loaded runner) of each chunk size."""
        run = self.for_run(n)
        if run is self:
            return self
        key = run.options.medigan_chunk
        runs = self.__dict__.setdefault("_runs", {})
        if key not in runs:
            runs[key] = run
        cached: Model = runs[key]
        return cached

    def iter_batches(self, n: int, seed: int = 0, **params: Any) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
        """Batch by batch: ``(seeds, outputs)``; memory stays bounded by the batch size."""
        n, seed = sample_count(n), seed_value(seed)
        raw, given = self._split(params)
        inputs = self.check_inputs(given)
        if inputs is None:
            return self._cached_for_run(n).runner.iter_batches(range(seed, seed + n), self.check_params(raw))
        plan(self.record, inputs, n)
        return self._cached_for_run(n).runner.iter_input_batches(range(seed, seed + n), self.check_params(raw),
                                              inputs.for_samples(range(n)))

    def generate_to(self, folder: Path | str, n: int | None, format: str = "auto", seed: int = 0,
                    batch_size: int | None = None, *, bit_depth: int | None = None,
                    outputs: Sequence[str] | str | None = None, window: Any = None,
                    progress: SampleProgress | None = None, checked: CheckedParams | None = None,
                    inputs: Mapping[str, Any] | None = None, per_input: int = 1,
                    png_compress_level: int | None = None, writers: int | None = None,
                    layout: str = "synthmed", shard: Shard | str | tuple[int, int] | None = None,
                    **params: Any) -> GenerationResult:
        """Write ``n`` samples to ``folder`` (``<output>/<index>.<ext>`` plus ``synthmed.json``);
        format "auto" writes PNG for 2D outputs and NIfTI for volumes.

        ``outputs`` (names, or "image,mask") writes only those outputs: no file, blank or
        not, for the others. Without it every output is written, except that format "png"
        writes the 2D outputs and leaves the volumes out (``result.left_out`` says which,
        and why). ``window=(center, width)`` (or "C,W") is the display window of
        one-channel images written as 8-bit PNG (default: the record's window, or for CT
        :data:`synthmed.registry.outputs.DEFAULT_CT_WINDOW`); ``bit_depth=16`` writes the
        full value range instead.

        Sample i uses seed ``seed + i``; indices already written completely are skipped,
        so an interrupted run resumes without duplicates. Parameters come as keywords, or
        already checked (``checked=model.check_params({...})``; then they are not checked again).
        ``layout="medigan"`` names the files as medigan does (``batch_<b>_<i>.png`` in the
        folder itself). A medigan-1 package's chunk size is the options', else the one an
        earlier run into this folder recorded, else chosen for ``n``; it is recorded.

        Array inputs come by name in ``inputs`` (folders, files or arrays; or checked ones
        from :meth:`check_inputs`): sample i takes input ``i // per_input`` (see
        :mod:`synthmed.registry.array_inputs`); the sidecar records their digest and source.

        Files are encoded and written on a pool of ``writers`` threads (default: the
        site's ``[output] writers``, else one per core; 0 writes in this thread) while the
        model makes the next batch; ``png_compress_level`` (zlib 0..9, default the site's,
        else 1) trades PNG size for speed and does not change the pixels.

        ``shard="K/N"`` (or ``Shard(K, N)``) makes only the contiguous block ``K`` of ``N``
        of the indices ``0..n-1`` (:mod:`synthmed.shards`); shards of one run write into the
        same folder, and whichever finishes last writes the run's manifest
        (``synthmed.manifest.json``, sha256 of every file).
        """
        seed = seed_value(seed)
        if checked is not None and params:
            raise ConfigError("generate_to: pass checked= or keyword parameters, not both")
        raw, given = self._split(params)
        checked_inputs = self.check_inputs({**dict(inputs or {}), **given}) if not isinstance(
            inputs, CheckedInputs) else inputs  # read and checked before any model code runs
        if checked_inputs is not None:
            n = plan(self.record, checked_inputs, None if n is None else sample_count(n), per_input)
        n = sample_count(n)
        model = self
        if self.record.package_format == "medigan-1":
            earlier = _recorded_chunk(Path(folder))
            if earlier and self.options.medigan_chunk and earlier != self.options.medigan_chunk:
                raise ConfigError(f"{folder} holds samples made with chunk size {earlier}; this run asks for "
                                  f"{self.options.medigan_chunk}, which makes other samples from the same seeds",
                                  hint=f"use chunk size {earlier} to resume it, or write to another folder")
            model = self._cached_for_run(n) if earlier is None else self.for_run(n, earlier)
        if batch_size:
            model = model.with_options(batch_size=batch_size)
        owned = model is not self and all(model is not m for m in self.__dict__.get("_runs", {}).values())
        runner = model.runner
        checked = runner.check_params(checked if checked is not None else raw)  # before any model code runs
        options: dict[str, Any] = {}
        if bit_depth is not None:
            if bit_depth not in (8, 16):
                raise ConfigError(f"bit depth must be 8 or 16, got {bit_depth}")
            options["bit_depth"] = bit_depth
        if window is not None:
            if bit_depth == 16:
                raise ConfigError("a window maps values onto 8 bits; bit depth 16 keeps the full value range",
                                  hint="give one of window= (--window) and bit_depth=16 (--bit-depth 16)")
            options["window"] = parse_window(window)
        wopts = self.writer_options.with_(png_compress_level=png_compress_level, writers=writers)
        options["png_compress_level"] = wopts.png_compress_level
        identity_params = dict(checked)
        info = dict(runner.info)
        if checked_inputs is not None:
            # the inputs belong to the run's identity: another set of inputs is another run
            info["inputs"] = checked_inputs.describe()
            info["per_input"] = per_input
            identity_params["__inputs__"] = {"sha256": checked_inputs.digest(), "per_input": per_input}
        out = OutputFolder(Path(folder), self.record, format, seed, identity_params, options, upstream=self.upstream,
                           runner_info=info, outputs=outputs, layout=layout)
        volumes = [name for name, why in out.left_out.items() if why != "not selected"]
        if volumes:
            log.warning("%s: %s not written as PNG (3D volumes; use format nifti, dicom or npy for them)",
                        self.ref, ", ".join(volumes))
        part = Shard.parse(shard) if shard is not None else ALL
        indices = part.block(n)
        out.open(n, owned=indices if part.count > 1 else None)
        started = time.monotonic()
        written = skipped = 0
        step = runner.batch_size
        complete: bool | None = False
        # at most two batches' samples queued: memory stays flat in the sample count
        pool = WriterPool(out.write, wopts.threads, max_pending=max(2 * step, 4 * wopts.threads))
        try:
            for start in range(indices.start, indices.stop, step):
                window = range(start, min(indices.stop, start + step))
                todo = [i for i in window if not out.is_complete(i)]
                skipped += len(window) - len(todo)
                if todo:
                    batches = (runner.iter_batches([seed + i for i in todo], checked) if checked_inputs is None else
                               runner.iter_input_batches([seed + i for i in todo], checked,
                                                         checked_inputs.for_samples(todo, per_input)))
                    for seeds, batch in batches:
                        pool.submit_batch([s - seed for s in seeds], batch)
                if progress is not None:
                    progress(pool.done + skipped, len(indices))
            pool.drain()
            written = pool.done
            if progress is not None:
                progress(written + skipped, len(indices))
            # complete when every sample of the run is there: the other shards' too, and
            # every one of the largest count any run into this folder asked for
            complete = None
        except BaseException:
            pool.close(cancel=True)
            written = pool.done
            raise
        finally:
            pool.close()
            finished = out.close(complete=complete)
            if owned:
                model.close()
        return GenerationResult(Path(folder), n, written, skipped, time.monotonic() - started, out.sidecar_path,
                                [s.name for s in out.specs], dict(out.left_out), complete=finished,
                                shard=str(part) if part.count > 1 else None)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        for run in self.__dict__.pop("_runs", {}).values():
            run.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recorded_chunk(folder: Path) -> int | None:
    """The medigan chunk size an earlier run into ``folder`` recorded in its sidecar."""
    try:
        data = json.loads((folder / SIDECAR).read_text("utf-8"))
        value = data.get("runner", {}).get("medigan_seed_chunk")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


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


def no_site_error(settings: Settings) -> SiteNotFound:
    """What a first-time user (or a misconfigured SYNTHMED_HOME) is told."""
    if settings.site_file.exists():
        return SiteNotFound(
            f"the site at {settings.home} has no catalog yet ({settings.catalog_path} is missing)",
            hint=f"fetch the records of its upstreams: `synthmed --site {settings.home} sync`",
            home=str(settings.home))
    return SiteNotFound(
        f"no synthmed site at {settings.home} (no site.toml, no catalog)",
        hint=f"create one that follows an index, then fetch its records: `synthmed init {settings.home} "
             f"--upstream public=<index git URL>` and `synthmed --site {settings.home} sync`; or point SYNTHMED_HOME "
             "(or Site(path), Generators(path), --site) at an existing site",
        home=str(settings.home))


class Site:
    """A synthmed site: its settings, catalog, store and packages."""

    def __init__(self, path: Path | str | None = None, *, settings: Settings | None = None,
                 offline: bool | None = None, device: str | None = None, mode: str | None = None,
                 batch_size: int | None = None, timeout_s: float | None = None,
                 env_options: EnvOptions | None = None, progress: ProgressArg = None) -> None:
        if settings is None:
            settings = load_settings(path, {"offline": offline, "device": device, "mode": mode,
                                            "batch_size": batch_size})
        elif offline is not None:
            settings = settings.with_overrides(offline=offline)
        self.settings = settings
        #: the runner options every model of this site starts from (built once)
        self.runner_options = RunnerOptions.from_settings(settings, timeout_s=timeout_s, env_options=env_options)
        #: how models of this site write their files (``[output]`` in site.toml)
        self.writer_options = WriterOptions.from_settings(settings)
        self._catalog: Catalog | None = None
        #: progress bars for long calls: None on a terminal only, False never, True always
        #: (see :mod:`synthmed.progress`)
        self.progress = progress

    @property
    def home(self) -> Path:
        return self.settings.home

    def __repr__(self) -> str:
        return f"Site({str(self.home)!r})"

    # -- catalog --
    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            if not self.settings.catalog_path.exists():
                raise no_site_error(self.settings)
            self._catalog = Catalog.open(self.settings.catalog_path, readonly=True)
        return self._catalog

    def search(self, query: str = "", *, runnable: bool = False, **filters: Any) -> list[CatalogEntry]:
        """Free text plus filters (modality, anatomy, architecture, license, rank, limit, upstream).
        ``runnable=True``: only models this site can run now (pinned, not yanked, from an
        upstream with ``allow_code``, package in the store)."""
        if runnable:
            filters.update(runnable=True, code_upstreams=runnable_upstreams(self.settings),
                           held_blobs=set(Store(self.settings.store_dir).iter_blobs()))
        return ranking.search(self.catalog, query, **filters)

    def list_models(self) -> list[CatalogEntry]:
        return self.catalog.models.list_models()

    def resolve(self, ref: str) -> CatalogEntry:
        return self.catalog.models.resolve(ref)

    def record(self, ref: str) -> Record:
        return self.resolve(ref).record

    def show(self, ref: str) -> CatalogEntry:
        """The entry ``synthmed show`` shows: as :meth:`resolve`, but a yanked version is
        returned (``entry.status == "yanked"``) instead of refused. Never run it."""
        return self.catalog.models.resolve(ref, allow_yanked=True)

    # -- packages --
    def package(self, ref: str | CatalogEntry, *, progress: ProgressArg | None = None) -> VerifiedPackage:
        """The verified, unpacked package of a model (fetched on demand unless offline);
        see :func:`synthmed.registry.packages.prepare`. A download shows a byte progress
        bar (``progress``, default the site's: see :mod:`synthmed.progress`)."""
        entry = ref if isinstance(ref, CatalogEntry) else self.resolve(ref)
        bar = progress_bar(self.progress if progress is None else progress, f"fetching {entry.qualified_ref}",
                           unit="bytes")
        try:
            return prepare(entry, self.settings, progress=bar)
        finally:
            if isinstance(bar, ProgressBar):
                bar.close()

    def model(self, ref: str | CatalogEntry, *, device: str | None = None, mode: str | None = None,
              batch_size: int | None = None, timeout_s: float | None = None, chunk_size: int | None = None) -> Model:
        """A model by reference (``id``, ``id@1.0.0``, ``upstream/id@1.0.0``), or by an entry
        already resolved with :meth:`resolve`. ``chunk_size``: seeds per generate() call of a
        medigan-1 package (default: site.toml's ``runner.medigan_chunk``, else chosen per run)."""
        options = self.runner_options.with_(device=device, mode=mode, batch_size=batch_size, timeout_s=timeout_s,
                                            medigan_chunk=chunk_size)
        package = self.package(ref)
        stages = prepare_stages(package, self.settings) if package.record.package_format == PIPELINE_FORMAT else None
        return Model(package, options, self.writer_options, stages)

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None
