"""Model test reports: the result of one model's test, a report of many, written as JSON
(validated against ``schemas/test-report.schema.json``), a readable Markdown summary and a
small PNG grid of samples per model beside it.

Layout of a report folder::

    report.json          every result (synthmed-test-report/1)
    summary.md           a table of results, the failures with their reasons, the grids
    models/<id>/<version>.json   one report per model version (what the catalog points to)
    samples/<id>@<version>.png   a grid of up to 16 samples of the first output (registry/outputs.py)
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .. import atomic
from ..errors import SynthmedError
from .modeltest_checks import CheckResult
from ..outputs import OutputSpec, preview, save_grid, upscale, upscale_factor
from ..schemas_io import validate_against
from ..stamps import synthmed_version, utcnow

log = logging.getLogger(__name__)

REPORT_FORMAT = "synthmed-test-report/1"
GRID_MAX = 16


def _module_version(name: str) -> str | None:
    mod = sys.modules.get(name)
    if mod is None:
        try:
            from importlib.metadata import version

            return version(name)
        except Exception:  # noqa: BLE001
            return None
    return str(getattr(mod, "__version__", None) or "") or None


def environment() -> dict[str, Any]:
    """What the test ran on; ``fingerprint`` changes when any of it changes."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "numpy": _module_version("numpy"),
        "torch": _module_version("torch"),
    }
    env["fingerprint"] = hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:16]
    return env


def run_fingerprint(sha256: str | None, env_fingerprint: str, requirements: Sequence[str] = ()) -> str:
    """Hash of the artefact, the model's requirements and the environment (stored in the
    catalog's ``tests.env_hash``): when it changes, the model is tested again."""
    text = json.dumps({"sha256": sha256, "env": env_fingerprint, "requirements": sorted(requirements)},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class ModelTestResult:
    """The outcome of one model version's test."""

    ref: str
    id: str
    version: str
    #: passed | failed | skipped (site policy: unverified, allow_code off, yanked; never run)
    #: | error (could not be tested: package not fetched, environment not built, no such
    #: device, the test itself crashed): failed and error fail `synthmed test` and a review
    status: str
    reason: str | None
    started: str
    finished: str
    duration_s: float
    fingerprint: str
    upstream: str | None = None
    title: str | None = None
    package_format: str | None = None
    sha256: str | None = None
    test: dict[str, Any] = field(default_factory=dict)
    runner: dict[str, Any] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    throughput_sps: float | None = None
    load_s: float | None = None
    peak_memory_mb: float | None = None
    samples_png: str | None = None
    #: the first run's outputs, kept in memory for the sample grid (never serialised)
    samples: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)
    #: the record's outputs, for the grid's value ranges
    outputs: list[Mapping[str, Any]] = field(default_factory=list, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if c.failed]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ref": self.ref, "id": self.id, "version": self.version, "upstream": self.upstream,
            "title": self.title, "package_format": self.package_format, "sha256": self.sha256,
            "status": self.status, "passed": self.passed, "reason": self.reason,
            "started": self.started, "finished": self.finished, "duration_s": round(self.duration_s, 3),
            "test": self.test, "runner": self.runner,
            "checks": [c.as_dict() for c in self.checks],
            "measurements": {
                "throughput_sps": _round(self.throughput_sps), "load_s": _round(self.load_s),
                "peak_memory_mb": _round(self.peak_memory_mb),
            },
            "samples_png": self.samples_png, "fingerprint": self.fingerprint,
        }
        return json.loads(json.dumps(out, default=str))


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 3)


def build_report(results: Sequence[ModelTestResult], *, site: str | None = None,
                 env: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The report document for ``results`` (not yet validated or written)."""
    return {
        "format": REPORT_FORMAT,
        "created": utcnow(),
        "synthmed_version": synthmed_version(),
        "site": site,
        "environment": dict(env or environment()),
        "summary": {
            "total": len(results),
            "passed": sum(r.status == "passed" for r in results),
            "failed": sum(r.status == "failed" for r in results),
            "skipped": sum(r.status == "skipped" for r in results),
            "error": sum(r.status == "error" for r in results),
        },
        "results": [r.as_dict() for r in results],
    }


def validate_report(doc: Any, where: str = "<report>") -> None:
    """Raise SynthmedError listing every way ``doc`` breaks the report schema."""
    problems = validate_against("report", doc, where)
    if problems:
        lines = "\n".join(str(p) for p in problems)
        raise SynthmedError(f"{where}: the test report does not match schemas/test-report.schema.json:\n{lines}",
                            hint="this is a bug in synthmed's report writer; please report it")


def model_report_path(folder: Path, result: ModelTestResult) -> Path:
    return folder / "models" / result.id / f"{result.version}.json"


# --- sample grids -------------------------------------------------------------------


def write_sample_grid(samples: Mapping[str, np.ndarray], outputs: Sequence[Mapping[str, Any]], path: Path,
                      max_samples: int = GRID_MAX) -> Path | None:
    """A PNG grid of up to ``max_samples`` samples of the first output: the
    :func:`~synthmed.registry.outputs.preview` of each (a volume's middle slice along its
    slice axis, windowed and enlarged as ``visualize`` shows it), tiled by :func:`~synthmed.registry.outputs.save_grid`."""
    if not outputs:
        return None
    spec = OutputSpec.from_record(outputs[0])
    arr = samples.get(spec.name)
    if arr is None or arr.ndim < 2 or arr.shape[0] == 0:
        return None
    # enlarged as `visualize` enlarges them (nearest neighbour, to at least TILE_MIN pixels)
    tiles = [preview(arr[i], spec) for i in range(min(len(arr), max_samples))]
    return save_grid([upscale(t, upscale_factor(t.shape)) for t in tiles], path)


# --- writing ------------------------------------------------------------------------


def markdown_summary(doc: Mapping[str, Any]) -> str:
    s = doc["summary"]
    env = doc["environment"]
    lines = [
        "# synthmed model test report",
        "",
        f"Created {doc['created']} by synthmed {doc['synthmed_version']}"
        + (f" on site `{doc['site']}`" if doc.get("site") else "")
        + f"; Python {env['python']}, {env['platform']}, torch {env.get('torch') or '-'}.",
        "",
        f"**{s['passed']} passed, {s['failed']} failed, {s.get('error', 0)} not tested (error), "
        f"{s['skipped']} skipped by site policy** of {s['total']}.",
        "",
        "| model | status | samples/s | peak MiB | reason |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    order = {"failed": 0, "error": 1, "passed": 2, "skipped": 3}
    results = sorted(doc["results"], key=lambda r: (order.get(r["status"], 3), r["ref"]))
    for r in results:
        m = r["measurements"]
        mark = {"passed": "pass", "failed": "**FAIL**", "error": "**ERROR**", "skipped": "skip"}[r["status"]]
        reason = (r["reason"] or "").replace("|", "\\|").replace("\n", " ")
        if len(reason) > 160:
            reason = reason[:157] + "..."
        lines.append(f"| `{r['ref']}` | {mark} | {_fmt(m['throughput_sps'])} | {_fmt(m['peak_memory_mb'])} | {reason} |")
    for r in results:
        if r["status"] in ("skipped", "error"):
            continue  # the table says why; nothing ran
        lines += ["", f"## {r['ref']}" + (f": {r['title']}" if r.get("title") else ""), ""]
        lines.append(f"Status: **{r['status']}**" + (f": {r['reason']}" if r["reason"] else ""))
        if r["checks"]:
            lines += ["", "| check | result | detail |", "| --- | --- | --- |"]
            for c in r["checks"]:
                lines.append(f"| {c['name']} | {c['status']} | {c['message'].replace('|', '/').replace(chr(10), ' ')} |")
        if r.get("samples_png"):
            lines += ["", f"![samples of {r['ref']}]({r['samples_png']})"]
    return "\n".join(lines) + "\n"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def write_report(folder: Path, results: Sequence[ModelTestResult], *, site: str | None = None,
                 env: Mapping[str, Any] | None = None) -> Path:
    """Write ``report.json``, ``summary.md``, the per-model reports and the sample grids
    into ``folder``; returns the path of ``report.json``. Every JSON written is validated."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for r in results:
        if r.samples and r.samples_png is None:
            try:
                png = write_sample_grid(r.samples, r.outputs, folder / "samples" / f"{r.ref}.png")
            except Exception as exc:  # noqa: BLE001 - a grid is a convenience; never fail a report for it
                log.warning("%s: could not draw the sample grid: %s", r.ref, exc)
                png = None
            if png is not None:
                r.samples_png = png.relative_to(folder).as_posix()
    env = dict(env or environment())
    doc = build_report(results, site=site, env=env)
    validate_report(doc, str(folder / "report.json"))
    for r in results:
        one = build_report([r], site=site, env=env)
        if r.samples_png:
            one["results"][0]["samples_png"] = "../../" + r.samples_png
        atomic.write_json(model_report_path(folder, r), one, parents=True)
    atomic.write_text(folder / "summary.md", markdown_summary(doc), parents=True)
    path = folder / "report.json"
    atomic.write_json(path, doc, parents=True)
    return path


def load_report(path: Path) -> dict[str, Any]:
    """Read and validate a report written by :func:`write_report`."""
    doc: dict[str, Any] = json.loads(Path(path).read_text("utf-8"))
    validate_report(doc, str(path))
    return doc


def summarise(results: Iterable[ModelTestResult]) -> str:
    rs = list(results)
    return (f"{sum(r.passed for r in rs)} passed, {sum(r.status == 'failed' for r in rs)} failed, "
            f"{sum(r.status == 'error' for r in rs)} not tested (error), "
            f"{sum(r.status == 'skipped' for r in rs)} skipped")
