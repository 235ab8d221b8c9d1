"""Ray as the distributed engine: the shards of a run as Ray tasks on a cluster.

``synthmed generate REF -n N -o DIR --engine ray [--address ADDR]`` (or
:func:`generate_with_ray`) cuts the run into shards (:mod:`synthmed.shards`; by default
one per GPU of the cluster, else one per CPU) and runs each as a Ray task. A task asks
for one GPU when the cluster has GPUs, else for a fraction of a CPU (so that a small
instance, ``ray.init(num_cpus=2)``, never waits on a whole CPU the driver itself holds).

Each worker prepares the model's verified package itself, through a site: its own
(``--ray-worker-site DIR``, a site on every node at that path) or the head's folder on
shared storage (the default), optionally fetching from the head's store first
(``--ray-mirror mirror:/shared/site/store`` or ``mirror:https://head.example/store``).
Whatever it fetches is hashed against the record's pin, and a worker whose site resolves
the reference to another package refuses to run. Outputs are written by each worker
straight into DIR, which must be shared storage (NFS, a parallel file system) seen at
the same path by every node: the same layout, sidecar and manifest as one process.

Ray is an optional dependency: ``pip install 'synthmed[ray]'``. :func:`run_with_ray` takes
the run's :class:`~synthmed.request.GenerationRequest` whole and returns a
:class:`~synthmed.request.GenerationResult`; :func:`generate_with_ray` builds the request
from keywords and returns the result's summary.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from synthmed.registry.errors import ConfigError, ModelRunError

from .parallel import ShardJob, run_shard
from .request import GenerationRequest, GenerationResult
from .shards import Shard

log = logging.getLogger(__name__)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray, which is not installed here",
                          hint="pip install 'synthmed[ray]' (on the head and on every worker node)") from None
    return ray


def _count_files(folder: Path, output: str) -> int:
    try:
        with os.scandir(folder / output) as it:
            return sum(1 for e in it if not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def _ray_shard(job: ShardJob) -> dict[str, Any]:
    """What each Ray task runs (module level, so Ray pickles it by reference)."""
    return run_shard(job)


def _task_options(ray: Any, shards: int | None) -> tuple[int, dict[str, Any], str, int, float]:
    """How many shards, what each task asks for, its device; and the cluster's GPUs and CPUs."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    count = shards if shards is not None else (gpus or max(1, int(cpus)))
    if count < 1:
        raise ConfigError(f"--ray-shards {count}: at least one shard", hint="e.g. --ray-shards 8")
    if gpus:
        return count, {"num_gpus": 1, "num_cpus": min(1.0, cpus / max(1, gpus))}, "cuda", gpus, cpus
    # a fraction of a CPU each: a 2-CPU instance runs two tasks and still has room for
    # the driver's own bookkeeping; threads per task follow the CPUs it may use
    return count, {"num_cpus": max(0.1, min(1.0, (cpus - 0.5) / count))}, "cpu", gpus, cpus


def run_with_ray(model: Any, request: GenerationRequest, *, site_home: Path | str,
                 worker_site: Path | str | None = None, mirrors: Sequence[str] = (),
                 address: str | None = None, shards: int | None = None) -> GenerationResult:
    """Run ``request`` (every sample ``0..n-1``) as Ray tasks. Uses the Ray instance
    already started in this process, else connects to ``address`` (or ``RAY_ADDRESS``),
    else starts a local one."""
    ray = _ray()
    n, folder, progress = request.n, request.folder, request.progress
    checked = model.check_params(request.params)  # refused here, before any task starts
    for m in mirrors:
        if not str(m).startswith("mirror:"):
            raise ConfigError(f"--ray-mirror {m!r} is not a mirror: URI",
                              hint="e.g. mirror:/shared/site/store or mirror:https://head.example/store")
    if not ray.is_initialized():
        ray.init(address=address or None, log_to_driver=False)
    count, task_opts, device, gpus, cpus = _task_options(ray, shards)
    wopts = model.writer_options.with_(png_compress_level=request.png_compress_level, writers=request.writers)
    if wopts.writers is None:
        wopts = replace(wopts, writers=max(1, int(cpus // max(1, min(count, cpus)))) if not gpus else None)
    job = ShardJob(request.with_(folder=Path(folder).resolve(), params=dict(checked), progress=None),
                   device=device, torch_threads=None if gpus else 1, runner_options=model.options,
                   writer_options=wopts, site_home=str(worker_site or site_home),
                   ref=f"{model.upstream}/{model.record.ref}" if model.upstream else model.record.ref,
                   sha256=model.package.sha256, mirrors=tuple(str(m) for m in mirrors))
    remote = ray.remote(**task_opts)(_ray_shard)
    started = time.monotonic()
    pending = [remote.remote(job.of_shard((k, count))) for k in range(count)]
    results: list[dict[str, Any]] = []
    first = model.record.outputs[0]["name"] if model.record.outputs else None
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in ready:
                try:
                    results.append(ray.get(ref))
                except Exception as exc:  # a RayTaskError wraps the worker's own error
                    cause = getattr(exc, "cause", None) or exc
                    raise ModelRunError(f"a Ray worker failed: {type(cause).__name__}: {cause}",
                                        hint=getattr(cause, "hint", "") or "fix the cause and run the same command "
                                        "again: it finishes the samples that are missing") from None
            if progress is not None and first is not None:
                progress(min(n, _count_files(Path(folder), str(first))), n)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    seconds = time.monotonic() - started
    results.sort(key=lambda r: Shard.parse(r["shard"]).index)
    if progress is not None:
        progress(sum(int(r["written"]) + int(r["skipped"]) for r in results), n)
    return GenerationResult.of_workers(request, results, seconds, engine="ray", shards=count,
                                       task_resources=task_opts)


def generate_with_ray(model: Any, folder: Path | str, n: int, *, site_home: Path | str,
                      worker_site: Path | str | None = None, mirrors: Sequence[str] = (),
                      address: str | None = None, shards: int | None = None, format: str = "auto",
                      seed: int = 0, bit_depth: int | None = None, outputs: Sequence[str] | str | None = None,
                      window: Any = None, png_compress_level: int | None = None, writers: int | None = None,
                      params: Mapping[str, Any] | None = None, layout: str = "synthmed",
                      progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run ``model``'s samples ``0..n-1`` into ``folder`` as Ray tasks (:func:`run_with_ray`);
    returns the run's summary."""
    request = GenerationRequest(Path(folder), n, seed, format, params=params or {}, outputs=outputs, window=window,
                                bit_depth=bit_depth, layout=layout, png_compress_level=png_compress_level,
                                writers=writers, progress=progress)
    return run_with_ray(model, request, site_home=site_home, worker_site=worker_site, mirrors=mirrors,
                        address=address, shards=shards).summary()
