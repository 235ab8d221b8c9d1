"""``synthmed evaluate --sanity``: known-answer checks of feature extractors on a site's own
reference set, and the choice of the extractor ``evaluate`` uses by default.

A distance that ranks real images last cannot rank models (#23). So, for each extractor,
the reference set is split into two disjoint random halves A and B (seeded), and B is the
reference every copy is measured against, with the extractor's own distance (``fd``, or
``frd`` for the radiomics extractor):

- ``halves``: A itself scores better (lower) than every degraded copy of A and the flat model;
- ``blur``, ``noise``, ``shift``, ``downup``, ``mean`` (:mod:`.degradations`): the distance
  grows strictly with the strength, from A itself through each of the strengths;
- ``flat``: the flat-image "model" (each image of A replaced by its mean colour) ranks last,
  worse than A and every degraded copy.

The result of each extractor (the checks passed, their values) is stored in the catalog's
``sanity_checks`` table, keyed by the set's identity. :func:`choose_extractor` picks, for a
reference set, the extractor with the most checks passed (ties broken by
:data:`PREFERENCE`); with none stored, the default stays and says so.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from . import degradations as D
from . import metrics as M
from ..errors import EvaluationError, SynthmedError
from ..stamps import synthmed_version, utcnow
from .extractors import DEFAULT_EXTRACTOR, Extractor, config_key, describe, open_extractor
from .radiomics import frd_v1
from .reference_sets import ReferenceSet, features_of_images

if TYPE_CHECKING:  # pragma: no cover
    from ..catalog import Catalog
    from ..settings import Settings

log = logging.getLogger(__name__)

#: the extractors ``--sanity`` checks when none is named: those a site can run offline
#: (an extractor that cannot run here, e.g. the unverified Inception, is skipped, with the reason)
DEFAULT_EXTRACTORS = ("randconv-224", "frd-radiomics", "inception-v3-fid")
#: a tie in checks passed goes to the extractor first in this order (made for the images at
#: hand, then the standard trained network, then the untrained one), then by reference
PREFERENCE = ("frd-radiomics", "inception-v3-fid", "randconv-224")
#: the checks, in the order they are reported
CHECKS = ("halves", *D.DEGRADATIONS, "flat")
IMPLEMENTATION = {"module": "synthmed.registry.measuring.sanity", "version": 1}
#: the largest half drawn by default (``-n`` sets it)
DEFAULT_HALF = 250


def split_halves(n_images: int, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves (indices into the set's manifest) of ``n`` images each
    (default: half the set, at most :data:`DEFAULT_HALF`)."""
    if n_images < 4:
        raise EvaluationError(f"the reference set holds {n_images} image(s); the sanity checks need at least 4 "
                              "(two halves of 2)", hint="add a reference set of more real images (100 or more)")
    if n is None:
        n = min(n_images // 2, DEFAULT_HALF)
    if n < 2 or 2 * n > n_images:
        raise EvaluationError(f"-n {n}: two disjoint halves of {n} images need {2 * n} images, the reference set "
                              f"holds {n_images}", hint=f"give -n from 2 to {n_images // 2} (images per half)")
    order = np.random.default_rng(seed).permutation(n_images)
    return np.sort(order[:n]), np.sort(order[n:2 * n])


def distance_name(extractor: Extractor) -> str:
    return "frd" if extractor.record.is_radiomics else "fd"


def set_distance(extractor: Extractor, ref: np.ndarray, gen: np.ndarray) -> float:
    """The extractor's own distance of ``gen`` from ``ref``: FRD v1, or the Fréchet distance."""
    return frd_v1(ref, gen) if extractor.record.is_radiomics else M.frechet_distance(ref, gen)


def judge(halves: float, degraded: Mapping[str, Sequence[tuple[float, float]]], flat: float
          ) -> list[dict[str, Any]]:
    """The checks, from the distances: ``halves`` (A against B), ``degraded`` (name ->
    [(strength, distance)] mild to strong) and ``flat``. A NaN (a distance that could not be
    computed) fails every check it takes part in."""
    everything = [(f"{k} {s:g}", d) for k, pairs in degraded.items() for s, d in pairs] + [("flat", flat)]
    checks: list[dict[str, Any]] = []
    others = [d for _, d in everything]
    ok = bool(np.isfinite(halves)) and all(np.isfinite(d) and halves < d for d in others)
    closest = min(everything, key=lambda t: t[1] if np.isfinite(t[1]) else np.inf)
    checks.append({"check": "halves", "passed": ok, "values": {"halves": halves, "closest": closest[1]},
                   "detail": f"halves {halves:.4g} vs closest copy {closest[0]} {closest[1]:.4g}"})
    for name, pairs in degraded.items():
        seq = [(0.0, halves), *pairs]
        bad = next(((a, b) for a, b in zip(seq, seq[1:]) if not (np.isfinite(a[1]) and np.isfinite(b[1])
                                                                 and b[1] > a[1])), None)
        detail = " < ".join(f"{d:.4g}" for _, d in seq) if bad is None else \
            f"not growing from strength {bad[0][0]:g} ({bad[0][1]:.4g}) to {bad[1][0]:g} ({bad[1][1]:.4g})"
        checks.append({"check": name, "passed": bad is None,
                       "values": {"strengths": [s for s, _ in pairs], "distances": [d for _, d in seq]},
                       "detail": detail})
    field_ = [halves, *[d for _, d in everything[:-1]]]
    rank = 1 + sum(1 for d in field_ if np.isfinite(d) and np.isfinite(flat) and d > flat)
    ok = bool(np.isfinite(flat)) and all(np.isfinite(d) and d < flat for d in field_)
    checks.append({"check": "flat", "passed": ok, "values": {"flat": flat, "rank_from_last": rank},
                   "detail": f"flat {flat:.4g} ranks {'last' if ok else f'{rank} from last'} of {len(field_) + 1}"})
    return checks


@dataclass
class SanityResult:
    """One extractor's checks on one reference set."""

    extractor: str
    says: str
    config: str
    distance: str
    checks: list[dict[str, Any]]
    provenance: dict[str, Any]

    @property
    def passed(self) -> int:
        return sum(1 for c in self.checks if c["passed"])

    @property
    def total(self) -> int:
        return len(self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"extractor": self.extractor, "says": self.says, "config": self.config, "distance": self.distance,
                "passed": self.passed, "total": self.total, "checks": self.checks, "provenance": self.provenance}


@dataclass
class SanityRun:
    reference: ReferenceSet
    n: int
    seed: int
    results: list[SanityResult] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"reference": {"label": self.reference.label, **self.reference.describe()}, "n_per_half": self.n,
                "seed": self.seed, "checks": list(CHECKS), "strengths": D.STRENGTHS, "units": D.UNITS,
                "results": [r.as_dict() for r in self.results], "skipped": self.skipped}

    def store(self, catalog: "Catalog") -> None:
        run = uuid.uuid4().hex
        with catalog.transaction():
            for r in self.results:
                catalog.sanity.record_sanity(
                    run=run, reference=self.reference.label, identity=self.reference.identity, extractor=r.extractor,
                    config=r.config, distance=r.distance, passed=r.passed, total=r.total, checks=r.checks,
                    provenance=r.provenance, finished=r.provenance["finished"])


def check_extractor(reference: ReferenceSet, extractor: Extractor, config: str, *, n: int | None = None,
                    seed: int = 0, progress: Callable[[str], None] = lambda m: None) -> SanityResult:
    """Run every check of one extractor on ``reference`` (halves of ``n`` images, ``seed``)."""
    a_idx, b_idx = split_halves(len(reference.files), n, seed)
    ref = extractor.record.ref
    feats = reference.features(extractor, config)  # cached with the set (evaluate uses them too)
    b_feats, a_feats = feats[b_idx], feats[a_idx]
    a_images = reference.load_images(a_idx.tolist())

    def dist(what: str, images: list[D.Image] | None) -> float:
        progress(f"sanity: {ref}: {what} ({len(a_idx)} images)")
        try:
            f = a_feats if images is None else features_of_images(images, extractor)
            return set_distance(extractor, b_feats, f)
        except EvaluationError as exc:
            log.info("sanity %s %s: %s", ref, what, exc.message)
            return float("nan")

    halves = dist("halves", None)
    degraded = {name: [(s, dist(f"{name} {s:g}", D.degrade(a_images, name, s, seed)))
                       for s in D.STRENGTHS[name]] for name in D.DEGRADATIONS}
    flat = dist("flat", D.flat(a_images))
    provenance = {"implementation": IMPLEMENTATION, "extractor": describe(extractor.record),
                  "reference": reference.describe(), "n_per_half": int(len(a_idx)), "seed": int(seed),
                  "strengths": D.STRENGTHS, "units": D.UNITS, "synthmed": synthmed_version(), "finished": utcnow()}
    return SanityResult(ref, extractor.record.summary(), config, distance_name(extractor),
                        judge(halves, degraded, flat), provenance)


def run_sanity(settings: "Settings", catalog: "Catalog", reference: ReferenceSet, extractor_refs: Sequence[str],
               *, n: int | None = None, seed: int = 0, workers: int | None = None,
               progress: Callable[[str], None] = lambda m: None) -> SanityRun:
    """The checks of each extractor named (none: :data:`DEFAULT_EXTRACTORS`, each skipped
    with its reason when it cannot run on this site) on ``reference``."""
    split_halves(len(reference.files), n, seed)  # refuse a bad -n before any extractor loads
    named = bool(extractor_refs)
    run = SanityRun(reference, 0, seed)
    for ref in (extractor_refs or DEFAULT_EXTRACTORS):
        try:
            extractor = open_extractor(catalog, settings, ref, workers=workers)
        except SynthmedError as exc:
            if named:
                raise
            run.skipped.append({"extractor": ref, "reason": exc.message})
            progress(f"sanity: {ref} skipped: {exc.message}")
            continue
        progress(f"sanity: {extractor.record.summary()}")
        result = check_extractor(reference, extractor, config_key(extractor), n=n, seed=seed, progress=progress)
        run.results.append(result)
        run.n = int(result.provenance["n_per_half"])
    return run


# -- the default extractor of `evaluate` and the nightly job --------------------------------------


@dataclass(frozen=True)
class ExtractorChoice:
    """Which extractor an evaluation used and why (one line: ``why``)."""

    ref: str
    why: str
    sanity: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "why": self.why, "sanity": list(self.sanity)}


def _order(row: Mapping[str, Any]) -> tuple[int, int, str]:
    ext_id = str(row["extractor"]).split("@")[0]
    pref = PREFERENCE.index(ext_id) if ext_id in PREFERENCE else len(PREFERENCE)
    return (-int(row["passed"]), pref, str(row["extractor"]))


def ranked_candidates(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Stored sanity results of one set, best first: most checks passed, ties by :data:`PREFERENCE`."""
    return sorted(rows, key=_order)


def open_chosen(catalog: "Catalog", settings: "Settings", reference: ReferenceSet, *,
                workers: int | None = None) -> tuple[Extractor, ExtractorChoice]:
    """The best-passing extractor of the sanity checks stored for ``reference`` (one that
    cannot run here gives way to the next, and the line says so); with none stored, the
    default extractor, and the line says how to run the checks."""
    rows = ranked_candidates(catalog.sanity.latest_for(reference.identity))
    brief = tuple({"extractor": r["extractor"], "passed": r["passed"], "total": r["total"],
                   "finished": r["finished"]} for r in rows)
    if not rows:
        target = reference.name or str(reference.source)
        return (open_extractor(catalog, settings, None, workers=workers),
                ExtractorChoice(DEFAULT_EXTRACTOR, f"{DEFAULT_EXTRACTOR} (the default): no sanity check on this "
                                                   f"reference set; run `synthmed evaluate --sanity {target}`"))
    passed_over: list[str] = []
    for i, row in enumerate(rows):
        try:
            extractor = open_extractor(catalog, settings, str(row["extractor"]), workers=workers)
        except SynthmedError as exc:
            passed_over.append(f"{row['extractor']} cannot run here ({exc.message})")
            continue
        tie = [r["extractor"] for r in rows if r is not row and r["passed"] == row["passed"]]
        why = (f"{row['extractor']}: it passed {row['passed']} of {row['total']} sanity checks on "
               f"{reference.label} ({str(row['finished'])[:10]})")
        if i == 0 or not passed_over:
            why += ", the most" if not tie else f", as many as {', '.join(tie)} (ties go by {', '.join(PREFERENCE)})"
        rest = [f"{r['extractor']} {r['passed']}/{r['total']}" for r in rows if r is not row]
        if rest:
            why += "; others: " + ", ".join(rest)
        if passed_over:
            why += "; passed over: " + "; ".join(passed_over)
        return extractor, ExtractorChoice(extractor.record.ref, why, brief)
    raise EvaluationError(f"no extractor with a stored sanity result on {reference.label} can run here: "
                          + "; ".join(passed_over), hint="name one with --extractor, or install what it needs")
