"""Plain data for the catalogue's pages, read from a read-only catalog: search with facets,
a model's page, test history and sample grids, report documents. No HTML here."""

from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from synthmed.registry import vocabulary
from synthmed.registry.catalog import Catalog, CatalogEntry
from synthmed.registry.checks.modeltest_site import last_test_flags
from synthmed.registry.measuring.cards import audit_cards, evaluation_cards
from synthmed.registry.packages import runnable_upstreams
from synthmed.registry.settings import Settings
from synthmed.registry.artefacts.store import Store

log = logging.getLogger(__name__)

#: facet name -> how to read its values from a record
FACETS = ("modality", "anatomy", "architecture", "license", "status")
SEARCH_LIMIT = 500


@dataclass(frozen=True)
class Query:
    text: str = ""
    modality: str = ""
    anatomy: str = ""
    architecture: str = ""
    license: str = ""
    status: str = ""
    runnable: bool = False

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> "Query":
        def one(k: str) -> str:
            return " ".join(str(args.get(k, "")).split())[:200]
        return cls(text=one("q"), modality=one("modality"), anatomy=one("anatomy"),
                   architecture=one("architecture"), license=one("license"), status=one("status"),
                   runnable=args.get("runnable", "") in ("1", "on", "true"))

    def params(self, **change: Any) -> dict[str, str]:
        """The query string's parameters, with ``change`` applied ('' removes one)."""
        d = {"q": self.text, "modality": self.modality, "anatomy": self.anatomy, "architecture": self.architecture,
             "license": self.license, "status": self.status, "runnable": "1" if self.runnable else ""}
        d.update({k: ("1" if v is True else "" if v is False else str(v)) for k, v in change.items()})
        return {k: v for k, v in d.items() if v}


def facet_values(entry: CatalogEntry, name: str) -> list[str]:
    data = entry.record.data
    if name == "modality":
        return vocabulary.facet_modalities(data.get(name) or [])
    if name == "anatomy":
        return vocabulary.facet_anatomy(data.get(name) or [])
    if name == "architecture":
        arch = data.get("architecture") or {}
        return [str(arch["family"])] if arch.get("family") else []
    if name == "license":
        return [str(data["license"])] if data.get("license") else []
    if name == "status":
        return [entry.status]
    return []


def term_label(name: str, value: str) -> str:
    """How a facet value is shown: a modality code with its display name (``Mammography
    (MG)``); other values as they are."""
    if name == "modality" and value.upper() in vocabulary.MODALITIES:
        return f"{vocabulary.modality_display(value)} ({value.upper()})"
    return value


def search(settings: Settings, cat: Catalog, q: Query) -> dict[str, Any]:
    """Results (with their last test) and facet counts over them."""
    runnable: dict[str, Any] = {}
    if q.runnable:
        runnable = {"runnable": True, "code_upstreams": runnable_upstreams(settings),
                    "held_blobs": set(Store(settings.store_dir).iter_blobs())}
    found = cat.models.search(q.text, modality=q.modality or None, anatomy=q.anatomy or None,
                              architecture=q.architecture or None, license=q.license or None, limit=SEARCH_LIMIT,
                              **runnable)
    if q.status:
        found = [e for e in found if e.status == q.status.lower()]
    tests = last_test_flags(cat, found)
    facets: dict[str, dict[str, int]] = {}
    for name in FACETS:
        counts: dict[str, int] = {}
        shown: dict[str, str] = {}
        for e in found:
            for v in dict.fromkeys(facet_values(e, name)):
                key = v.lower()
                shown.setdefault(key, v)
                counts[key] = counts.get(key, 0) + 1
        facets[name] = {shown[k]: n for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}
    rows: list[dict[str, Any]] = [{"entry": e, "test": tests.get(e.qualified_ref),
                                   "runnable": bool(e.record.sha256), "grid": last_grid(cat, e)} for e in found]
    # what this site can run first (pinned; tested and passing before untested, failing
    # last), in the catalog's order within each group; unpinned records in a section of their own
    order = {True: 0, None: 1, False: 2}
    pinned = sorted((r for r in rows if r["runnable"]),
                    key=lambda r: order[None if r["test"] is None else bool(r["test"]["passed"])])
    unverified = [r for r in rows if not r["runnable"]]
    return {"rows": pinned, "unverified": unverified, "facets": facets, "count": len(found),
            "truncated": len(found) >= SEARCH_LIMIT}


def last_grid(cat: Catalog, entry: CatalogEntry) -> int | None:
    """The id of the newest test run (of the 5 last) of this version that drew a sample
    grid (served at ``/tests/<id>/grid.png``), or None (an unpinned record is never tested)."""
    for t in cat.tests.tests_of(entry.upstream, entry.id, entry.version, entry.record.sha256, limit=5):
        rep = RunReport.of(t)
        if rep is not None and rep.grid():
            return int(t["id"])
    return None


def _inside(root: Path, path: Path) -> Path | None:
    """``path`` when it is a regular file inside ``root`` after following links and ``..``."""
    try:
        real = path.resolve(strict=True)
        real.relative_to(root.resolve())
    except (OSError, ValueError):
        return None
    return real if real.is_file() else None


@dataclass(frozen=True)
class RunReport:
    """Where a test run's report lives: the model's report JSON (the catalog's ``report_path``)
    inside its run folder (``<run>/models/<id>/<version>.json``, beside ``<run>/report.json``)."""

    model_json: Path
    run_dir: Path

    @classmethod
    def of(cls, row: Mapping[str, Any] | None) -> "RunReport | None":
        path = row.get("report_path") if row else None
        if not path:
            return None
        p = Path(str(path))
        if not p.is_absolute() or len(p.parts) < 4 or p.parts[-3] != "models" or not p.is_file():
            return None
        return cls(p, p.parents[2])

    def grid(self) -> str | None:
        """The sample grid's path relative to the run folder (None without one)."""
        try:
            doc = json.loads(self.model_json.read_text("utf-8"))
            png = (doc.get("results") or [{}])[0].get("samples_png")
        except (OSError, ValueError, AttributeError, IndexError):
            return None
        if not isinstance(png, str) or not png.endswith(".png"):
            return None
        real = _inside(self.run_dir, self.model_json.parent / png)
        return real.relative_to(self.run_dir.resolve()).as_posix() if real else None

    def _doc(self) -> dict[str, Any] | None:
        path = _inside(self.run_dir, self.run_dir / "report.json")
        if path is None:
            return None
        try:
            doc = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def written(self) -> set[str]:
        """The files the test run wrote, relative to the run folder, as its ``report.json``
        records them (``registry/checks/report.py``): ``report.json``, each result's
        ``models/<id>/<version>.json`` and sample grid. Nothing else of the folder is served
        (``--report DIR`` may name a folder that held other files before)."""
        doc = self._doc()
        if doc is None:
            return set()
        out = {"report.json", self.model_json.relative_to(self.run_dir).as_posix()}
        for r in doc.get("results") or []:
            if not isinstance(r, Mapping):
                continue
            ref = r.get("ref")
            if isinstance(ref, str) and ref.count("@") == 1:
                out.add("models/{}/{}.json".format(*ref.split("@")))
            png = r.get("samples_png")
            if isinstance(png, str) and png.endswith(".png"):
                out.add(posixpath.normpath(png))
        return out

    def file(self, rel: str) -> Path | None:
        """A PNG or JSON file the run wrote (after following links, still inside its folder)."""
        if not rel.endswith((".png", ".json")) or posixpath.normpath(rel) not in self.written():
            return None
        return _inside(self.run_dir, self.run_dir / rel)

    def run(self) -> dict[str, Any] | None:
        """The run's ``report.json``, each result with ``grid`` (relative to the run folder)."""
        doc = self._doc()
        if doc is None:
            return None
        for r in doc.get("results") or []:
            png = r.get("samples_png")
            r["grid"] = png if isinstance(png, str) and self.file(png) is not None else None
        return doc


def model_page(settings: Settings, cat: Catalog, upstream: str, model_id: str,
               version: str | None) -> dict[str, Any]:
    ref = f"{upstream}/{model_id}" + (f"@{version}" if version else "")
    entry = cat.models.resolve(ref, allow_yanked=True)
    rec = entry.record.data
    versions = [e for e in cat.models.rows_for_id(entry.id) if e.upstream == entry.upstream]
    tests = cat.tests.tests_of(entry.upstream, entry.id, entry.version, entry.record.sha256, limit=20)
    grid = None
    for t in tests:
        rep = RunReport.of(t)
        t["has_report"] = rep is not None and rep.file("report.json") is not None
        if grid is None and rep is not None and rep.grid():
            grid = t["id"]
    pkg = rec.get("package") or {}
    art = pkg.get("artefact") or {}
    store = Store(settings.store_dir)
    sha = entry.record.sha256
    in_store = store.has(sha) if sha else False
    metrics = [m for m in rec.get("metrics") or [] if isinstance(m, Mapping)]
    # values this site measured (synthmed evaluate) as quality cards, and its memorisation audits;
    # the cards' site-local part (the path of a folder measured against) is never put on a page
    cards = [{k: v for k, v in c.items() if k != "site_local"} for c in evaluation_cards(
        cat.evaluations.evaluations_of(entry.upstream, entry.id, entry.version, entry.record.sha256))]
    audits = [{k: v for k, v in a.items() if k not in ("site_local", "provenance", "summary")} for a in audit_cards(
        cat.audits.latest_of(entry.upstream, entry.id, entry.version, entry.record.sha256))]
    return {"entry": entry, "rec": rec, "versions": versions, "tests": tests, "last": tests[0] if tests else None,
            "grid": grid, "pkg": pkg, "art": art, "in_store": in_store, "metrics": metrics, "cards": cards,
            "audits": audits, "audit": _worst(audits),
            "datasets": cat.datasets.for_model(entry.upstream, entry.id),
            "metric_keys": _metric_keys(metrics), "training": rec.get("training") or {},
            "pretty_inputs": json.dumps(entry.record.inputs, indent=2)}


def _worst(audits: list[dict[str, Any]]) -> str | None:
    """The verdict the page's badge shows: the worst of the newest audit of each training set."""
    for v in ("fail", "review", "pass"):
        if any(a["verdict"] == v for a in audits):
            return v
    return None


def _metric_keys(metrics: list[Mapping[str, Any]]) -> list[str]:
    """Every field a metric carries besides name/value/better, in first-seen order (how it
    was measured: source, method, n_samples, reference, provenance, ...)."""
    keys: dict[str, None] = {}
    for m in metrics:
        for k in m:
            if k not in ("name", "value", "better"):
                keys.setdefault(k, None)
    return list(keys)
