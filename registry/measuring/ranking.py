"""How ``search --rank`` and ``rank_models_by_performance`` choose the values they compare.

Two kinds of values never meet in one ranking:

- **measured**: values this site measured (``synthmed evaluate``, the catalog's
  ``evaluations`` table), all under ONE comparability key (same extractor and rules,
  same reference set, same sample counts, seeds and metric settings). By default the key
  measured for the most served models; ``key`` (or a prefix of it) picks another.
- **reported**: the values records carry in their ``metrics``, all of ONE ``source``
  (the one most records use; ``measured`` by the authors wins a tie with ``reported``),
  used only when this site measured nothing for the metric. They may have been computed
  in different ways; the ranking says so.

Models without a value under the chosen basis are listed after the ranked ones.

Ranking sits above the catalog: it reads through the catalog's ``evaluations`` and
``models`` stores, and hands the models store the order a ranked search uses
(:func:`search`, :class:`~synthmed.registry.catalog.ScoreOrder`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..catalog import Catalog, CatalogEntry, ScoreOrder
from ..errors import EvaluationError

#: site-measured metric -> which direction is better
BETTER = {"fd": "lower", "kid": "lower", "kid_std": "lower", "precision": "higher", "recall": "higher",
          "density": "higher", "coverage": "higher", "cmmd": "lower", "mmd_rbf": "lower", "frd": "lower", "ms_ssim_diversity": "lower",
          "ae_psnr": "higher", "ae_ms_ssim": "higher"}


@dataclass
class Ranking:
    metric: str
    basis: str                     # measured | reported | none
    key: str | None                # the comparability key (measured)
    source: str | None             # the records' metric source (reported)
    better: str | None
    values: dict[tuple[str, str], float]   # (upstream, id) -> value
    note: str
    other_keys: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        if self.basis == "measured":
            more = (f"; {len(self.other_keys)} other key(s) left out (--rank-key to choose)" if self.other_keys else "")
            return (f"ranked by {self.metric} ({self.better} is better), measured on this site under comparability "
                    f"key {(self.key or '')[:12]}: {self.note}{more}")
        if self.basis == "reported":
            return (f"ranked by {self.metric} ({self.better} is better) as the records report it "
                    f"(source: {self.source}): {self.note}")
        return self.note

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "basis": self.basis, "key": self.key, "source": self.source,
                "better": self.better, "note": self.note,
                "other_keys": [{"key": k["key"], "models": k["models"], "reference": k["reference"],
                                "extractor": k["extractor"]} for k in self.other_keys]}

    def order(self) -> ScoreOrder:
        """How a search ranked by this ranking orders its results: by the measured values,
        or by each record's own values of the chosen source."""
        return ScoreOrder(better="lower" if self.better == "lower" else "higher",
                          values=dict(self.values) if self.basis == "measured" else None,
                          metric=self.metric, source=self.source or "")

    def ordered(self) -> list[tuple[tuple[str, str], float]]:
        sign = 1 if self.better == "lower" else -1
        return sorted(self.values.items(), key=lambda kv: (sign * kv[1], kv[0]))


def choose(catalog: Catalog, metric: str, key: str | None = None) -> Ranking:
    """Which values ranking by ``metric`` compares (see the module's docstring); ``key`` (or
    a prefix of it) picks the comparability key of measured values."""
    metric = metric.strip().lower()
    keys = catalog.evaluations.evaluation_keys(metric)
    if key:
        chosen = [k for k in keys if str(k["key"]).startswith(key.strip().lower())]
        if len(chosen) != 1:
            known = ", ".join(f"{k['key'][:12]} ({k['models']} models)" for k in keys) or "none"
            raise EvaluationError(f"{'no' if not chosen else 'more than one'} comparability key of {metric!r} "
                                  f"starts with {key!r}", hint=f"keys measured on this site: {known}")
        keys = chosen + [k for k in keys if k is not chosen[0]]
    if keys:
        top = keys[0]
        rows = catalog.evaluations.measured_values(metric, top["key"])
        better = next(iter(rows.values()))["better"] if rows else BETTER.get(metric, "lower")
        return Ranking(metric, "measured", str(top["key"]), None, better,
                       {k: float(r["value"]) for k, r in rows.items()},
                       f"{len(rows)} model(s); reference {top['reference']}, extractor {top['extractor']}",
                       other_keys=keys[1:])
    # which source and direction most values of the metric have (every stored version counts:
    # counted when the records are written, so this is one probe at any catalog size)
    rows2 = catalog.models.metric_sources(metric)
    if not rows2:
        return Ranking(metric, "none", None, None, None, {}, f"no model reports or has measured {metric!r}")
    counts: dict[str, int] = {}
    for src, _, c in rows2:
        counts[src] = counts.get(src, 0) + c
    source = max(counts, key=lambda s: (counts[s], s == "measured", s))
    dirs = {b: c for src, b, c in rows2 if src == source}
    better = max(dirs, key=lambda b: (dirs[b], b))
    left = sum(c for s, c in counts.items() if s != source)
    note = f"{counts[source]} value(s)" + (f"; {left} value(s) of another source left out" if left else "")
    if len(dirs) > 1:
        note += f"; WARNING: records disagree on the direction of this metric (ranked as {better} is better)"
    note += "; computed by each record's authors, possibly in different ways"
    vals: dict[tuple[str, str], float] = {}
    return Ranking(metric, "reported", None, source, better, vals, note)


def reported_values(catalog: Catalog, ranking: Ranking) -> dict[tuple[str, str], float]:
    """(upstream, id) -> the best value of the ranking's source, for a ``reported`` ranking."""
    return catalog.models.reported_values(ranking.metric, ranking.source, ranking.better)


def ranked_values(catalog: Catalog, metric: str, key: str | None = None) -> tuple[Ranking, dict[tuple[str, str], float]]:
    """The ranking :func:`choose` picks and its values, ``(upstream, id) -> value``, for
    callers that rank outside SQL (``Generators.rank_models_by_performance``)."""
    ranking = choose(catalog, metric, key)
    if ranking.basis == "reported":
        return ranking, reported_values(catalog, ranking)
    return ranking, dict(ranking.values)


def search(catalog: Catalog, query: str = "", *, rank: str | Ranking | None = None,
           **filters: Any) -> list[CatalogEntry]:
    """The catalog's search (:meth:`ModelStore.search
    <synthmed.registry.catalog.models.ModelStore.search>`, same filters), ordered by
    ``rank`` when given (a metric name, or a :class:`Ranking` from :func:`choose`): best
    first, comparing only values of one basis (this site's measurements under one
    comparability key, or else the records' values of one source); models without such a
    value come last."""
    if not rank:
        return catalog.models.search(query, **filters)
    ranking = rank if isinstance(rank, Ranking) else choose(catalog, rank)
    return catalog.models.search(query, order=ranking.order(), **filters)
