"""Model tests on a site: pick the versions to test, fetch their packages, test each in a
worker, record every result in the catalog's ``tests`` table and write one report.

Used by ``synthmed test`` and by the daemon's nightly ``test`` job. A model that fails
never stops the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..catalog import Catalog, CatalogEntry
from ..errors import CodeNotAllowed, ModelRunError, NotPinned, SynthmedError, Unverified
from .modeltest import policy_refusal, skipped_result, test_model
from ..packages import prepare
from .report import (
    ModelTestResult,
    environment,
    model_report_path,
    run_fingerprint,
    synthmed_version,
    write_report,
)
from ..runner import RunnerOptions
from ..settings import Settings

log = logging.getLogger(__name__)

#: a mirrored version is tested again when its last test is older than this
RETEST_AFTER = timedelta(days=1)


@dataclass
class TestRun:
    """What one invocation tested, and where its report went."""

    results: list[ModelTestResult] = field(default_factory=list)
    report_path: Path | None = None

    @property
    def failed(self) -> list[ModelTestResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def errors(self) -> list[ModelTestResult]:
        """The versions that could not be tested (not a policy refusal): they fail a run too."""
        return [r for r in self.results if r.status == "error"]

    @property
    def ok(self) -> bool:
        """Nothing failed and nothing that should have been tested went untested."""
        return not self.failed and not self.errors

    __test__ = False  # not a pytest class


def report_folder(settings: Settings, now: datetime | None = None) -> Path:
    """``<site>/reports/<UTC time>``: one folder per run, never overwritten."""
    now = now or datetime.now(timezone.utc)
    return settings.reports_dir / now.strftime("%Y%m%dT%H%M%SZ")


def select_entries(catalog: Catalog, refs: Sequence[str] | None) -> list[CatalogEntry]:
    """The entries named by ``refs`` (resolved like everywhere else), or the latest
    non-yanked version of every model when ``refs`` is None."""
    if refs is None:
        return [e for e in catalog.models.list_models() if e.status != "yanked"]
    return [catalog.models.resolve(r) for r in refs]


def mirrored_entries(catalog: Catalog) -> list[CatalogEntry]:
    """Every non-yanked version whose artefact is verified in the store (what the nightly job tests)."""
    return [e for e in catalog.models.list_models(all_versions=True)
            if e.status != "yanked" and e.artefact_state == "verified" and e.record.sha256]


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def due_for_test(entry: CatalogEntry, last: Mapping[str, Any] | None, env: Mapping[str, Any],
                 now: datetime | None = None) -> str | None:
    """Why ``entry`` should be tested now (None: it need not be). Tested again when never
    tested, when its artefact, requirements, the runner (synthmed) version or the
    environment changed (the fingerprint in ``tests.env_hash``), or after a day."""
    now = now or datetime.now(timezone.utc)
    if not last:
        return "never tested"
    reqs = list(entry.record.data.get("package", {}).get("requirements") or [])
    fp = run_fingerprint(entry.record.sha256, str(env["fingerprint"]), reqs)
    if last.get("env_hash") != fp:
        return "its artefact, requirements or the environment changed"
    if last.get("runner_version") != synthmed_version():
        return f"the runner changed ({last.get('runner_version')} -> {synthmed_version()})"
    finished = _parse_time(last.get("finished"))
    if finished is None or now - finished >= RETEST_AFTER:
        return "its last test is older than a day"
    return None


TestKey = tuple[str, str, str, str | None]


def test_key(entry: CatalogEntry) -> TestKey:
    """What a test result belongs to: the upstream, id, version and package sha256 (the
    same id@version of another upstream, or another package, is another model)."""
    return (entry.upstream, entry.id, entry.version, entry.record.sha256)


def last_test_by_key(catalog: Catalog) -> dict[TestKey, dict[str, Any]]:
    """The last test of every version the catalog holds, by :func:`test_key`."""
    return {(str(t["upstream"]), str(t["model_id"]), str(t["version"]), t["sha256"]): t
            for t in catalog.tests.last_tests(limit=1_000_000)}


def test_entry(entry: CatalogEntry, settings: Settings, *, timeout_s: float | None = None,
               env: Mapping[str, Any] | None = None, num_samples: int | None = None) -> ModelTestResult:
    """Prepare (fetch if needed, verify) and test one catalog entry; never raises for the
    model's faults. A package the site's policy does not run is *skipped* with why; one
    that cannot be got is an *error*; one whose pipeline file is broken *fails*."""
    record = entry.record
    try:
        package = prepare(entry, settings)  # a pipeline's stages too
    except ModelRunError as exc:  # the pipeline file itself is broken: the package's fault
        result = skipped_result(record, f"load: {_skip_reason(exc, entry, settings)}", upstream=entry.upstream,
                                env=env, status="failed")
        return result
    except SynthmedError as exc:
        return skipped_result(record, _skip_reason(exc, entry, settings), upstream=entry.upstream, env=env,
                              status="skipped" if policy_refusal(exc) else "error")
    options = RunnerOptions.from_settings(settings, mode="worker")
    return test_model(package, options, timeout_s=timeout_s, num_samples=num_samples, env=env)


def _skip_reason(exc: SynthmedError, entry: CatalogEntry, settings: Settings) -> str:
    """Why :func:`prepare` refused (or could not get) a model's package, by the refusal's
    type. A pipeline file that cannot be read is ModelRunError (``prepare`` raises it for
    nothing else)."""
    if isinstance(exc, CodeNotAllowed):
        return f"this site does not run code from upstream {entry.upstream!r} (allow_code = false in {settings.site_file})"
    if isinstance(exc, NotPinned):
        return f"unverified: no pinned sha256, never executed (pin it with `synthmed index pin {entry.ref}`)"
    first = str(exc.message).splitlines()[0]
    if isinstance(exc, ModelRunError):
        return f"the pipeline cannot be read: {first}"
    if isinstance(exc, Unverified):  # StageUnavailable, or a stage's own refusal
        return f"a stage of the pipeline cannot run here: {first}"
    return f"its package could not be fetched: {first}"


def test_ref(ref: str, settings: Settings, *, timeout_s: float | None = None, num_samples: int | None = None,
             report_dir: Path | None = None, record_in_catalog: bool = False) -> ModelTestResult:
    """Test one model of the site by reference (``id``, ``id@version``, ``upstream/id@version``),
    its package prepared if needed (what ``Generators.test_model`` calls). ``report_dir``
    writes a report there; ``record_in_catalog`` also stores the result in the catalog."""
    with Catalog.open(settings.catalog_path, readonly=True) as catalog:
        entry = catalog.models.resolve(ref)
    if record_in_catalog:
        with Catalog.open(settings.catalog_path, readonly=False) as wcat:
            run = run_tests(settings, [entry], report_dir=report_dir, catalog=wcat, timeout_s=timeout_s,
                            num_samples=num_samples, keep_samples=True)
    else:
        run = run_tests(settings, [entry], report_dir=report_dir, timeout_s=timeout_s, num_samples=num_samples,
                        keep_samples=True)
    return run.results[0]


def record_results(catalog: Catalog, results: Iterable[ModelTestResult], report_dir: Path | None) -> None:
    """Store tested results in the catalog's ``tests`` table (skipped and error ones become a
    ``test`` entry in ``sync_runs``, so they never show as failing models; an error as a
    failed job entry, which `status` lists)."""
    version = synthmed_version()
    with catalog.transaction():
        for r in results:
            if r.status in ("skipped", "error"):
                catalog.jobs.record_run("test", "skipped" if r.status == "skipped" else "failed", upstream=r.upstream,
                                        subject=r.ref, reason=r.reason, started=r.started)
                continue
            if not r.upstream or not r.sha256:  # pragma: no cover - a tested site model has both
                log.warning("%s: a test result without an upstream or sha256 is not recorded", r.ref)
                continue
            catalog.tests.record_test(
                model_id=r.id, version=r.version, passed=r.passed, upstream=r.upstream, sha256=r.sha256,
                started=r.started,
                finished=r.finished, reason=r.reason,
                report_path=str(model_report_path(report_dir, r).absolute()) if report_dir else None,
                throughput=r.throughput_sps, peak_memory_mb=r.peak_memory_mb, runner_version=version,
                env_hash=r.fingerprint)
            if not r.passed:
                catalog.jobs.record_run("test", "failed", upstream=r.upstream, subject=r.ref, reason=r.reason,
                                        started=r.started)


def run_tests(settings: Settings, entries: Sequence[CatalogEntry], *, report_dir: Path | None,
              catalog: Catalog | None = None, timeout_s: float | None = None,
              num_samples: int | None = None, progress: Callable[[str], None] = lambda m: None,
              keep_samples: bool = False) -> TestRun:
    """Test ``entries`` one after the other, write the report into ``report_dir`` (when
    given) and record each result in ``catalog`` (when given, opened writable)."""
    env = environment()
    run = TestRun()
    for i, entry in enumerate(entries, 1):
        progress(f"test: [{i}/{len(entries)}] {entry.qualified_ref}")
        try:
            result = test_entry(entry, settings, timeout_s=timeout_s, env=env, num_samples=num_samples)
        except Exception as exc:  # a bug of ours must not stop the other models
            log.exception("testing %s failed unexpectedly", entry.qualified_ref)
            result = skipped_result(entry.record, f"the test itself failed: {type(exc).__name__}: {exc}",
                                    upstream=entry.upstream, env=env, status="error")
        progress(f"test: {entry.qualified_ref}: {result.status}" + (f": {result.reason}" if result.reason else ""))
        run.results.append(result)
    if report_dir is not None:
        run.report_path = write_report(report_dir, run.results, site=settings.name, env=env)
    if catalog is not None:
        record_results(catalog, run.results, report_dir)
    if not keep_samples:
        for r in run.results:
            r.samples = None  # free the arrays
    return run


def failing_models(catalog: Catalog) -> dict[str, str]:
    """``upstream/id@version`` -> reason, for every held model version whose last test
    (of its own upstream's package) failed (for search listings and status)."""
    return {str(t["qualified_ref"]): str(t["reason"] or "failed") for t in catalog.tests.failing_models()}


def last_test_flags(catalog: Catalog, entries: Iterable[CatalogEntry]) -> dict[str, dict[str, Any]]:
    """The last test of each entry, by ``upstream/id@version`` (the catalog's
    :meth:`~synthmed.registry.catalog.tests.ModelTestStore.last_flags`)."""
    return catalog.tests.last_flags(entries)


test_entry.__test__ = False  # type: ignore[attr-defined]
test_ref.__test__ = False  # type: ignore[attr-defined]
