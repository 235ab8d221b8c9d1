"""``synthmed daemon run``: APScheduler jobs built from site.toml, one daemon per site.

Jobs run one at a time (a single worker thread), each with its own catalog connection,
so the daemon is the catalog's only writer. ``--once`` runs every job once, in
registration order, and exits. SIGTERM and SIGINT stop the scheduler cleanly: the running
job finishes (each job's catalog writes are transactions, so stopping between them is
safe), no queued job starts, then the lock is released. SIGHUP re-reads ``site.toml``: a
file that loads and validates replaces the settings (and the jobs' schedules) from the
next job on; a bad one is refused with the reason logged (and kept in ``daemon.json``),
and the old settings stay. What the daemon is doing is in ``<site>/daemon.json``
(:mod:`synthmed.daemon.runstate`).

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
import os
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
from synthmed.registry.redact import redact_text
from synthmed.registry.settings import Settings, load_settings
from synthmed.registry.stamps import utcnow

from . import nightly, runstate
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
    def __init__(self, settings: Settings, progress: Callable[[str], None] = lambda m: None,
                 loader: Callable[[], Settings] | None = None) -> None:
        self.settings = settings
        self.progress = progress
        #: builds fresh settings on SIGHUP (the same flags and environment, site.toml read again)
        self.loader = loader
        self.jobs: dict[str, Job] = {}
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.scheduler: BackgroundScheduler | None = None
        self._state: dict[str, Any] = {"pid": os.getpid(), "started": utcnow(), "job": None, "job_started": None,
                                       "download": None, "next_runs": {}, "last_reload": None,
                                       "reload_error": None}
        self._state_lock = threading.Lock()
        #: ``--job``: only these jobs run
        self.only: list[str] = []

    def _write_state(self, **change: Any) -> None:
        with self._state_lock:
            self._state.update(change)
            if self.scheduler is not None and self.scheduler.running:
                self._state["next_runs"] = {j.id: j.next_run_time.isoformat() if j.next_run_time else None
                                            for j in self.scheduler.get_jobs()}
            try:
                runstate.write(self.settings, self._state)
            except OSError as exc:  # status loses detail; the jobs go on
                log.warning("could not write %s: %s", runstate.path(self.settings), exc)

    def request_reload(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        """SIGHUP: reload at the next tick of the main loop (never inside the signal handler)."""
        self._reload.set()

    def reload(self) -> bool:
        """Re-read site.toml; on success use it from the next job on. A bad file changes nothing."""
        if self.loader is None:
            return False
        try:
            new = self.loader()
        except Exception as exc:  # every way a file can be bad: keep what runs
            reason = " ".join(str(exc).split())
            log.error("reload of %s refused, keeping the previous settings: %s", self.settings.site_file, reason)
            self._write_state(last_reload=utcnow(), reload_error=reason)
            return False
        old = self.settings
        self.settings = new
        self.jobs.clear()
        self.register_default_jobs()
        if self.only:
            self.jobs = {k: v for k, v in self.jobs.items() if k in self.only}
        if self.scheduler is not None and self.scheduler.running:
            for job in self.jobs.values():
                if job.trigger is not None and self.scheduler.get_job(job.name) is not None:
                    self.scheduler.reschedule_job(job.name, trigger=job.trigger)
        changed = [f for f in ("upstreams", "mirror", "sources", "schedules", "runner", "offline", "stale_after_hours",
                               "log_level", "name") if getattr(old, f) != getattr(new, f)]
        log.info("reloaded %s: %s", new.site_file, ", ".join(changed) + " changed" if changed else "no change")
        self._write_state(last_reload=utcnow(), reload_error=None)
        return True

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
        if self._stop.is_set():  # queued while another job ran: a stopping daemon starts nothing new
            log.info("job %s: not started, the daemon is stopping", name)
            return False
        job = self.jobs.get(name)
        if job is None:  # removed by a reload while it was queued
            log.info("job %s: not started, no longer registered", name)
            return False
        settings = self.settings  # one job runs with one set of settings, even across a reload
        started = utcnow()
        log.info("job %s: starting", name)
        self._write_state(job=name, job_started=started)
        try:
            with Catalog.open(settings.catalog_path, readonly=False) as catalog:
                summary = job.func(JobContext(settings, catalog, self.progress,
                                              report_download=lambda d: self._write_state(download=d)))
            log.info("job %s: done: %s", name, summary)
            return True
        except Exception as exc:
            log.exception("job %s failed", name)
            try:
                with Catalog.open(self.settings.catalog_path, readonly=False) as catalog, catalog.transaction():
                    catalog.jobs.record_run(name, "failed", reason=redact_text(f"{type(exc).__name__}: {exc}"), started=started)
            except Exception:  # pragma: no cover - the catalog itself is broken
                log.exception("could not record the failure of job %s", name)
            return False
        finally:
            self._write_state(job=None, job_started=None)

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
        self._write_state()
        try:
            while not self._stop.wait(0.2):
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
        finally:
            sched.shutdown(wait=True)


def run_daemon(settings: Settings, *, once: bool = False, progress: Callable[[str], None] = lambda m: None,
               only: list[str] | None = None, loader: Callable[[], Settings] | None = None) -> int:
    """Take the site lock, register the jobs and run them (once, or on schedule). ``loader``
    builds fresh settings on SIGHUP (default: ``site.toml`` read again, no overrides)."""
    daemon = Daemon(settings, progress, loader or (lambda: load_settings(settings.home)))
    # handlers first: a signal that arrives while starting up still stops the daemon cleanly
    old: dict[int, Any] = {}
    if not once:
        old = {s: signal.signal(s, daemon.stop) for s in (signal.SIGTERM, signal.SIGINT)}
        old[signal.SIGHUP] = signal.signal(signal.SIGHUP, daemon.request_reload)
    try:
        with SiteLock(settings.home, "synthmed daemon run"):
            daemon.register_default_jobs()
            if only:
                unknown = [j for j in only if j not in daemon.jobs]
                if unknown:
                    raise ConfigError(f"--job {unknown[0]!r}: no such job",
                                      hint=f"the jobs are: {', '.join(daemon.jobs)}")
                daemon.jobs = {k: v for k, v in daemon.jobs.items() if k in only}
                daemon.only = list(only)
            try:
                if once:
                    results = daemon.run_once()
                    return 0 if all(results.values()) else 1
                if not daemon._stop.is_set():
                    daemon.serve()
            finally:
                runstate.remove(daemon.settings)
            log.info("daemon stopped")
            return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)
