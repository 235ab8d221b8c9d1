"""Every local device: one worker process per device, each making its own shard of a run.

``synthmed generate --devices all|cuda:0,cuda:1|cpu:2`` (``Model.generate_on_devices``)
splits the indices ``0..n-1`` into one contiguous block per device (:mod:`synthmed.shards`)
and starts one process per device (``spawn``, so CUDA starts cleanly in each). Each process
opens its own runner on its device and writes its block into the same output folder with
:meth:`synthmed.site.Model.generate_to` (its own writer pool; the folder's lock keeps one
sidecar); the parent draws one progress bar from the workers' counts. The last worker to
finish writes the run's manifest, so the folder is file for file what one process writes.

Devices: ``all`` is every CUDA device torch sees (else one CPU worker); ``cpu:K`` is K CPU
workers, each with ``cores // K`` torch threads and writer threads; ``cuda:0,cuda:1`` one
worker per listed GPU. A CUDA worker selects its device with ``torch.cuda.set_device``
before the model loads, so a model that says just ``"cuda"`` lands on its own GPU.
(The CUDA path is written to be correct but this repository's machines have no GPU: it is
untested here.)

:class:`ShardJob` (a :class:`~synthmed.request.GenerationRequest` and where to run it) is
also what the Ray engine (:mod:`synthmed.ray_engine`) runs on each of its workers;
:func:`run_on_devices` takes the request whole, :func:`generate_on_devices` builds it
from keywords. Both return a :class:`~synthmed.request.GenerationResult` (the latter as
its summary).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue as queue_mod
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from synthmed.registry.errors import ConfigError, ModelRunError, SynthmedError
from synthmed.registry.packages import VerifiedPackage
from synthmed.registry.runner import RunnerOptions
from synthmed.registry.runner.device import resolve_device
from synthmed.registry.settings import load_settings

from .request import GenerationRequest, GenerationResult
from .shards import Shard
from .site import Model, Site
from .writer_pool import WriterOptions, available_cores

log = logging.getLogger(__name__)

_CPU_N = re.compile(r"^cpu:(\d+)$")


def cuda_count() -> int:
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def parse_devices(spec: str, supported: Sequence[str] | None = None, *, model: str = "") -> list[str]:
    """The devices of ``--devices``: ``all``, ``cpu:K`` (K CPU workers), or a comma list
    of ``cpu``, ``cuda``, ``cuda:N``; each checked against this machine and the record's
    ``package.devices``."""
    text = str(spec).strip().lower()
    if not text:
        raise ConfigError("--devices is empty", hint="e.g. --devices all, --devices cuda:0,cuda:1 or --devices cpu:2")
    if text == "all":
        count = cuda_count()
        wanted = [f"cuda:{i}" for i in range(count)] if count else ["cpu"]
        if count and supported and "cuda" not in [d.lower() for d in supported]:
            wanted = ["cpu"]
    else:
        wanted = []
        for part in (p.strip() for p in text.split(",")):
            m = _CPU_N.match(part)
            if m:
                k = int(m.group(1))
                if not 1 <= k <= 4 * available_cores():
                    raise ConfigError(f"--devices {part}: the number of CPU workers must be 1 to "
                                      f"{4 * available_cores()} on this machine ({available_cores()} cores)",
                                      hint="e.g. cpu:2")
                wanted += ["cpu"] * k
            elif part == "cuda":
                wanted.append("cuda:0")
            else:
                wanted.append(part)
    devices = [resolve_device(d, supported, model=model) for d in wanted]
    dupes = sorted({d for d in devices if d != "cpu" and devices.count(d) > 1})
    if dupes:
        raise ConfigError(f"--devices names {', '.join(dupes)} more than once",
                          hint="one worker per GPU: list each cuda:N once (several CPU workers: cpu:K)")
    return devices


@dataclass(frozen=True)
class ShardJob:
    """One shard of a run, everything a worker process (or a Ray task) needs: the run's
    request (its ``shard`` the one this job makes; no progress callback) and where to run
    it. Pickles.

    The package is either ``package`` (a VerifiedPackage of this machine) or, for workers
    elsewhere, prepared there from ``site_home`` (their own site, or a shared one) by
    ``ref``, and must then have ``sha256``."""

    request: GenerationRequest
    device: str | None = None
    torch_threads: int | None = None
    runner_options: RunnerOptions = RunnerOptions()
    writer_options: WriterOptions = WriterOptions()
    package: VerifiedPackage | None = None
    site_home: str | None = None
    ref: str | None = None
    sha256: str | None = None
    mirrors: tuple[str, ...] = ()

    def of_shard(self, shard: tuple[int, int], **changes: Any) -> "ShardJob":
        """The same job for another shard of the run."""
        return replace(self, request=self.request.with_(shard=Shard(*shard)), **changes)

    def model(self) -> Any:
        options = self.runner_options.with_(device=self.device) if self.device else self.runner_options
        if self.package is not None:
            return Model(self.package, options, self.writer_options)
        if not self.site_home or not self.ref:
            raise ConfigError("a shard job needs a package, or a site and a model reference")
        settings = load_settings(self.site_home)
        if self.mirrors:  # the head's store first (mirror:PATH or mirror:URL)
            settings = replace(settings, sources=replace(settings.sources,
                                                         mirrors=tuple(self.mirrors) + settings.sources.mirrors))
        site = Site(settings=settings)
        try:
            package = site.package(self.ref, progress=False)
        finally:
            site.close()
        if self.sha256 and package.sha256 != self.sha256:
            raise ConfigError(f"{self.ref}: this worker's site resolves it to package {package.sha256[:12]}, "
                              f"the run was started with {self.sha256[:12]}",
                              hint="give the model as REF@VERSION, or sync the worker's site to the head's index")
        return Model(package, options, self.writer_options)


def run_shard(job: ShardJob, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Make one shard of a run into the request's folder; returns the shard's counts."""
    if job.torch_threads:
        import torch

        torch.set_num_threads(job.torch_threads)
    if job.device and job.device.startswith("cuda"):
        import torch

        torch.cuda.set_device(torch.device(job.device))
    model = job.model()
    try:
        res = model.run(job.request.with_(progress=progress))
    finally:
        model.close()
    return {**res.counts(), "shard": str(job.request.shard), "device": job.device, "pid": os.getpid()}


def _worker_main(job: ShardJob, q: Any) -> None:
    """A device worker process: run the shard, report progress and the outcome on ``q``."""
    k = job.request.shard.index
    try:
        res = run_shard(job, lambda done, total: q.put(("progress", k, done)))
        q.put(("done", k, res))
    except BaseException as exc:  # reported to the parent, which raises it
        msg = str(exc) if isinstance(exc, SynthmedError) else f"{type(exc).__name__}: {exc}"
        hint = getattr(exc, "hint", "") or ""
        q.put(("error", k, {"type": type(exc).__name__, "message": msg, "hint": hint}))


def run_local_shards(jobs: Sequence[ShardJob], total: int,
                     progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """One ``spawn`` process per job; ``progress(done, total)`` sums their counts. The
    first failure stops the other workers (their files are complete or absent: a rerun
    finishes the run) and is raised here."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = {job.request.shard.index: ctx.Process(target=_worker_main, args=(job, q), daemon=True,
                                                  name=f"synthmed-shard-{job.request.shard.index}") for job in jobs}
    for p in procs.values():
        p.start()
    done: dict[int, int] = {k: 0 for k in procs}
    results: dict[int, dict[str, Any]] = {}
    error: dict[str, Any] | None = None
    try:
        while len(results) < len(procs) and error is None:
            try:
                kind, k, payload = q.get(timeout=0.5)
            except queue_mod.Empty:
                dead = [k for k, p in procs.items() if k not in results and not p.is_alive()]
                if dead:
                    time.sleep(0.5)  # its last message may still be in the pipe
                    if q.empty():
                        code = procs[dead[0]].exitcode
                        error = {"type": "ModelRunError", "hint": "",
                                 "message": f"the worker of shard {dead[0]}/{len(procs)} died (exit code {code})"}
                continue
            if kind == "progress":
                done[k] = int(payload)
                if progress is not None:
                    progress(sum(done.values()), total)
            elif kind == "done":
                results[k] = payload
                done[k] = int(payload["written"]) + int(payload["skipped"])
                if progress is not None:
                    progress(sum(done.values()), total)
            else:
                error = payload
    finally:
        for p in procs.values():
            if error is not None and p.is_alive():
                p.terminate()
            p.join()
    if error is not None:
        raise ModelRunError(f"a device worker failed: {error['message']}",
                            hint=error.get("hint") or "fix the cause and run the same command again: "
                                                      "it finishes the samples that are missing")
    return [results[k] for k in sorted(results)]


def split_jobs(shard: Shard, workers: int) -> list[tuple[int, int]]:
    """The sub-shards of ``shard`` for ``workers`` workers: sub-shard ``d`` of shard ``K/N``
    is ``K*W+d / N*W``, and their blocks together are exactly shard K/N's block."""
    return [(shard.index * workers + d, shard.count * workers) for d in range(workers)]


def run_on_devices(model: Any, request: GenerationRequest, devices: str | Sequence[str]) -> GenerationResult:
    """``request`` on several local devices at once: one worker process per device, each
    with its own contiguous block of the request's shard. The result lists each worker's
    counts."""
    record = model.record
    supported = record.data["package"].get("devices")
    devs = parse_devices(devices, supported, model=record.ref) if isinstance(devices, str) else \
        [resolve_device(d, supported, model=record.ref) for d in devices]
    checked = model.check_params(request.params)  # refused here, before any worker starts
    per = max(1, available_cores() // len(devs))
    wopts = model.writer_options.with_(png_compress_level=request.png_compress_level, writers=request.writers)
    if wopts.writers is None:
        wopts = replace(wopts, writers=per)
    base = ShardJob(request.with_(params=dict(checked), progress=None), runner_options=model.options,
                    writer_options=wopts, package=model.package)
    jobs = [base.of_shard(sub, device=dev, torch_threads=per if dev == "cpu" else None)
            for sub, dev in zip(split_jobs(request.shard, len(devs)), devs)]
    started = time.monotonic()
    results = run_local_shards(jobs, len(request.indices), request.progress)
    return GenerationResult.of_workers(request, results, time.monotonic() - started, devices=devs,
                                       shard=str(request.shard) if request.sharded else None)


def generate_on_devices(model: Any, folder: Path | str, n: int, devices: str | Sequence[str], *,
                        format: str = "auto", seed: int = 0, shard: Shard | str | None = None,
                        bit_depth: int | None = None, outputs: Sequence[str] | str | None = None,
                        window: Any = None, png_compress_level: int | None = None, writers: int | None = None,
                        progress: Callable[[int, int], None] | None = None,
                        params: Mapping[str, Any] | None = None, layout: str = "synthmed") -> dict[str, Any]:
    """:meth:`synthmed.site.Model.generate_to` on several local devices at once: one
    worker process per device, each with its own contiguous block (of ``shard``'s block
    when given). Returns a summary with each worker's counts (:func:`run_on_devices`)."""
    request = GenerationRequest(Path(folder), n, seed, format, params=params or {}, outputs=outputs, window=window,
                                bit_depth=bit_depth, layout=layout, png_compress_level=png_compress_level,
                                writers=writers, shard=Shard.parse(shard) if shard is not None else Shard(0, 1),
                                progress=progress)
    return run_on_devices(model, request, devices).summary()
