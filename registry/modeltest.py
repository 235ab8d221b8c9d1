"""Model tests: run one model version's ``test`` block in a worker process with a timeout
and check what comes back.

The steps, in order (each one a :class:`~.modeltest_checks.CheckResult`):

1. ``params``: the test's params pass the record's ``inputs`` schema, and a parameter the
   schema must refuse is refused before any model code runs (no worker is started);
2. ``load``: the worker starts and loads the model within ``timeout_s``;
3. ``run``: ``num_samples`` samples from seeds ``seed .. seed+n-1`` in one batch, timed
   (``throughput``, samples/s, the model already loaded);
4. ``shapes``, ``dtypes``, ``value_range``, ``finite`` on those outputs;
5. ``determinism``: the same seeds again give bit-identical outputs;
6. ``batch_invariance``: each seed alone (batch 1) gives what it gave in the batch of N;
7. the worker's peak resident memory (VmHWM) is read before it stops.

A model that raises, crashes, hangs past ``timeout_s`` or returns bad outputs *fails*
with the reason; one that cannot be tried here (unverified, no matching device or python,
its environment cannot be built) is *skipped* with the reason. Nothing raises out of
:func:`test_model` for a model's fault.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import modeltest_checks as mc
from .errors import (
    ConfigError,
    EnvironmentBuildError,
    ModelRunError,
    ModelTimeout,
    ParamError,
    RecordYanked,
    SynthmedError,
    Unverified,
)
from .records import Record
from .report import GRID_MAX, ModelTestResult, environment, run_fingerprint, utcnow
from .settings import Settings

log = logging.getLogger(__name__)

#: seconds one request to the worker may take when the record's test names no timeout
DEFAULT_TIMEOUT_S = 300.0


def worker_peak_rss_mb(runner: Any) -> float | None:
    """Peak resident memory (VmHWM) of a runner's worker process, in MiB; None if unknown."""
    proc = getattr(getattr(runner, "_worker", None), "proc", None)
    pid = getattr(proc, "pid", None)
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # type: ignore[import-untyped]

        return float(psutil.Process(pid).memory_info().rss) / (1024.0 * 1024.0)
    except Exception:  # noqa: BLE001 - psutil missing or the process gone
        return None


def _first(arrays: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {k: np.array(v[:n]) for k, v in arrays.items()}


def _short(exc: BaseException) -> str:
    """An error's message without its hint, on one line where it fits."""
    msg = getattr(exc, "message", None) or str(exc)
    return str(msg).strip()


class _Session:
    """One model's test in progress: the runner, the checks so far, the timings."""

    def __init__(self, record: Record, package_dir: Path, *, device: str, mode: str, timeout_s: float,
                 batch_size: int, envs_dir: Path | None, env_options: Any, package_key: str | None) -> None:
        self.record = record
        self.package_dir = package_dir
        self.kw: dict[str, Any] = dict(device=device, mode=mode, batch_size=batch_size, envs_dir=envs_dir,
                                       timeout_s=timeout_s, env_options=env_options, package_key=package_key)
        self.timeout_s = timeout_s
        self.checks: list[mc.CheckResult] = []
        self.throughput: float | None = None
        self.load_s: float | None = None
        self.peak_mb: float | None = None
        self.samples: dict[str, np.ndarray] | None = None
        self.runner_info: dict[str, Any] = {}

    def runner(self) -> Any:
        from .runner import Runner

        return Runner(self.record, self.package_dir, **self.kw)


def _check_params(s: _Session, params: dict[str, Any], wanted: list[str]) -> bool:
    """The ``params`` check; False when the test's own params are refused (nothing else can run)."""
    runner = s.runner()
    try:
        try:
            runner.check_params(params)
        except ParamError as exc:
            s.checks.append(mc.failed("params", f"the record's test.params are refused by its inputs schema: {_short(exc)}"))
            return False
        if "params" not in wanted:
            return True
        bad = mc.invalid_params(s.record.inputs)
        if bad is None:
            s.checks.append(mc.passed("params", "test.params accepted; the inputs schema accepts any parameters, "
                                                "so there is no invalid one to try"))
            return True
        try:
            runner.sample([0], **bad)
        except ParamError:
            started = getattr(runner, "_worker", None) is not None or getattr(runner, "_model", None) is not None
            if started:
                s.checks.append(mc.failed("params", f"the invalid parameters {bad} were refused only after the model "
                                                    "was loaded"))
            else:
                s.checks.append(mc.passed("params", "test.params accepted; an invalid parameter was refused before "
                                                    "any model code ran", invalid=bad))
            return True
        except ModelRunError as exc:
            s.checks.append(mc.failed("params", f"the invalid parameters {bad} reached the model "
                                                f"(it then failed: {_short(exc)[:200]})"))
            return True
        s.checks.append(mc.failed("params", f"the invalid parameters {bad} were accepted and the model ran; "
                                            "the inputs schema should refuse them"))
        return True
    finally:
        runner.close()


def _run(s: _Session, seeds: list[int], params: dict[str, Any], wanted: list[str], n: int) -> None:
    record = s.record
    outs = record.outputs
    runner = s.runner()
    try:
        s.runner_info = {k: v for k, v in runner.info.items() if k in ("mode", "device", "batch_size")}
        t0 = time.perf_counter()
        try:
            runner.prepare()
        except ModelTimeout as exc:
            limit = float(getattr(exc, "timeout_s", None) or s.timeout_s)
            s.checks.append(mc.failed("load", f"timed out after {limit:g}s while loading the model: {_short(exc)}"))
            return
        except ModelRunError as exc:
            s.checks.append(mc.failed("load", f"loading the model failed: {_short(exc)}"))
            return
        s.load_s = time.perf_counter() - t0
        s.checks.append(mc.passed("load", f"loaded in {s.load_s:.2f}s"))

        t0 = time.perf_counter()
        try:
            first = runner.sample(seeds, **params)
        except ModelTimeout as exc:
            s.checks.append(mc.failed("run", f"timed out after {s.timeout_s:g}s sampling {n} seed(s): {_short(exc)}"))
            return
        except ModelRunError as exc:
            s.checks.append(mc.failed("run", f"sampling {n} seed(s) failed: {_short(exc)}"))
            return
        elapsed = max(time.perf_counter() - t0, 1e-9)
        s.throughput = n / elapsed
        s.checks.append(mc.passed("run", f"{n} sample(s) in {elapsed:.3f}s"))
        s.samples = _first(first, GRID_MAX)

        if "shapes" in wanted:
            s.checks.append(mc.check_shapes(outs, first, n))
        if "dtypes" in wanted:
            s.checks.append(mc.check_dtypes(outs, first))
        if "value_range" in wanted:
            s.checks.append(mc.check_value_range(outs, first))
        if "finite" in wanted:
            s.checks.append(mc.check_finite(outs, first))
        if "throughput" in wanted:
            s.checks.append(mc.passed("throughput", f"{s.throughput:.1f} samples/s (batch of {n}, "
                                                    f"{s.runner_info.get('device', '?')})",
                                      samples_per_s=round(s.throughput, 3)))

        tolerances = mc.run_tolerances(outs, str(s.runner_info.get("device", "cpu")))
        if "determinism" in wanted:
            try:
                again = runner.sample(seeds, **params)
            except ModelRunError as exc:
                s.checks.append(mc.failed("determinism", f"the second run failed: {_short(exc)}"))
                return
            same, why, details = mc.compare_runs(first, again, tolerances)
            s.checks.append(mc.passed("determinism", "the same seeds gave identical samples twice"
                                      + (" (within the CUDA tolerance)" if details else ""), **details) if same else
                            mc.failed("determinism", f"not deterministic: the same seeds gave different samples: {why}",
                                      **details))
        if "batch_invariance" in wanted and n > 1:
            parts: dict[str, list[np.ndarray]] = {k: [] for k in first}
            try:
                for seed in seeds:
                    one = runner.sample([seed], **params)
                    for k in parts:
                        parts[k].append(one[k])
            except ModelRunError as exc:
                s.checks.append(mc.failed("batch_invariance", f"sampling one seed at a time failed: {_short(exc)}"))
                return
            singles = {k: np.concatenate(v) for k, v in parts.items()}
            same, why, details = mc.compare_runs(first, singles, tolerances)
            s.checks.append(mc.passed("batch_invariance", f"batch 1 and batch {n} gave identical samples"
                                      + (" (within the CUDA tolerance)" if details else ""), **details) if same else
                            mc.failed("batch_invariance", f"sample i depends on its batch: batch 1 vs batch {n}: {why}",
                                      **details))
        elif "batch_invariance" in wanted:
            s.checks.append(mc.skipped("batch_invariance", "test.num_samples is 1: there is no larger batch to compare"))
    finally:
        s.peak_mb = worker_peak_rss_mb(runner)
        runner.close()


def test_model(model: Record | str, package_dir: Path | str | None = None, *, device: str | None = None,
               mode: str = "worker", timeout_s: float | None = None, num_samples: int | None = None,
               envs_dir: Path | None = None, env_options: Any = None, upstream: str | None = None,
               package_key: str | None = None, env: Mapping[str, Any] | None = None,
               settings: "Settings | None" = None, report_dir: Path | str | None = None,
               record_in_catalog: bool = False) -> ModelTestResult:
    """Test one model version; never raises for the model's faults.

    Either a :class:`Record` and its unpacked ``package_dir``, or a model reference
    (``id``, ``id@version``, ``upstream/id@version``) resolved in the site of ``settings``
    (its package fetched if needed; this is what ``Generators.test_model`` calls).
    ``timeout_s`` (else the record's ``test.timeout_s``, else 300 s) bounds the load and
    each request to the worker. ``mode`` is the runner's: ``worker`` (the default, so a
    hang or a crash is contained) or ``inline``. ``report_dir`` writes a report there;
    ``record_in_catalog`` also stores the result in the site's catalog."""
    if isinstance(model, str):
        return _test_ref(model, settings, timeout_s=timeout_s, num_samples=num_samples,
                         report_dir=Path(report_dir) if report_dir else None, record_in_catalog=record_in_catalog)
    if package_dir is None:
        raise ModelRunError(f"{model.ref}: test_model needs the package folder of the record",
                            hint="pass package_dir, or a model reference and the site's settings", model=model.ref)
    result = _test_record(model, Path(package_dir), device=device or (settings.runner.device if settings else "auto"),
                          mode=mode, timeout_s=timeout_s, num_samples=num_samples,
                          envs_dir=envs_dir or (settings.envs_dir if settings else None), env_options=env_options,
                          upstream=upstream, package_key=package_key, env=env)
    if report_dir is not None:
        from .report import write_report

        write_report(Path(report_dir), [result])
    return result


def _test_ref(ref: str, settings: "Settings | None", *, timeout_s: float | None, num_samples: int | None,
              report_dir: Path | None, record_in_catalog: bool) -> ModelTestResult:
    from .catalog import Catalog
    from .modeltest_site import run_tests
    from .settings import load_settings

    settings = settings or load_settings()
    with Catalog.open(settings.catalog_path, readonly=True) as catalog:
        entry = catalog.resolve(ref)
    if record_in_catalog:
        with Catalog.open(settings.catalog_path, readonly=False) as wcat:
            run = run_tests(settings, [entry], report_dir=report_dir, catalog=wcat, timeout_s=timeout_s,
                            num_samples=num_samples, keep_samples=True)
    else:
        run = run_tests(settings, [entry], report_dir=report_dir, timeout_s=timeout_s, num_samples=num_samples,
                        keep_samples=True)
    return run.results[0]


def _test_record(record: Record, package_dir: Path, *, device: str, mode: str, timeout_s: float | None,
                 num_samples: int | None, envs_dir: Path | None, env_options: Any, upstream: str | None,
                 package_key: str | None, env: Mapping[str, Any] | None) -> ModelTestResult:
    started = utcnow()
    t_start = time.perf_counter()
    test = dict(record.test)
    n = int(num_samples or test.get("num_samples") or 4)
    seed = int(test.get("seed", 0))
    params = dict(test.get("params") or {})
    timeout = float(timeout_s or test.get("timeout_s") or DEFAULT_TIMEOUT_S)
    wanted = mc.selected_checks(test)
    envinfo = dict(env or environment())
    requirements = list(record.data.get("package", {}).get("requirements") or [])
    result = ModelTestResult(
        ref=record.ref, id=record.id, version=record.version, status="failed", reason=None, started=started,
        finished=started, duration_s=0.0,
        fingerprint=run_fingerprint(record.sha256, str(envinfo["fingerprint"]), requirements),
        upstream=upstream, title=record.get("title"), package_format=record.data.get("package", {}).get("format"),
        sha256=record.sha256, outputs=record.outputs,
        test={"num_samples": n, "seed": seed, "params": params, "timeout_s": timeout, "checks": wanted},
    )
    seeds = [seed + i for i in range(n)]
    s = _Session(record, Path(package_dir), device=device, mode=mode, timeout_s=timeout, batch_size=n,
                 envs_dir=envs_dir, env_options=env_options, package_key=package_key)
    try:
        if _check_params(s, params, wanted):
            _run(s, seeds, params, wanted, n)
    except (Unverified, RecordYanked, EnvironmentBuildError, ConfigError) as exc:
        result.status = "skipped"
        result.reason = f"cannot be tested here: {_short(exc)}"
    except ModelRunError as exc:  # e.g. the package folder is missing
        s.checks.append(mc.failed("load", _short(exc)))
    except SynthmedError as exc:
        result.status = "skipped"
        result.reason = f"cannot be tested here: {_short(exc)}"
    result.checks = s.checks
    result.runner = s.runner_info
    result.throughput_sps = s.throughput
    result.load_s = s.load_s
    result.peak_memory_mb = s.peak_mb
    result.samples = s.samples
    if result.status != "skipped":
        bad = result.failed_checks()
        if bad:
            result.status = "failed"
            result.reason = "; ".join(f"{c.name}: {c.message}" for c in bad)
        else:
            result.status = "passed"
            result.reason = None
    result.finished = utcnow()
    result.duration_s = time.perf_counter() - t_start
    log.info("%s: test %s%s", record.ref, result.status, f" ({result.reason})" if result.reason else "")
    return result


def skipped_result(record: Record, reason: str, *, upstream: str | None = None,
                   env: Mapping[str, Any] | None = None) -> ModelTestResult:
    """A result for a model that could not be tried at all (e.g. its artefact is missing)."""
    now = utcnow()
    envinfo = dict(env or environment())
    requirements = list(record.data.get("package", {}).get("requirements") or [])
    return ModelTestResult(
        ref=record.ref, id=record.id, version=record.version, status="skipped", reason=reason, started=now,
        finished=now, duration_s=0.0,
        fingerprint=run_fingerprint(record.sha256, str(envinfo["fingerprint"]), requirements),
        upstream=upstream, title=record.get("title"), package_format=record.data.get("package", {}).get("format"),
        sha256=record.sha256, outputs=record.outputs)


test_model.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
