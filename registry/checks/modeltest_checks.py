"""The checks of a model test, as pure functions over a record and the arrays a model
returned: no processes, no files. :mod:`synthmed.registry.checks.modeltest` runs the model and
feeds these.

Every check answers a :class:`CheckResult`: ``pass``, ``fail`` (with a message naming the
output, what was expected, what came back and how to fix it) or ``skip`` (with why it does
not apply).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..outputs import accepted_shapes

#: every check a record's ``test.checks`` may name (schemas/record.schema.json)
ALL_CHECKS = ("shapes", "dtypes", "value_range", "finite", "determinism", "batch_invariance", "params", "throughput")
#: a key no inputs schema should accept: used to probe that an invalid parameter is refused
PROBE_KEY = "__synthmed_invalid_parameter__"


@dataclass
class CheckResult:
    """The outcome of one check."""

    name: str
    status: str  # pass | fail | skip
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "status": self.status, "message": self.message}
        if self.details:
            out["details"] = json.loads(json.dumps(self.details, default=str))
        return out


def passed(name: str, message: str = "", **details: Any) -> CheckResult:
    return CheckResult(name, "pass", message, dict(details))


#: how to fix each failing check, appended to its message (the contributor reads this first)
FIXES: dict[str, str] = {
    "shapes": "return, for every output named in $.outputs, an array with the batch first "
              "(N, *shape[, channels]); or, when the model is right, correct $.outputs[i].shape, .dims or "
              ".channels in the metadata",
    "dtypes": "cast the output before returning it (e.g. x.astype(np.uint8) or tensor.to(torch.uint8)); or, when "
              "the model is right, correct $.outputs[i].dtype in the metadata",
    "value_range": "clip or rescale the output into the declared range (e.g. np.clip(x, lo, hi)); or, when the "
                   "model is right, widen $.outputs[i].value_range in the metadata",
    "finite": "find where NaN or inf appear (a division by zero, log(0), overflow in float16, untrained weights) "
              "and clamp or guard that step; outputs must hold finite values",
    "determinism": "draw every random number from generators seeded from the seeds "
                   "(torch.Generator().manual_seed(seed), np.random.default_rng(seed)), put the network in eval() "
                   "mode (no dropout) and avoid nondeterministic kernels "
                   "(torch.use_deterministic_algorithms(True))",
    "batch_invariance": "draw each sample from its own generator seeded with its seed, e.g. "
                        "torch.Generator().manual_seed(seed); do not use the global RNG or batch statistics "
                        "(BatchNorm in train mode); sample i must depend only on seeds[i]",
    "params": "make $.inputs a closed JSON Schema (list the properties, \"additionalProperties\": false) that "
              "refuses what the model cannot take, and make $.test.params satisfy it",
}


def with_fix(name: str, message: str) -> str:
    """``message`` followed by how to fix the check ``name``, when there is a known fix."""
    fix = FIXES.get(name)
    return f"{message}; to fix: {fix}" if fix and "to fix:" not in message else message


def failed(name: str, message: str, **details: Any) -> CheckResult:
    """A failed check; its message ends with how to fix it (:data:`FIXES`)."""
    return CheckResult(name, "fail", with_fix(name, message), dict(details))


def skipped(name: str, message: str) -> CheckResult:
    return CheckResult(name, "skip", message)


def selected_checks(test: Mapping[str, Any]) -> list[str]:
    """The checks a record's ``test`` block asks for; all of them when it names none."""
    named = test.get("checks")
    if not named:
        return list(ALL_CHECKS)
    return [c for c in ALL_CHECKS if c in named]


# --- shapes, dtypes, ranges, finiteness -------------------------------------------------


def check_shapes(record_outputs: Sequence[Mapping[str, Any]], arrays: Mapping[str, np.ndarray],
                 n: int) -> CheckResult:
    problems = []
    got: dict[str, list[int]] = {}
    for out in record_outputs:
        name = str(out["name"])
        arr = arrays.get(name)
        if arr is None:
            problems.append(f"output {name!r} is missing")
            continue
        got[name] = list(arr.shape)
        if arr.ndim == 0 or arr.shape[0] != n:
            problems.append(f"output {name!r} has shape {tuple(arr.shape)}: expected {n} samples on the first axis")
            continue
        ok = accepted_shapes(out)
        if tuple(arr.shape[1:]) not in ok:
            want = " or ".join(str((n,) + s) for s in ok)
            problems.append(f"output {name!r} has shape {tuple(arr.shape)}, the record declares {want} "
                            f"($.outputs[{record_outputs.index(out)}].shape = {list(out.get('shape', []))}, "
                            f"channels = {out.get('channels', 1)})")
    if problems:
        return failed("shapes", "; ".join(problems), shapes=got)
    return passed("shapes", f"{len(got)} output(s) with the declared shapes", shapes=got)


def check_dtypes(record_outputs: Sequence[Mapping[str, Any]], arrays: Mapping[str, np.ndarray]) -> CheckResult:
    problems = []
    got: dict[str, str] = {}
    for i, out in enumerate(record_outputs):
        name = str(out["name"])
        arr = arrays.get(name)
        if arr is None:
            continue
        got[name] = str(arr.dtype)
        want = str(out.get("dtype"))
        if str(arr.dtype) != want:
            problems.append(f"output {name!r} has dtype {arr.dtype}, the record declares {want} "
                            f"($.outputs[{i}].dtype)")
    if problems:
        return failed("dtypes", "; ".join(problems), dtypes=got)
    return passed("dtypes", "every output has its declared dtype", dtypes=got)


def _finite_view(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind in "fc":
        return arr[np.isfinite(arr)]
    return arr


def check_finite(record_outputs: Sequence[Mapping[str, Any]], arrays: Mapping[str, np.ndarray]) -> CheckResult:
    problems = []
    for out in record_outputs:
        name = str(out["name"])
        arr = arrays.get(name)
        if arr is None or arr.dtype.kind not in "fc":
            continue
        bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            nans = int(np.count_nonzero(np.isnan(arr)))
            samples = sorted({int(i) for i in np.argwhere(~np.isfinite(arr))[:, 0][:1000]})
            problems.append(f"output {name!r} has {bad} non-finite value(s) ({nans} NaN, {bad - nans} inf) "
                            f"in sample(s) {samples[:10]}")
    if problems:
        return failed("finite", "; ".join(problems))
    return passed("finite", "no NaN or inf values")


def check_value_range(record_outputs: Sequence[Mapping[str, Any]], arrays: Mapping[str, np.ndarray]) -> CheckResult:
    problems = []
    ranges: dict[str, list[float]] = {}
    for i, out in enumerate(record_outputs):
        name = str(out["name"])
        arr = arrays.get(name)
        vr = out.get("value_range")
        if arr is None or not vr or arr.size == 0:
            continue
        vals = _finite_view(arr)
        if vals.size == 0:
            continue
        lo, hi = float(np.min(vals)), float(np.max(vals))
        ranges[name] = [lo, hi]
        want_lo, want_hi = float(vr[0]), float(vr[1])
        # a float tolerance: models compute in float32 and may touch the bounds from outside
        tol = 1e-5 * max(1.0, abs(want_hi - want_lo)) if arr.dtype.kind in "fc" else 0.0
        if lo < want_lo - tol or hi > want_hi + tol:
            problems.append(f"output {name!r} has values in [{lo:g}, {hi:g}], outside the declared "
                            f"value_range [{want_lo:g}, {want_hi:g}] ($.outputs[{i}].value_range)")
    if problems:
        return failed("value_range", "; ".join(problems), ranges=ranges)
    return passed("value_range", "every value within the declared ranges", ranges=ranges)


# --- comparing two runs ---------------------------------------------------------------


def run_tolerances(record_outputs: Sequence[Mapping[str, Any]], device: str) -> dict[str, float]:
    """Per output, the largest difference between two runs still counted as the same.

    On the CPU none: runs must be bit-identical. On CUDA, kernels may pick different
    algorithms for different batch sizes and sum in different orders, so float outputs may
    differ by 1e-4 of their value range, and integer outputs by one unit (a rounding flip)."""
    if not device.startswith("cuda"):
        return {}
    out: dict[str, float] = {}
    for o in record_outputs:
        dtype = str(o.get("dtype"))
        vr = o.get("value_range") or [0, 1]
        if dtype.startswith("float"):
            out[str(o["name"])] = 1e-4 * max(abs(float(vr[1]) - float(vr[0])), 1e-12)
        elif dtype != "bool":
            out[str(o["name"])] = 1.0
    return out


def compare_runs(first: Mapping[str, np.ndarray], second: Mapping[str, np.ndarray],
                 atol: Mapping[str, float] | None = None) -> tuple[bool, str, dict[str, Any]]:
    """Whether two runs gave the same outputs (bit-identical, or within ``atol[name]``);
    if not, where they differ first."""
    details: dict[str, Any] = {}
    for name, a in first.items():
        b = second.get(name)
        if b is None:
            return False, f"output {name!r} is missing from the second run", details
        if a.shape != b.shape or a.dtype != b.dtype:
            return False, (f"output {name!r} is {a.dtype}{list(a.shape)} in one run and "
                           f"{b.dtype}{list(b.shape)} in the other"), details
        if np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
            continue
        tol = float((atol or {}).get(name, 0.0))
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        both_nan = np.isnan(a.astype(np.float64)) & np.isnan(b.astype(np.float64))
        diff = np.where(both_nan, 0.0, np.where(np.isnan(diff), np.inf, diff))
        if tol and float(np.max(diff)) <= tol:
            details[name] = {"max_abs_diff": float(np.max(diff)), "tolerance": tol}
            continue
        per_sample = diff.reshape(diff.shape[0], -1).max(axis=1) if diff.ndim > 1 else diff
        differing = [int(i) for i in np.nonzero(per_sample > tol)[0]]
        max_diff = float(np.max(diff))
        details[name] = {"max_abs_diff": max_diff if math.isfinite(max_diff) else "inf",
                         "differing_samples": differing[:20], "tolerance": tol}
        return False, (f"output {name!r} differs in {len(differing)} of {a.shape[0]} sample(s) "
                       f"(first: sample {differing[0] if differing else '?'}, max abs difference {max_diff:g}"
                       + (f", tolerance {tol:g}" if tol else "") + ")"), details
    return True, "", details


# --- parameters -------------------------------------------------------------------------


def invalid_params(inputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """Parameters the record's ``inputs`` schema must refuse, or None when it accepts anything.

    A closed schema (properties listed, ``additionalProperties`` not opened) must refuse an
    unknown key; otherwise a listed property gets a value of a type it cannot have."""
    props = inputs.get("properties")
    props = props if isinstance(props, Mapping) else {}
    extra = inputs.get("additionalProperties")
    closed = extra is False or (extra is None and bool(props))
    if closed:
        return {PROBE_KEY: 1}
    for name, prop in props.items():
        if not isinstance(prop, Mapping):
            continue
        if "enum" in prop or "const" in prop or "type" in prop:
            return {str(name): {PROBE_KEY: [1]}}
    return None
