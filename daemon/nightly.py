"""The daemon's nightly ``test`` job.

At ``schedules.nightly_test_time`` (site.toml, local time, ``HH:MM``) it tests each
mirrored, non-yanked version whose artefact, requirements, runner version or environment
changed since its last test, or whose last test is older than a day (see
:func:`synthmed.registry.checks.modeltest_site.due_for_test`). Results go to the catalog's
``tests`` table and to ``<site>/reports/<UTC time>/``. Then it evaluates the served,
runnable versions against the site's reference sets (``synthmed reference add``) with the
extractors of ``[evaluation]`` in site.toml (default: the default extractor; ``samples``
each), skipping what was measured under the same comparability key before, and audits the
models of ``[[evaluation.audit]]`` for memorisation against their training sets; the values
go to the catalog's ``evaluations`` and ``audits`` tables and into the same report folder
(``evaluation.md``, ``audit.md``, appended to ``summary.md``). ``evaluation.schedule``
(``nightly``, ``weekly``, ``off``) says when. The daemon
(:meth:`synthmed.daemon.service.Daemon.register_default_jobs`) registers
:func:`nightly_test_job` with :func:`nightly_trigger`; this module does not import the daemon.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthmed.registry.errors import ConfigError, SynthmedError
from synthmed.registry.measuring.audit import scheduled_audits
from synthmed.registry.measuring.evaluate import nightly_evaluations, write_report
from synthmed.registry.checks.modeltest_site import (
    due_for_test,
    last_test_by_key,
    mirrored_entries,
    report_folder,
    run_tests,
    test_key,
)
from synthmed.registry.packages import code_allowed
from synthmed.registry.measuring.reference_sets import list_references
from synthmed.registry.checks.report import environment
from synthmed.registry.stamps import utcnow

from .jobs import JobContext

if TYPE_CHECKING:  # pragma: no cover
    from apscheduler.triggers.cron import CronTrigger

    from synthmed.registry.catalog import CatalogEntry

log = logging.getLogger(__name__)

JOB_NAME = "test"
#: the job-log name of a scheduled evaluation (how ``weekly`` knows when it last ran)
EVALUATE_JOB = "evaluate"
#: days between two evaluations with ``evaluation.schedule = "weekly"``
WEEK_DAYS = 7


def parse_time(text: str) -> tuple[int, int]:
    """``"02:30"`` -> ``(2, 30)``; a ConfigError naming the setting otherwise."""
    hh, sep, mm = text.strip().partition(":")
    try:
        h, m = int(hh), int(mm)
    except ValueError:
        h = m = -1
    if not sep or not (0 <= h < 24 and 0 <= m < 60):
        raise ConfigError(f"site.toml: schedules.nightly_test_time = {text!r} is not a time of day",
                          hint='write it as "HH:MM" in 24-hour local time, e.g. "02:30"')
    return h, m


def nightly_trigger(text: str) -> "CronTrigger":
    from apscheduler.triggers.cron import CronTrigger

    h, m = parse_time(text)
    return CronTrigger(hour=h, minute=m)


def nightly_test_job(ctx: JobContext, now: datetime | None = None) -> str:
    """Test every mirrored version that is due; record results and write a report. Then
    evaluate the served versions against the site's reference sets (see
    :func:`evaluate_served`): results in the catalog and in the same report folder."""
    started = utcnow()
    now = now or datetime.now(timezone.utc)
    settings, catalog = ctx.settings, ctx.catalog
    env = environment()
    last = last_test_by_key(catalog)
    due = []
    for entry in mirrored_entries(catalog):
        # each upstream's version is its own model: a result of another upstream's record
        # (even with the same id@version) never stands in for it
        why = due_for_test(entry, last.get(test_key(entry)), env, now)
        if why:
            log.info("test: %s is due: %s", entry.qualified_ref, why)
            due.append(entry)
    folder = report_folder(settings, now)
    if not due:
        summary = "no mirrored model is due for a test"
        failed = 0
        changed = 0
    else:
        run = run_tests(settings, due, report_dir=folder, catalog=catalog, progress=ctx.progress)
        failed = len(run.failed) + len(run.errors)
        skipped = sum(r.status == "skipped" for r in run.results)
        changed = len(run.results)
        summary = (f"{len(run.results)} model version(s) tested: {len(run.results) - failed - skipped} passed, "
                   f"{len(run.failed)} failed, {len(run.errors)} not tested (error), {skipped} skipped; "
                   f"report {run.report_path}")
    evaluated = evaluate_served(ctx, folder, now)
    if evaluated:
        summary += "; " + evaluated
    with catalog.transaction():
        catalog.jobs.record_run(JOB_NAME, "failed" if failed else "ok", reason=summary, started=started,
                                changed=changed)
    ctx.progress(f"test: {summary}")
    return summary


def evaluation_due(ctx: JobContext, now: datetime) -> bool:
    """Whether ``evaluation.schedule`` asks for an evaluation in this nightly run."""
    schedule = ctx.settings.evaluation.schedule
    if schedule == "off":
        return False
    if schedule == "weekly":
        last = ctx.catalog.jobs.runs(EVALUATE_JOB, limit=1)
        if last:
            try:
                when = datetime.fromisoformat(str(last[0]["finished"]).replace("Z", "+00:00"))
            except ValueError:
                return True
            return (now - when).total_seconds() >= WEEK_DAYS * 86400 - 3600  # an hour's slack for a late run
    return True


def evaluate_served(ctx: JobContext, folder: Path, now: datetime | None = None) -> str:
    """Evaluate each served, runnable version against each reference set of the site with
    each configured extractor (what was measured already under the same comparability key is
    skipped), and audit the configured models; write ``evaluation.md``/``.json`` and
    ``audit.md``/``.json`` into ``folder`` and add them to its ``summary.md``. A failure here
    never fails the test job: it is noted in the summary."""
    settings, catalog = ctx.settings, ctx.catalog
    ev = settings.evaluation
    now = now or datetime.now(timezone.utc)
    if not (list_references(settings) or ev.audits) or not evaluation_due(ctx, now):
        return ""  # nothing to do (no reference set, no audit configured), or not on this night

    def may_run(e: "CatalogEntry") -> bool:
        return e.artefact_state == "verified" and bool(e.record.sha256) and code_allowed(settings, e.upstream)

    started = utcnow()
    entries = [e for e in catalog.models.list_models() if may_run(e)]
    said = []
    evals: list[Any] = []
    failures: list[dict[str, str]] = []
    if list_references(settings):
        for ext in ev.extractors or (None,):
            try:
                got, failed = nightly_evaluations(settings, catalog, entries, folder, extractor_ref=ext,
                                                  n=ev.samples, progress=ctx.progress)
                evals += got
                failures += failed
            except SynthmedError as exc:
                log.warning("nightly evaluation with %s failed: %s", ext or "the default extractor", exc)
                failures.append({"model": "*", "reference": "*", "reason": f"{ext or 'default extractor'}: {exc.message}"})
        write_report(evals, failures, folder)  # every extractor's values in one report
        _append(folder / "evaluation.md", folder / "summary.md", "# Measured quality")
        said.append(f"{len(evals)} evaluation(s), {len(failures)} not measured; report {folder / 'evaluation.md'}")
    audits, not_audited = scheduled_audits(settings, catalog, may_run, folder, progress=ctx.progress)
    if ev.audits:
        _append(folder / "audit.md", folder / "summary.md", "# Memorisation audits")
        verdicts = ", ".join(f"{a.ref} {a.verdict}" for a in audits) or "none new"
        said.append(f"{len(audits)} audit(s) ({verdicts}), {len(not_audited)} not audited")
    with catalog.transaction():
        catalog.jobs.record_run(EVALUATE_JOB, "ok", reason="; ".join(said), started=started,
                                changed=len(evals) + len(audits))
    return "; ".join(said)


def _append(md: Path, summary_md: Path, title: str) -> None:
    """Add a report's Markdown to the run's ``summary.md`` (its title one level down)."""
    if not md.is_file():
        return
    text = md.read_text()
    if summary_md.is_file():
        with open(summary_md, "a") as f:
            f.write("\n\n" + text.replace(title, "#" + title, 1))
    else:
        summary_md.write_text(text)
