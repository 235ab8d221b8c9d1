"""Typed settings, built once at start-up.

Precedence, highest first: explicit flags (``overrides``) > environment variables
(``SYNTHMED_*``) > the site's ``site.toml`` > defaults. Nothing here reads the
environment at import time: :func:`load_settings` takes the environment as an argument
(defaulting to ``os.environ`` when called).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError
from .site_toml import read_site_toml as read_site_toml  # re-exported: callers read site.toml here
from .upstream_check import check_branch, check_name, check_signer, check_subfolder, check_url

log = logging.getLogger(__name__)

SITE_FILE = "site.toml"
#: the digest of the last site.toml bytes that passed the schema (see :func:`.site_toml.read_site_toml`)
SITE_FILE_MEMO = "cache/site.toml.validated"


@dataclass(frozen=True)
class Upstream:
    """One index repository a site follows."""

    name: str
    url: str
    branch: str = "main"
    subfolder: str = ""
    priority: int = 100
    require_signed: bool = False
    allowed_signers: tuple[str, ...] = ()
    allow_code: bool = True
    #: folders under which ``file://`` (and local ``dvc:``/``mirror:``) sources in this
    #: upstream's records may read; ``None``: the default (see :func:`default_file_roots`)
    file_roots: tuple[str, ...] | None = None


def is_local_url(url: str) -> bool:
    """True when an upstream URL names a folder on this machine (a path or ``file://``)."""
    if url.startswith("file://"):
        return True
    if "://" in url or url.startswith("git@"):
        return False
    head = url.split("/")[0]
    return not (":" in head and not Path(url).exists())


def default_file_roots(upstream: Upstream) -> tuple[str, ...]:
    """``file_roots`` when site.toml gives none: nothing for a network upstream; for a
    local-folder upstream, its own folder (what can write records there can already put
    files there)."""
    if not is_local_url(upstream.url):
        return ()
    return (upstream.url.removeprefix("file://"),)


@dataclass(frozen=True)
class MirrorPolicy:
    """Which models a site mirrors: ``all``, ``none`` or ``select`` by fields; and which
    published datasets: ``models`` (those whose model version the site mirrors), ``all``,
    ``none`` or ``select`` (by ``dataset_ids``, fnmatch patterns, which ``models`` adds to)."""

    policy: str = "all"
    modalities: tuple[str, ...] = ()
    anatomies: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    datasets: str = "models"
    dataset_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceOverrides:
    zenodo_host: str = "https://zenodo.org"
    zenodo_token: str | None = None
    dvc_remote_url: str | None = None
    dvc_remote_config: Mapping[str, Any] = field(default_factory=dict)
    mirrors: tuple[str, ...] = ()
    http_connect_timeout_s: float = 10.0
    http_read_timeout_s: float = 30.0
    http_retries: int = 3
    #: first backoff between HTTP retries, doubled each retry
    http_backoff_s: float = 0.5
    #: total seconds one source may take to deliver an artefact (opening, retries and
    #: every read); past it the source fails and the next one is tried
    download_deadline_s: float = 3600.0
    #: a source slower than this, averaged over ``min_rate_window_s``, fails (0: no minimum)
    min_rate_bytes_per_s: float = 1024.0
    min_rate_window_s: float = 60.0
    #: most bytes read for an artefact whose record declares no ``size`` (2 GiB)
    max_unsized_bytes: int = 2 << 30


@dataclass(frozen=True)
class Schedules:
    sync_interval_minutes: int = 60
    nightly_test_time: str = "02:30"
    scrub_interval_hours: int = 168
    gc_interval_hours: int = 24


@dataclass(frozen=True)
class RunnerSettings:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    mode: str = "auto"  # auto | inline | worker
    batch_size: int = 32
    memory_budget_mb: int | None = None
    #: seeds per generate() call of a medigan-1 package; None: each run chooses
    medigan_chunk: int | None = None
    #: keep memory freed by one batch for the next (:mod:`synthmed.registry.runner.allocator`)
    keep_freed_memory: bool = True


@dataclass(frozen=True)
class OutputSettings:
    """How generated samples are written (``[output]`` in site.toml)."""

    #: zlib level of PNG files, 0 (none, fastest) .. 9 (smallest); 1 by default
    png_compress_level: int = 1
    #: writer threads (None: one per core; 0: write in the generating thread)
    writers: int | None = None


@dataclass(frozen=True)
class InputSettings:
    """Files synthmed decodes as images (``[inputs]`` in site.toml): array inputs and
    reference sets (:mod:`.decoding`)."""

    #: a file whose header declares more bytes than this once decoded is refused before
    #: it is decoded (2 GiB: a 512x512x2048 float32 volume)
    max_decoded_bytes: int = 2 << 30


@dataclass(frozen=True)
class AuditTarget:
    """One ``[[evaluation.audit]]`` entry: audit ``model`` against its training images nightly."""

    model: str                   # a model reference (ID, ID@VERSION, UPSTREAM/ID[@VERSION])
    training: str                # a reference set of the site, or a folder
    holdout: str | None = None   # real images it was not trained on (the DCR test)
    samples: int = 200


@dataclass(frozen=True)
class EvaluationSettings:
    """The daemon's scheduled evaluation (``[evaluation]`` in site.toml)."""

    samples: int = 200                  # samples per model and reference set
    extractors: tuple[str, ...] = ()    # extractor references; empty: the default extractor
    schedule: str = "nightly"           # nightly (after the nightly tests) | weekly | off
    audits: tuple[AuditTarget, ...] = ()


@dataclass(frozen=True)
class Settings:
    """Everything a site, the daemon, the CLI or the SDK needs to know."""

    home: Path
    name: str = "synthmed-site"
    upstreams: tuple[Upstream, ...] = ()
    mirror: MirrorPolicy = MirrorPolicy()
    sources: SourceOverrides = SourceOverrides()
    schedules: Schedules = Schedules()
    runner: RunnerSettings = RunnerSettings()
    output: OutputSettings = OutputSettings()
    inputs: InputSettings = InputSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    stale_after_hours: float = 48.0
    offline: bool = False
    log_level: str = "INFO"

    # -- derived paths (the layout documented in README "Site layout") --
    @property
    def site_file(self) -> Path:
        return self.home / SITE_FILE

    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    @property
    def packages_dir(self) -> Path:
        return self.home / "packages"

    @property
    def envs_dir(self) -> Path:
        return self.home / "envs"

    @property
    def upstreams_dir(self) -> Path:
        return self.home / "upstreams"

    @property
    def catalog_path(self) -> Path:
        return self.home / "catalog.db"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def references_dir(self) -> Path:
        """Site-local reference sets (``synthmed reference add``): never exported."""
        return self.home / "references"

    @property
    def features_cache_dir(self) -> Path:
        """Cached feature arrays of generated sets (``synthmed evaluate``): never exported."""
        return self.home / "cache" / "features"

    def upstream(self, name: str) -> Upstream:
        for u in self.upstreams:
            if u.name == name:
                return u
        raise ConfigError(
            f"{self.site_file}: no upstream named {name!r}",
            hint=f"known upstreams: {', '.join(u.name for u in self.upstreams) or 'none'}",
        )

    def file_roots(self, upstream: str | None) -> tuple[Path, ...] | None:
        """Folders local sources of ``upstream``'s records may read, resolved (symlinks
        followed); ``None`` (no upstream: the maintainer's own machine) means any. An
        upstream that site.toml does not list gets none."""
        if upstream is None:
            return None
        for u in self.upstreams:
            if u.name == upstream:
                roots = u.file_roots if u.file_roots is not None else default_file_roots(u)
                paths = (Path(r).expanduser() for r in roots)
                return tuple(Path(os.path.realpath(p if p.is_absolute() else self.home / p)) for p in paths)
        return ()

    def with_overrides(self, **kw: Any) -> "Settings":
        return replace(self, **kw)


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """``SYNTHMED_HOME`` if set, else the platform's user data dir."""
    env = os.environ if environ is None else environ
    if env.get("SYNTHMED_HOME"):
        return Path(env["SYNTHMED_HOME"]).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("synthmed", appauthor=False))


def _truthy(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{where}: {value!r} is not a boolean", hint="use 1/0, true/false, yes/no")


def _number(value: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a number", hint="give a plain number, e.g. 48") from None


def _tuple(v: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in (v or ()))


def _file_roots(home: Path, u: Mapping[str, Any]) -> tuple[str, ...] | None:
    if "file_roots" not in u:
        return None
    roots = _tuple(u.get("file_roots"))
    for r in roots:
        if not Path(r).expanduser().is_absolute():
            raise ConfigError(f"{home / SITE_FILE}: upstream {u['name']!r}: file_roots entry {r!r} is not an "
                              "absolute path", hint="list absolute folders, e.g. file_roots = [\"/srv/weights\"]")
    return tuple(str(Path(r).expanduser()) for r in roots)


def _upstreams(home: Path, entries: Any) -> tuple[Upstream, ...]:
    """The ``[[upstreams]]`` entries, checked (names unique, URL, branch, subfolder, signers),
    in priority order."""
    ups = []
    seen: set[str] = set()
    for i, u in enumerate(entries):
        where = f"{home / SITE_FILE}: [[upstreams]] #{i + 1}"
        name = check_name(u.get("name"), f"{where}, name")
        where = f"{home / SITE_FILE}: upstream {name!r}"
        if name in seen:
            raise ConfigError(
                f"{home / SITE_FILE}: upstream {name!r} is declared twice",
                hint="give every [[upstreams]] entry its own name",
            )
        seen.add(name)
        check_url(u.get("url"), f"{where}, url", site_home=home)
        check_branch(u.get("branch", "main"), f"{where}, branch")
        sub = check_subfolder(str(u.get("subfolder", "")), f"{where}, subfolder")
        for j, line in enumerate(u.get("allowed_signers") or ()):
            check_signer(line, f"{where}, allowed_signers[{j}]")
        ups.append(
            Upstream(
                name=u["name"],
                url=u["url"],
                branch=u.get("branch", "main"),
                subfolder=sub,
                priority=int(u.get("priority", 100)),
                require_signed=bool(u.get("require_signed", False)),
                allowed_signers=_tuple(u.get("allowed_signers")),
                allow_code=bool(u.get("allow_code", True)),
                file_roots=_file_roots(home, u),
            )
        )
    return tuple(sorted(ups, key=lambda u: u.priority))


def _mirror(m: Mapping[str, Any]) -> MirrorPolicy:
    return MirrorPolicy(
        policy=m.get("policy", "all"),
        modalities=_tuple(m.get("modalities")),
        anatomies=_tuple(m.get("anatomies")),
        ids=_tuple(m.get("ids")),
        datasets=m.get("datasets", "models"),
        dataset_ids=_tuple(m.get("dataset_ids")),
    )


def _sources(s: Mapping[str, Any]) -> SourceOverrides:
    dvc = s.get("dvc", {})
    http = s.get("http", {})
    return SourceOverrides(
        zenodo_host=s.get("zenodo_host", SourceOverrides.zenodo_host),
        dvc_remote_url=dvc.get("remote_url"),
        dvc_remote_config=dict(dvc.get("config", {})),
        mirrors=_tuple(s.get("mirrors")),
        http_connect_timeout_s=float(http.get("connect_timeout_s", 10.0)),
        http_read_timeout_s=float(http.get("read_timeout_s", 30.0)),
        http_retries=int(http.get("retries", 3)),
        http_backoff_s=float(http.get("backoff_s", SourceOverrides.http_backoff_s)),
        download_deadline_s=float(s.get("download_deadline_s", SourceOverrides.download_deadline_s)),
        min_rate_bytes_per_s=float(s.get("min_rate_bytes_per_s", SourceOverrides.min_rate_bytes_per_s)),
        min_rate_window_s=float(s.get("min_rate_window_s", SourceOverrides.min_rate_window_s)),
        max_unsized_bytes=int(s.get("max_unsized_bytes", SourceOverrides.max_unsized_bytes)),
    )


def _schedules(sc: Mapping[str, Any]) -> Schedules:
    return Schedules(
        sync_interval_minutes=int(sc.get("sync_interval_minutes", 60)),
        nightly_test_time=str(sc.get("nightly_test_time", "02:30")),
        scrub_interval_hours=int(sc.get("scrub_interval_hours", 168)),
        gc_interval_hours=int(sc.get("gc_interval_hours", 24)),
    )


def _runner(r: Mapping[str, Any]) -> RunnerSettings:
    return RunnerSettings(
        device=str(r.get("device", "auto")),
        mode=str(r.get("mode", "auto")),
        batch_size=int(r.get("batch_size", 32)),
        memory_budget_mb=r.get("memory_budget_mb"),
        medigan_chunk=r.get("medigan_chunk"),
        keep_freed_memory=bool(r.get("keep_freed_memory", True)),
    )


def _evaluation(ev: Mapping[str, Any]) -> EvaluationSettings:
    return EvaluationSettings(
        samples=int(ev.get("samples", EvaluationSettings.samples)), extractors=_tuple(ev.get("extractors")),
        schedule=str(ev.get("schedule", EvaluationSettings.schedule)),
        audits=tuple(AuditTarget(model=str(a["model"]), training=str(a["training"]),
                                 holdout=None if a.get("holdout") is None else str(a["holdout"]),
                                 samples=int(a.get("samples", AuditTarget.samples))) for a in ev.get("audit", [])))


def settings_from_toml(home: Path, data: Mapping[str, Any]) -> Settings:
    """The settings site.toml's ``data`` (already validated by its schema) gives, section by
    section, defaults where a key is absent."""
    site = data.get("site", {})
    o = data.get("output", {})
    i = data.get("inputs", {})
    return Settings(
        home=home,
        output=OutputSettings(
            png_compress_level=int(o.get("png_compress_level", OutputSettings.png_compress_level)),
            writers=None if o.get("writers") is None else int(o["writers"]),
        ),
        evaluation=_evaluation(data.get("evaluation", {})),
        inputs=InputSettings(max_decoded_bytes=int(i.get("max_decoded_bytes", InputSettings.max_decoded_bytes))),
        name=str(site.get("name", "synthmed-site")),
        upstreams=_upstreams(home, data.get("upstreams", [])),
        mirror=_mirror(data.get("mirror", {})),
        sources=_sources(data.get("sources", {})),
        schedules=_schedules(data.get("schedules", {})),
        runner=_runner(data.get("runner", {})),
        stale_after_hours=float(site.get("stale_after_hours", 48.0)),
        offline=bool(site.get("offline", False)),
        log_level=str(site.get("log_level", "INFO")),
    )


def load_settings(
    home: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings: flags (``overrides``) > environment > site.toml > defaults.

    ``overrides`` keys: ``device``, ``mode``, ``batch_size``, ``offline``, ``log_level``,
    ``zenodo_host``, ``stale_after_hours``, ``sync_interval_minutes``; a value of ``None``
    means "not given". Environment: ``SYNTHMED_DEVICE``, ``SYNTHMED_RUN_MODE``,
    ``SYNTHMED_OFFLINE``, ``SYNTHMED_LOG_LEVEL``, ``SYNTHMED_ZENODO_HOST``,
    ``SYNTHMED_ZENODO_TOKEN``, ``SYNTHMED_STALE_AFTER_HOURS``,
    ``SYNTHMED_SYNC_INTERVAL_MINUTES``.
    """
    env = os.environ if environ is None else environ
    home_path = Path(home).expanduser() if home is not None else default_home(env)
    settings = settings_from_toml(home_path, read_site_toml(home_path / SITE_FILE, memo=home_path / SITE_FILE_MEMO))

    runner = settings.runner
    sources = settings.sources
    layer: dict[str, Any] = {}
    # environment
    if env.get("SYNTHMED_DEVICE"):
        runner = replace(runner, device=env["SYNTHMED_DEVICE"])
    if env.get("SYNTHMED_RUN_MODE"):
        runner = replace(runner, mode=env["SYNTHMED_RUN_MODE"])
    if env.get("SYNTHMED_OFFLINE"):
        layer["offline"] = _truthy(env["SYNTHMED_OFFLINE"], "SYNTHMED_OFFLINE")
    if env.get("SYNTHMED_LOG_LEVEL"):
        layer["log_level"] = env["SYNTHMED_LOG_LEVEL"].upper()
    if env.get("SYNTHMED_ZENODO_HOST"):
        sources = replace(sources, zenodo_host=env["SYNTHMED_ZENODO_HOST"])
    if env.get("SYNTHMED_ZENODO_TOKEN"):
        sources = replace(sources, zenodo_token=env["SYNTHMED_ZENODO_TOKEN"])
    schedules = settings.schedules
    if env.get("SYNTHMED_STALE_AFTER_HOURS"):
        layer["stale_after_hours"] = _number(env["SYNTHMED_STALE_AFTER_HOURS"], "SYNTHMED_STALE_AFTER_HOURS")
    if env.get("SYNTHMED_SYNC_INTERVAL_MINUTES"):
        minutes = int(_number(env["SYNTHMED_SYNC_INTERVAL_MINUTES"], "SYNTHMED_SYNC_INTERVAL_MINUTES"))
        schedules = replace(schedules, sync_interval_minutes=minutes)
    # flags
    ov = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "device" in ov:
        runner = replace(runner, device=str(ov["device"]))
    if "mode" in ov:
        runner = replace(runner, mode=str(ov["mode"]))
    if "batch_size" in ov:
        runner = replace(runner, batch_size=int(ov["batch_size"]))
    if "offline" in ov:
        layer["offline"] = bool(ov["offline"])
    if "log_level" in ov:
        layer["log_level"] = str(ov["log_level"]).upper()
    if "zenodo_host" in ov:
        sources = replace(sources, zenodo_host=str(ov["zenodo_host"]))
    if "stale_after_hours" in ov:
        layer["stale_after_hours"] = float(ov["stale_after_hours"])
    if "sync_interval_minutes" in ov:
        schedules = replace(schedules, sync_interval_minutes=int(ov["sync_interval_minutes"]))
    if schedules.sync_interval_minutes < 1:
        raise ConfigError(f"the sync interval must be at least 1 minute, got {schedules.sync_interval_minutes}",
                          hint="set --sync-interval, SYNTHMED_SYNC_INTERVAL_MINUTES or schedules.sync_interval_minutes "
                               "to 1 or more")
    if float(layer.get("stale_after_hours", settings.stale_after_hours)) <= 0:
        raise ConfigError("stale_after_hours must be above 0",
                          hint="set --stale-after, SYNTHMED_STALE_AFTER_HOURS or site.stale_after_hours above 0, e.g. 48")
    if runner.batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {runner.batch_size}",
                          hint="set --batch-size or runner.batch_size to 1 or more, e.g. 32")
    return replace(settings, runner=runner, sources=sources, schedules=schedules, **layer)
