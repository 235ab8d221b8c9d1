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
with the reason. One the site's policy does not run (unverified, ``allow_code = false``,
yanked) is *skipped*, labelled so; one that could not be tested for any other reason (no
matching device or python, its environment cannot be built) is an *error*, which fails a
test run like a failure (:func:`policy_refusal` decides). Nothing raises out of
:func:`test_model` for a model's fault.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import modeltest_checks as mc
from ..errors import (
    CodeNotAllowed,
    ModelRunError,
    ModelTimeout,
    NotPinned,
    ParamError,
    RecordYanked,
    StageUnavailable,
    SynthmedError,
    Unverified,
)
from ..packages import VerifiedPackage
from ..records import Record
from .report import GRID_MAX, ModelTestResult, environment, run_fingerprint, write_report
from ..array_inputs import CheckedInputs, test_inputs
from ..pipeline import open_runner
from ..runner import CheckedParams, Runner, RunnerOptions
from ..stamps import utcnow

log = logging.getLogger(__name__)

#: seconds one request to the worker may take when the record's test names no timeout
DEFAULT_TIMEOUT_S = 300.0


def _first(arrays: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {k: np.array(v[:n]) for k, v in arrays.items()}


def _short(exc: BaseException) -> str:
    """An error's message without its hint, on one line where it fits."""
    msg = getattr(exc, "message", None) or str(exc)
    return str(msg).strip()


class _Session:
    """One model's test in progress: the runner options, the checks so far, the timings."""

    def __init__(self, package: VerifiedPackage, options: RunnerOptions,
                 stages: Mapping[str, VerifiedPackage] | None = None) -> None:
        self.package = package
        self.stages = stages
        #: the test inputs shipped in the package (None when the model takes none)
        self.inputs: CheckedInputs | None = None
        self.per_input = 1
        self.record = package.record
        self.options = options
        self.timeout_s = float(options.timeout_s or DEFAULT_TIMEOUT_S)
        self.checks: list[mc.CheckResult] = []
        self.throughput: float | None = None
        self.load_s: float | None = None
        self.peak_mb: float | None = None
        self.samples: dict[str, np.ndarray] | None = None
        self.runner_info: dict[str, Any] = {}

    def runner(self) -> Runner:
        return open_runner(self.package, self.options, self.stages)

    def sample(self, runner: Runner, seeds: list[int], params: Any, positions: list[int]) -> dict[str, np.ndarray]:
        """``runner.sample``, with the test input of each sample position when the model
        takes array inputs (position i takes test input i // per_input)."""
        if self.inputs is None:
            return runner.sample(seeds, params)
        return runner.sample_inputs(seeds, params, self.inputs.for_samples(positions, self.per_input))


def _check_params(s: _Session, params: dict[str, Any], wanted: list[str]) -> CheckedParams | None:
    """The ``params`` check: the test's params, checked once; None when they are refused
    (nothing else can run)."""
    runner = s.runner()
    try:
        try:
            checked = runner.check_params(params)
        except ParamError as exc:
            s.checks.append(mc.failed("params", f"the record's test.params are refused by its inputs schema: {_short(exc)}"))
            return None
        if "params" not in wanted:
            return checked
        bad = mc.invalid_params(s.record.inputs)
        if bad is None:
            s.checks.append(mc.passed("params", "test.params accepted; the inputs schema accepts any parameters, "
                                                "so there is no invalid one to try"))
            return checked
        try:
            runner.sample([0], **bad) if s.inputs is None else s.sample(runner, [0], bad, [0])
        except ParamError:
            if runner.loaded:
                s.checks.append(mc.failed("params", f"the invalid parameters {bad} were refused only after the model "
                                                    "was loaded"))
            else:
                s.checks.append(mc.passed("params", "test.params accepted; an invalid parameter was refused before "
                                                    "any model code ran", invalid=bad))
            return checked
        except ModelRunError as exc:
            s.checks.append(mc.failed("params", f"the invalid parameters {bad} reached the model "
                                                f"(it then failed: {_short(exc)[:200]})"))
            return checked
        s.checks.append(mc.failed("params", f"the invalid parameters {bad} were accepted and the model ran; "
                                            "the inputs schema should refuse them"))
        return checked
    finally:
        runner.close()


def _run(s: _Session, seeds: list[int], params: CheckedParams, wanted: list[str], n: int) -> None:
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
            first = s.sample(runner, seeds, params, list(range(n)))
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
                again = s.sample(runner, seeds, params, list(range(n)))
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
                for pos, seed in enumerate(seeds):
                    one = s.sample(runner, [seed], params, [pos])
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
        s.peak_mb = runner.peak_memory_mb()
        runner.close()


def test_model(package: VerifiedPackage, options: RunnerOptions | None = None, *, timeout_s: float | None = None,
               num_samples: int | None = None, env: Mapping[str, Any] | None = None,
               report_dir: Path | str | None = None,
               stages: Mapping[str, VerifiedPackage] | None = None) -> ModelTestResult:
    """Test one prepared package; never raises for the model's faults.

    ``options`` are the runner's (default: a worker on the ``auto`` device, so a hang or a
    crash is contained; the batch size is the test's sample count). ``timeout_s`` (else
    the record's ``test.timeout_s``, else 300 s) bounds the load and each request to the
    worker. ``report_dir`` writes a report there. Models of a site are tested by reference
    with :func:`synthmed.registry.checks.modeltest_site.test_ref`. A model with array inputs is
    tested on the inputs shipped in its package (``array_inputs[].test``); a pipeline runs
    with the stages :func:`~synthmed.registry.packages.prepare` prepared with it (or ``stages``)."""
    result = _test_package(package, options or RunnerOptions(mode="worker"), timeout_s=timeout_s,
                           num_samples=num_samples, env=env, stages=stages)
    if report_dir is not None:
        write_report(Path(report_dir), [result])
    return result


def _test_package(package: VerifiedPackage, options: RunnerOptions, *, timeout_s: float | None,
                  num_samples: int | None, env: Mapping[str, Any] | None,
                  stages: Mapping[str, VerifiedPackage] | None = None) -> ModelTestResult:
    record, upstream = package.record, package.upstream
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
    s = _Session(package, options.with_(timeout_s=timeout, batch_size=n), stages)
    try:
        # before any model code runs
        s.inputs = test_inputs(record, package.folder, max_decoded_bytes=s.options.max_decoded_bytes)
        if s.inputs is not None:
            s.per_input = -(-n // s.inputs.count)
        checked = _check_params(s, params, wanted)
        if checked is not None:
            _run(s, seeds, checked, wanted, n)
    except ModelRunError as exc:  # e.g. the package folder is missing
        s.checks.append(mc.failed("load", _short(exc)))
    except SynthmedError as exc:  # EnvironmentBuildError, ConfigError (no such device), a refusal
        result.status = "skipped" if policy_refusal(exc) else "error"
        result.reason = (f"not run by this site's policy: {_short(exc)}" if result.status == "skipped"
                         else f"could not be tested here: {_short(exc)}")
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


def policy_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` is the site's policy refusing to run a package (never an inability to
    test it): unverified (no pin), ``allow_code = false`` for its upstream, yanked; for a
    pipeline, a stage refused for one of those reasons. Everything else that stops a test
    is an error."""
    if isinstance(exc, StageUnavailable):
        return exc.__cause__ is not None and policy_refusal(exc.__cause__)
    if isinstance(exc, (NotPinned, CodeNotAllowed, RecordYanked)):
        return True
    # the runner's refusal of a package prepared for mirroring only (allow_code = false)
    return type(exc) is Unverified


def skipped_result(record: Record, reason: str, *, upstream: str | None = None,
                   env: Mapping[str, Any] | None = None, status: str = "skipped") -> ModelTestResult:
    """A result for a model that was not tried at all: ``skipped`` (the site's policy) or
    ``error`` (it could not be: e.g. its artefact could not be fetched)."""
    now = utcnow()
    envinfo = dict(env or environment())
    requirements = list(record.data.get("package", {}).get("requirements") or [])
    return ModelTestResult(
        ref=record.ref, id=record.id, version=record.version, status=status, reason=reason, started=now,
        finished=now, duration_s=0.0,
        fingerprint=run_fingerprint(record.sha256, str(envinfo["fingerprint"]), requirements),
        upstream=upstream, title=record.get("title"), package_format=record.data.get("package", {}).get("format"),
        sha256=record.sha256, outputs=record.outputs)


test_model.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
