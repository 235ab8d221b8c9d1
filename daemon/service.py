"""``synthmed daemon run``: APScheduler jobs built from site.toml, one daemon per site.

Jobs run one at a time (a single worker thread), each with its own catalog connection,
so the daemon is the catalog's only writer. ``--once`` runs every job once, in
registration order, and exits. SIGTERM and SIGINT stop the scheduler cleanly: the running
job finishes (each job's catalog writes are transactions, so stopping between them is
safe), then the lock is released.

Adding a job (a plug-in; the nightly model tests are a default job)::

    from apscheduler.triggers.cron import CronTrigger
    from synthmed.daemon.service import JOB_PROVIDERS

    def add_test_job(daemon):
        h, m = daemon.settings.schedules.nightly_test_time.split(":")
        daemon.register_job("test", run_nightly_tests, CronTrigger(hour=int(h), minute=int(m)))

    JOB_PROVIDERS.append(add_test_job)
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any, Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from synthmed.registry.catalog import Catalog
from synthmed.registry.errors import ConfigError
from synthmed.registry.settings import Settings
from synthmed.registry.stamps import utcnow

from . import nightly
from .jobs import JobContext, gc_job, mirror_job, scrub_job
from .lock import SiteLock
from .sync import sync_all

log = logging.getLogger(__name__)

JobFunc = Callable[[JobContext], Any]

#: functions called with the Daemon at start-up to register more jobs
JOB_PROVIDERS: list[Callable[["Daemon"], None]] = []


def sync_job(ctx: JobContext) -> str:
    results = sync_all(ctx.settings, ctx.catalog, accept_rewrite=ctx.accept_rewrite, progress=ctx.progress)
    bad = [r for r in results if r.status != "ok"]
    return f"{len(results)} upstream(s) synced, {len(bad)} refused or failed"


@dataclass
class Job:
    name: str
    func: JobFunc
    trigger: BaseTrigger | None  # None: only with --once (or run_job)


class Daemon:
    def __init__(self, settings: Settings, progress: Callable[[str], None] = lambda m: None) -> None:
        self.settings = settings
        self.progress = progress
        self.jobs: dict[str, Job] = {}
        self._stop = threading.Event()
        self.scheduler: BackgroundScheduler | None = None

    def register_job(self, name: str, func: JobFunc, trigger: BaseTrigger | None) -> None:
        """Add (or replace) a job; ``trigger`` is any APScheduler 3 trigger."""
        self.jobs[name] = Job(name, func, trigger)

    def register_default_jobs(self) -> None:
        sc = self.settings.schedules
        every = IntervalTrigger(minutes=sc.sync_interval_minutes)
        self.register_job("sync", sync_job, every)
        self.register_job("mirror", mirror_job, IntervalTrigger(minutes=sc.sync_interval_minutes))
        self.register_job("scrub", scrub_job, IntervalTrigger(hours=sc.scrub_interval_hours))
        self.register_job("gc", gc_job, IntervalTrigger(hours=sc.gc_interval_hours))
        self.register_job(nightly.JOB_NAME, nightly.nightly_test_job,
                          nightly.nightly_trigger(sc.nightly_test_time))
        for provider in JOB_PROVIDERS:
            provider(self)

    def run_job(self, name: str) -> bool:
        """Run one job now; a failure is logged and recorded, never raised. True if it succeeded."""
        job = self.jobs[name]
        started = utcnow()
        log.info("job %s: starting", name)
        try:
            with Catalog.open(self.settings.catalog_path, readonly=False) as catalog:
                summary = job.func(JobContext(self.settings, catalog, self.progress))
            log.info("job %s: done: %s", name, summary)
            return True
        except Exception as exc:
            log.exception("job %s failed", name)
            try:
                with Catalog.open(self.settings.catalog_path, readonly=False) as catalog, catalog.transaction():
                    catalog.record_run(name, "failed", reason=f"{type(exc).__name__}: {exc}", started=started)
            except Exception:  # pragma: no cover - the catalog itself is broken
                log.exception("could not record the failure of job %s", name)
            return False

    def run_once(self) -> dict[str, bool]:
        return {name: self.run_job(name) for name in list(self.jobs)}

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if signum is not None:
            log.warning("received %s; stopping after the running job", signal.Signals(signum).name)
        self._stop.set()

    def serve(self) -> None:
        """Run the scheduler until SIGTERM/SIGINT (or :meth:`stop`)."""
        sched = BackgroundScheduler(executors={"default": ThreadPoolExecutor(1)},
                                    job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
        self.scheduler = sched
        now = True
        for job in self.jobs.values():
            if job.trigger is None:
                continue
            kw: dict[str, Any] = {}
            if now and job.name in ("sync", "mirror"):
                from datetime import datetime, timezone

                kw["next_run_time"] = datetime.now(timezone.utc)
            sched.add_job(self.run_job, job.trigger, args=[job.name], id=job.name, name=job.name, **kw)
        sched.start()
        log.info("daemon running: %s", ", ".join(f"{j.id} ({j.trigger})" for j in sched.get_jobs()))
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            sched.shutdown(wait=True)


def run_daemon(settings: Settings, *, once: bool = False, progress: Callable[[str], None] = lambda m: None,
               only: list[str] | None = None) -> int:
    """Take the site lock, register the jobs and run them (once, or on schedule)."""
    daemon = Daemon(settings, progress)
    # handlers first: a signal that arrives while starting up still stops the daemon cleanly
    old = {} if once else {s: signal.signal(s, daemon.stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with SiteLock(settings.home, "synthmed daemon run"):
            daemon.register_default_jobs()
            if only:
                unknown = [j for j in only if j not in daemon.jobs]
                if unknown:
                    raise ConfigError(f"--job {unknown[0]!r}: no such job",
                                      hint=f"the jobs are: {', '.join(daemon.jobs)}")
                daemon.jobs = {k: v for k, v in daemon.jobs.items() if k in only}
            if once:
                results = daemon.run_once()
                return 0 if all(results.values()) else 1
            if not daemon._stop.is_set():
                daemon.serve()
            log.info("daemon stopped")
            return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)
