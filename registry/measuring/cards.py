"""Quality cards: what ``synthmed show`` and the model page print of the values measured on
this site (the catalog's ``evaluations`` and ``audits`` stores), in one shape for both.

A card is one comparability key (and parameter set): one line of provenance (extractor,
whether it is trained, reference set name and size, n, seeds, parameters), the metrics with
their directions, and the full provenance as (path, value) pairs for a "details" element.
``kid_std`` is left out where it cannot vary (every KID subset is the whole of both sets).
The site-local part of a provenance (``site_local``: the path of a folder measured against)
is kept apart: ``show`` prints it on the site, the model page never does.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

#: the order metrics are listed in (others follow by name)
ORDER = ("fd", "frd", "kid", "kid_std", "precision", "recall", "density", "coverage", "mmd_rbf", "cmmd",
         "ms_ssim_diversity")
ARROW = {"lower": "↓", "higher": "↑"}
#: what an extractor's network was trained on, for values whose provenance does not say
#: (the extractor records of this repository's index)
NETWORK_TRAINING = {"synthmed-randconv-1": "untrained: random weights",
                    "inception-v3-fid": "trained on ImageNet"}
#: provenance fields that hold site-local data (never served)
SITE_LOCAL = "site_local"


def _loads(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def training_words(trained: bool, data: Any = None) -> str:
    """Whether an extractor is trained, and on what, in the words every output uses (CLI, JSON,
    reports, pages): "trained on X", or "NOT TRAINED: what it is instead" (an extractor record
    says "nothing: ..." for the data of an untrained one)."""
    said = str(data).strip() if data else ""
    if trained:
        return f"trained on {said}" if said else "trained"
    if said.lower().startswith("nothing:"):
        said = said.split(":", 1)[1].strip()
    return f"NOT TRAINED: {said}" if said else "NOT TRAINED"


def training_of(extractor: Mapping[str, Any]) -> str:
    """Whether an extractor is trained, and on what, as its provenance says (else as known)."""
    for k in ("training", "trained_on", "trained"):
        v = extractor.get(k)
        if isinstance(v, Mapping) and isinstance(v.get("trained"), bool):  # the extractor record's own words
            return training_words(v["trained"], v.get("data"))
        if isinstance(v, Mapping):
            v = v.get("summary") or v.get("data") or ", ".join(f"{a}: {b}" for a, b in v.items())
        if isinstance(v, bool):
            return training_words(v)
        if v:
            return str(v)
    return NETWORK_TRAINING.get(str(extractor.get("network")), "training not stated")


def kid_std_varies(provenance: Mapping[str, Any]) -> bool:
    """False where every KID subset is the whole of both sets (its std is round-off)."""
    kid = (provenance.get("metrics") or {}).get("kid") or {}
    size, subsets = kid.get("subset_size"), kid.get("subsets")
    n_real, n_gen = provenance.get("n_real"), provenance.get("n_generated")
    if not (isinstance(size, int) and isinstance(subsets, int) and isinstance(n_real, int)
            and isinstance(n_gen, int)):
        return True
    return bool(subsets > 1 and (size < n_real or size < n_gen))


def _reference_text(ref: Mapping[str, Any], n_real: Any, label: str | None) -> str:
    name = ref.get("name")
    if name:
        text = f"reference {name}"
    elif ref.get("identity"):
        text = f"reference folder dir:{str(ref['identity'])[:12]}"
    else:
        text = f"reference {label or '?'}"
    return f"{text} ({n_real if n_real is not None else ref.get('n', '?')} images)"


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "default parameters"


def provenance_line(provenance: Mapping[str, Any], params: Mapping[str, Any], *, reference: str | None = None,
                    extractor: str | None = None) -> str:
    """One line: extractor (and its training), reference set and size, n, seeds, parameters
    (``reference`` and ``extractor``: the row's labels, for a provenance that lacks them)."""
    ext = provenance.get("extractor") or {}
    seeds = provenance.get("seeds") or ["?", "?"]
    name = f"{ext['id']}@{ext.get('version', '?')}" if ext.get("id") else (extractor or "?")
    return (f"{name} ({training_of(ext)}), "
            f"{_reference_text(provenance.get('reference') or {}, provenance.get('n_real'), reference)}, "
            f"{provenance.get('n_generated', '?')} generated (seeds {seeds[0]}..{seeds[-1]}), {_params_text(params)}")


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A nested provenance as (dotted path, value) pairs, site-local fields left out."""
    if isinstance(obj, Mapping):
        out: list[tuple[str, str]] = []
        for k, v in sorted(obj.items()):
            if k == SITE_LOCAL and not prefix:
                continue
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(obj, list) and all(not isinstance(x, (Mapping, list)) for x in obj):
        return [(prefix, ", ".join(str(x) for x in obj) if obj else "[]")]
    if isinstance(obj, list):
        return [p for i, x in enumerate(obj) for p in flatten(x, f"{prefix}[{i}]")]
    return [(prefix, "null" if obj is None else str(obj))]


def _metric_order(name: str) -> tuple[int, str]:
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def evaluation_cards(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Cards from the catalog's evaluation rows (:meth:`EvaluationStore.evaluations_of`),
    one per (comparability key, parameters), newest first."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        params = _loads(r.get("params"))
        groups.setdefault((str(r.get("key")), json.dumps(params, sort_keys=True)), []).append(r)
    cards: list[dict[str, Any]] = []
    for (key, params_json), group in groups.items():
        prov = _loads(group[0].get("provenance"))
        prov = prov if isinstance(prov, Mapping) else {}
        params = json.loads(params_json) if params_json else {}
        params = params if isinstance(params, Mapping) else {}
        metrics: list[dict[str, Any]] = [
            {"name": str(r["metric"]), "value": float(r["value"]), "better": str(r["better"]),
             "arrow": ARROW.get(str(r["better"]), "")}
            for r in group if not (r["metric"] == "kid_std" and not kid_std_varies(prov))]
        metrics.sort(key=lambda m: _metric_order(str(m["name"])))
        cards.append({"key": key, "params": params, "when": max(str(r.get("finished", "")) for r in group),
                      "line": provenance_line(prov, params, reference=group[0].get("reference"),
                                              extractor=group[0].get("extractor")), "metrics": metrics, "details": flatten(prov),
                      "site_local": dict(prov.get(SITE_LOCAL) or {}), "reference": group[0].get("reference"),
                      "extractor": group[0].get("extractor")})
    cards.sort(key=lambda c: str(c["when"]), reverse=True)
    return cards


def audit_cards(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Cards from the catalog's audit rows (:meth:`AuditStore.latest_of`): verdict, one line
    of provenance, reasons, the headline numbers and the full provenance."""
    cards = []
    for r in rows:
        prov = _loads(r.get("provenance"))
        prov = prov if isinstance(prov, Mapping) else {}
        summary = _loads(r.get("summary"))
        summary = summary if isinstance(summary, Mapping) else {}
        v = summary.get("values") or {}
        ext = prov.get("extractor") or {}
        hold = f", held-out set {r['holdout']}" if r.get("holdout") else ", no held-out set"
        line = (f"training set {r.get('training')} ({v.get('n_training', '?')} images){hold}; {r.get('n')} samples "
                f"(seeds {r.get('seed')}..{int(r.get('seed') or 0) + int(r.get('n') or 0) - 1}), "
                f"{_params_text(_loads(r.get('params')) or {})}; features {ext.get('id', '?')}@{ext.get('version', '?')} "
                f"({training_of(ext)})")
        numbers = [("near-copies", f"{v.get('near_copies', '?')} of {v.get('n_generated', '?')}"
                    + (" (uninformative: the training set's own near-duplicate rate is "
                       f"{_fmt(v.get('training_near_duplicate_fraction'))})" if v.get("near_copy_uninformative") else "")),
                   ("max pixel similarity", _fmt(v.get("pixel_similarity_max"))),
                   ("pixel DCR / leave-one-out", _fmt(v.get("pixel_dcr_ratio"))),
                   ("feature DCR / leave-one-out", _fmt(v.get("feature_dcr_ratio"))),
                   ("authenticity", _fmt(v.get("authenticity")))]
        if "pixel_closer_to_training" in v:
            numbers.append(("closer to training than held-out (pixels, features)",
                            f"{_fmt(v.get('pixel_closer_to_training'))}, {_fmt(v.get('feature_closer_to_training'))}"))
        cards.append({"verdict": r.get("verdict"), "line": line, "reasons": list(summary.get("reasons") or []),
                      "numbers": numbers, "when": r.get("finished"), "key": r.get("key"),
                      "details": flatten(prov), "site_local": dict(prov.get(SITE_LOCAL) or {}),
                      "summary": summary, "provenance": prov})
    return cards


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{float(v):.3g}"
