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

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from synthmed.registry.measuring import ranking
from synthmed.registry.catalog import Catalog, CatalogEntry
from synthmed.registry.errors import ConfigError, SiteNotFound
from synthmed.registry.packages import VerifiedPackage, prepare, runnable_upstreams
from synthmed.registry.records import Record
from synthmed.registry.array_inputs import CheckedInputs, check_inputs, plan
from synthmed.registry.pipeline import open_runner
from synthmed.registry.runner import CheckedParams, EnvOptions, Runner, RunnerOptions, check_params
from synthmed.registry.runner.runner import sample_nbytes
from synthmed.registry.settings import Settings, load_settings
from synthmed.registry.artefacts.store import Store

from .format_rules import log_left_out
from .generate_run import write_run
from .output_folder import OutputFolder
from .published import PublishedDataset
from .progress import ProgressArg, ProgressBar, progress_bar
from .request import GenerationRequest, GenerationResult, SampleProgress, build_request, sample_count, seed_value
from .shards import Shard
from .writer_pool import WriterOptions

log = logging.getLogger(__name__)

__all__ = ["GenerationRequest", "GenerationResult", "Model", "ModelSpec", "SampleProgress", "Site",
           "sample_count", "seed_value"]


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
        return check_inputs(self.record, inputs, max_decoded_bytes=self.options.max_decoded_bytes)

    def _split(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        names = set(self.array_inputs)
        return ({k: v for k, v in params.items() if k not in names},
                {k: v for k, v in params.items() if k in names})

    def for_run(self, n: int, chunk: int | None = None) -> "Model":
        """The model for a run of ``n`` samples: a package whose format serves seeds in
        chunks (medigan-1) gets its chunk size (``chunk``, else the options', else chosen
        for ``n``: :meth:`~synthmed.registry.formats.PackageFormat.run_chunk`); other
        packages are returned as they are."""
        chunk = self.package.format.run_chunk(n, chunk or self.options.medigan_chunk, sample_nbytes(self.record),
                                              self.options.memory_budget_mb)
        return self if chunk is None or chunk == self.options.medigan_chunk else self.with_options(medigan_chunk=chunk)

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
        return self.run(self.request(folder, n, format, seed, batch_size, bit_depth=bit_depth, outputs=outputs,
                                     window=window, progress=progress, checked=checked, inputs=inputs,
                                     per_input=per_input, png_compress_level=png_compress_level, writers=writers,
                                     layout=layout, shard=shard, **params))

    def request(self, folder: Path | str, n: int | None, format: str = "auto", seed: int = 0,
                batch_size: int | None = None, *, checked: CheckedParams | None = None,
                inputs: Mapping[str, Any] | None = None, per_input: int = 1,
                shard: Shard | str | tuple[int, int] | None = None, **params: Any) -> GenerationRequest:
        """The :class:`~synthmed.request.GenerationRequest` of :meth:`generate_to`'s arguments
        (the same keywords; array inputs may also come among the parameters by name): the
        inputs read and checked, ``n`` planned from them; runs no model code."""
        options = {k: params.pop(k) for k in ("bit_depth", "outputs", "window", "progress", "png_compress_level",
                                              "writers", "layout") if k in params}
        if checked is not None and params:
            raise ConfigError("generate_to: pass checked= or keyword parameters, not both")
        raw, given = self._split(params)
        if not isinstance(inputs, CheckedInputs):
            inputs = {**dict(inputs or {}), **given} or None
        return build_request(self.record, folder, n, seed=seed, params=checked if checked is not None else raw,
                             inputs=inputs, per_input=per_input, max_decoded_bytes=self.options.max_decoded_bytes,
                             format=format, batch_size=batch_size,
                             shard=Shard.parse(shard) if shard is not None else Shard(0, 1), **options)

    def run(self, request: GenerationRequest) -> GenerationResult:
        """Make ``request`` in this process (its shard's block of it when it names one):
        what :meth:`generate_to` does once it has built the request."""
        checked = self.check_params(request.params)  # before any model code runs
        wopts = self.writer_options.with_(png_compress_level=request.png_compress_level, writers=request.writers)
        out = OutputFolder(request.folder, self.record, request.format, request.seed, request.identity_params(checked),
                           request.file_options(wopts.png_compress_level), upstream=self.upstream,
                           outputs=request.outputs, layout=request.layout)
        log_left_out(self.ref, out.left_out)
        chosen: list[Model] = []

        def start(recorded: Mapping[str, Any]) -> dict[str, Any]:
            # under the folder's lock, with what an earlier run into it recorded
            chosen.append(self._model_for(request, recorded))
            return {**chosen[0].runner.info, **request.inputs_info()}

        try:
            out.open(request.n, owned=request.indices if request.sharded else None, start=start)
            return write_run(chosen[0].runner, out, request, checked, wopts)
        finally:
            out.release()  # closed by write_run; released here whatever failed before it
            if chosen and self._owns(chosen[0]):
                chosen[0].close()

    def _model_for(self, request: GenerationRequest, recorded: Mapping[str, Any]) -> "Model":
        """The model that makes ``request`` into a folder whose earlier run recorded
        ``recorded`` (its sidecar's runner section): the chunk size its format keeps
        (:meth:`~synthmed.registry.formats.PackageFormat.resume_chunk`), the request's batch size."""
        earlier = self.package.format.resume_chunk(request.folder, recorded, self.options.medigan_chunk)
        model = self._cached_for_run(request.n) if earlier is None else self.for_run(request.n, earlier)
        if request.batch_size:
            model = model.with_options(batch_size=request.batch_size)
        return model

    def _owns(self, model: "Model") -> bool:
        """Whether ``model`` is a copy made for one run (closed after it), not this model
        or one it keeps."""
        return model is not self and all(model is not m for m in self.__dict__.get("_runs", {}).values())

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
        return Model(self.package(ref), options, self.writer_options)  # a pipeline's stages come with it

    # -- published datasets --
    def datasets(self, query: str = "", **filters: Any) -> list[PublishedDataset]:
        """The served version of each published dataset (matching ``query`` and the
        filters modality, anatomy, model, upstream, license when given)."""
        cat = self.catalog
        entries = cat.datasets.search(query, **filters) if (query or filters) else cat.datasets.list_datasets()
        return [PublishedDataset(self.settings, e) for e in entries]

    def dataset(self, ref: str, *, allow_yanked: bool = False) -> PublishedDataset:
        """A published dataset by reference (``id``, ``id@1.0.0``, ``upstream/id@1.0.0``):
        ``.get(dir)``, ``.folder()``, ``.torch_dataset(...)``; :func:`synthmed.published_verify.verify_dataset`
        re-derives its items."""
        return PublishedDataset(self.settings, self.catalog.datasets.resolve(ref, allow_yanked=allow_yanked))

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None
