"""The plain modern API: a :class:`Site` (a folder with its catalog, store and
packages), its search, and :class:`Model` objects that sample in memory or write to
disk.

    site = Site()                       # $SYNTHMED_HOME or the user data dir
    model = site.model("ihc-patch-dcgan")
    batch = model.sample(16, seed=0)    # {"image": uint8 array (16, H, W)}
    model.generate_to("out/", 1000, format="png", seed=0)

A model missing from the site's store is fetched on demand through the same mirror
code the daemon uses (verified against the record's sha256), unless the site is
offline.
"""

from __future__ import annotations

import logging
import operator
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from synthmed.registry.errors import (
    ArtefactNotFound,
    BlobCorrupt,
    CatalogError,
    ConfigError,
    HashMismatch,
    SiteNotFound,
    Unverified,
)
from synthmed.registry.records import Record
from synthmed.registry.runner import EnvOptions, Runner
from synthmed.registry.runner.verify import require_verified
from synthmed.registry.settings import Settings, load_settings
from synthmed.registry.store import Store
from synthmed.registry.unpack import check_package

from .output_folder import OutputFolder

if TYPE_CHECKING:  # pragma: no cover
    from synthmed.registry.catalog import Catalog, CatalogEntry

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to open a model's runner again, in this or another process
    (DataLoader workers): the record, its unpacked package and the runner options."""

    record_data: Mapping[str, Any]
    record_path: str
    package_dir: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def record(self) -> Record:
        return Record(data=self.record_data, path=self.record_path)

    def open(self, **overrides: Any) -> Runner:
        opts = {**self.options, **{k: v for k, v in overrides.items() if v is not None}}
        return Runner(self.record, Path(self.package_dir), **opts)


@dataclass
class GenerationResult:
    """What :meth:`Model.generate_to` did."""

    folder: Path
    num_samples: int
    written: int
    skipped: int
    seconds: float
    sidecar: Path

    @property
    def samples_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


class Model:
    """One model of a site, ready to sample. Load happens on first use."""

    def __init__(self, record: Record, package_dir: Path, *, upstream: str | None = None,
                 runner_options: Mapping[str, Any] | None = None) -> None:
        self.record = record
        self.package_dir = package_dir
        self.upstream = upstream
        self.runner_options = dict(runner_options or {})
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
        return f"{self.upstream}/{self.record.ref}" if self.upstream else self.record.ref

    @property
    def outputs(self) -> list[str]:
        return [str(o["name"]) for o in self.record.outputs]

    def __repr__(self) -> str:
        return f"Model({self.ref!r}, format={self.record.package_format!r})"

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = Runner(self.record, self.package_dir, **self.runner_options)
        return self._runner

    def spec(self) -> ModelSpec:
        return ModelSpec(dict(self.record.data), self.record.path, str(self.package_dir), dict(self.runner_options))

    def with_options(self, **options: Any) -> "Model":
        """The same model with other runner options (device, mode, batch_size, timeout_s...)."""
        opts = {**self.runner_options, **{k: v for k, v in options.items() if v is not None}}
        return Model(self.record, self.package_dir, upstream=self.upstream, runner_options=opts)

    # -- sampling --
    def sample(self, n: int, seed: int = 0, **params: Any) -> dict[str, np.ndarray]:
        """``n`` samples from seeds ``seed .. seed+n-1``: ``{output: array (n, ...)}``."""
        n, seed = sample_count(n), seed_value(seed)
        return self.runner.sample(range(seed, seed + n), **params)

    def sample_seeds(self, seeds: Sequence[int], **params: Any) -> dict[str, np.ndarray]:
        return self.runner.sample(list(seeds), **params)

    def iter_batches(self, n: int, seed: int = 0, **params: Any) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
        """Batch by batch: ``(seeds, outputs)``; memory stays bounded by the batch size."""
        n, seed = sample_count(n), seed_value(seed)
        return self.runner.iter_batches(range(seed, seed + n), **params)

    def generate_to(self, folder: Path | str, n: int, format: str = "auto", seed: int = 0,
                    batch_size: int | None = None, *, bit_depth: int | None = None,
                    progress: Progress | None = None, **params: Any) -> GenerationResult:
        """Write ``n`` samples to ``folder`` (``<output>/<index>.<ext>`` plus ``synthmed.json``);
        format "auto" writes PNG for 2D outputs and NIfTI for volumes.

        Sample i uses seed ``seed + i``; indices already written completely are skipped,
        so an interrupted run resumes without duplicates.
        """
        n, seed = sample_count(n), seed_value(seed)
        model = self.with_options(batch_size=batch_size) if batch_size else self
        runner = model.runner
        checked = runner.check_params(params)  # before any model code runs
        options: dict[str, Any] = {}
        if bit_depth is not None:
            if bit_depth not in (8, 16):
                raise ConfigError(f"bit depth must be 8 or 16, got {bit_depth}")
            options["bit_depth"] = bit_depth
        out = OutputFolder(Path(folder), self.record, format, seed, checked, options, upstream=self.upstream,
                           runner_info=runner.info)
        out.open(n)
        started = time.monotonic()
        written = skipped = 0
        step = runner.batch_size
        complete = False
        try:
            for start in range(0, n, step):
                window = range(start, min(n, start + step))
                todo = [i for i in window if not out.is_complete(i)]
                skipped += len(window) - len(todo)
                if todo:
                    for seeds, outputs in runner.iter_batches([seed + i for i in todo], **checked):
                        out.write_batch([s - seed for s in seeds], outputs)
                        written += len(seeds)
                if progress is not None:
                    progress(written + skipped, n)
            # the sidecar keeps the largest count any run asked for: complete only when
            # every one of those samples is there, not just the n of this run
            complete = all(out.is_complete(i) for i in range(n, out.num_samples))
        finally:
            out.close(complete=complete)
            if model is not self:
                model.close()
        return GenerationResult(Path(folder), n, written, skipped, time.monotonic() - started, out.sidecar_path)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
                 env_options: EnvOptions | None = None) -> None:
        if settings is None:
            settings = load_settings(path, {"offline": offline, "device": device, "mode": mode,
                                            "batch_size": batch_size})
        elif offline is not None:
            settings = settings.with_overrides(offline=offline)
        self.settings = settings
        self.timeout_s = timeout_s
        self.env_options = env_options
        self._catalog: Catalog | None = None

    @property
    def home(self) -> Path:
        return self.settings.home

    def __repr__(self) -> str:
        return f"Site({str(self.home)!r})"

    # -- catalog --
    @property
    def catalog(self) -> "Catalog":
        if self._catalog is None:
            from synthmed.registry.catalog import Catalog

            if not self.settings.catalog_path.exists():
                raise no_site_error(self.settings)
            try:
                self._catalog = Catalog.open(self.settings.catalog_path, readonly=True)
            except CatalogError:
                raise
        return self._catalog

    def search(self, query: str = "", **filters: Any) -> list["CatalogEntry"]:
        """Free text plus filters (modality, anatomy, architecture, license, rank, limit, upstream)."""
        return self.catalog.search(query, **filters)

    def list_models(self) -> list["CatalogEntry"]:
        return self.catalog.list_models()

    def resolve(self, ref: str) -> "CatalogEntry":
        return self.catalog.resolve(ref)

    def record(self, ref: str) -> Record:
        return self.resolve(ref).record

    # -- packages --
    def _check_code_allowed(self, entry: "CatalogEntry") -> None:
        for up in self.settings.upstreams:
            if up.name == entry.upstream and not up.allow_code:
                raise Unverified(
                    f"{entry.qualified_ref}: this site does not run code from upstream {entry.upstream!r} "
                    f"(allow_code = false in {self.settings.site_file})",
                    hint="a site admin may allow it in site.toml; until then the model is searchable only",
                    model=entry.qualified_ref)

    def package_dir(self, entry: "CatalogEntry") -> Path:
        """The unpacked, verified package of an entry; fetched on demand unless offline."""
        record = entry.record
        sha = require_verified(record)
        self._check_code_allowed(entry)
        pkg = self.settings.packages_dir / sha
        if pkg.is_dir() and check_package(self.settings.packages_dir, sha) is None:
            return pkg  # unpacked, and still exactly what the verified blob holds
        if self.settings.offline and not Store(self.settings.store_dir).has(sha):
            raise ArtefactNotFound(
                f"{entry.qualified_ref} is not mirrored on this site ({pkg} is missing) and the site is offline",
                hint="mirror it with the daemon (`synthmed daemon run --once`), or run without offline to "
                     "fetch it now", model=entry.qualified_ref)
        from synthmed.registry.mirror import ensure_package
        from synthmed.registry.sources.base import SourceContext

        ctx = SourceContext(self.settings, index_repo=entry.index_repo, index_commit=entry.index_commit,
                            index_subfolder=entry.index_subfolder)
        log.info("%s: fetching its package (sha256 %s)", entry.qualified_ref, sha[:12])
        try:
            return ensure_package(record, self.settings, ctx)
        except (HashMismatch, BlobCorrupt) as exc:
            raise type(exc)(
                f"{entry.qualified_ref}: the package failed verification: {exc.message}",
                hint="run `synthmed verify` (re-hashes the store, re-fetches corrupt blobs); if a source serves "
                     f"other bytes than the pin, the record needs `synthmed index pin {record.ref}` by a maintainer",
                model=entry.qualified_ref) from exc
        except ArtefactNotFound as exc:
            hints = [exc.hint] if exc.hint else []
            if "hash" in exc.message:
                hints.append("the bytes served do not match the pinned sha256: nothing was run; if the pin "
                             f"itself is wrong, a maintainer re-pins it with `synthmed index pin {record.ref}`")
            hints.append("`synthmed verify` re-hashes this site's store")
            raise ArtefactNotFound(f"{entry.qualified_ref}: {exc.message}", hint="; ".join(hints),
                                   model=entry.qualified_ref) from exc

    def model(self, ref: "str | CatalogEntry", *, device: str | None = None, mode: str | None = None,
              batch_size: int | None = None, timeout_s: float | None = None) -> Model:
        """A model by reference (``id``, ``id@1.0.0``, ``upstream/id@1.0.0``), or by an entry
        already resolved with :meth:`resolve`."""
        from synthmed.registry.catalog import CatalogEntry

        entry = ref if isinstance(ref, CatalogEntry) else self.resolve(ref)
        pkg = self.package_dir(entry)
        r = self.settings.runner
        options: dict[str, Any] = {
            "device": device or r.device,
            "mode": mode or r.mode,
            "batch_size": batch_size or r.batch_size,
            "envs_dir": self.settings.envs_dir,
            "timeout_s": timeout_s if timeout_s is not None else self.timeout_s,
            "memory_budget_mb": r.memory_budget_mb,
            "env_options": self.env_options or EnvOptions(offline=self.settings.offline),
        }
        return Model(entry.record, pkg, upstream=entry.upstream, runner_options=options)

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None
