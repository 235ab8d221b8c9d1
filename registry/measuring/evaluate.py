"""``synthmed evaluate``: measure a model against a reference set, the same way on every site.

One evaluation generates ``n`` samples (seeds ``seed .. seed+n-1``) of one 2-D image
output through the runner, computes their features with a pinned extractor (one feature
pass per extractor configuration and image set, cached: the reference set's under its
folder, the generated set's under ``<site>/cache/features/``), and computes:

- ``fd``: Fréchet distance of the features (FID when the extractor is the FID Inception);
  ``frd`` instead for a radiomics extractor (FRD v1: the log of the Fréchet distance of
  features standardised on the reference set, :mod:`.radiomics`)
- ``kid`` (and ``kid_std``, absent when every subset is the whole set and it cannot vary):
  unbiased polynomial-kernel MMD², mean over subsets
- ``precision``, ``recall`` (k = 3), ``density``, ``coverage`` (k = 5)
- ``mmd_rbf``: RBF-kernel MMD² as CMMD computes it (sigma 10, x1000, L2-normalised
  features); named ``cmmd`` only when the extractor's family is ``clip`` (CMMD is defined
  on CLIP embeddings)
- ``ms_ssim_diversity``: mean MS-SSIM of random pairs of generated images (lower = more diverse)

A radiomics extractor's KID, PRDC and RBF-MMD are computed on the standardised features
(raw radiomic features differ in scale by orders of magnitude).

Every value carries its provenance: implementation and version, extractor (id, version,
sha256, network, layer, input size, resize, channel and intensity rules), the reference
set's identity (hash of its file manifest) and size, n generated, the seed range, the KID
subsets and subset size, k, the kernel's parameters. The **comparability key** is the
sha256 of all of that (never the values, the model or its parameters): two values can be
compared exactly when their keys are equal; ranking (:mod:`.ranking`) compares only within one key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, cast

import numpy as np

from . import metrics as M
from .. import atomic
from ..errors import EvaluationError
from .extractors import Extractor, config_key, describe, open_extractor
from ..outputs import OutputSpec, canonical, preview, record_specs
from ..packages import prepare
from .cards import training_words
from .ranking import BETTER
from .radiomics import Item, RadiomicsExtractor, frd_v1, grey, standardise
from .reference_sets import ReferenceSet, list_references, open_reference
from .sanity import ExtractorChoice, open_chosen
from ..pipeline import open_runner
from ..runner import RunnerOptions, check_params
from ..stamps import synthmed_version, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from ..catalog import Catalog, CatalogEntry
    from ..settings import Settings

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class MetricSettings:
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    kid_seed: int = 0
    k_pr: int = 3
    k_dc: int = 5
    mmd_sigma: float = 10.0
    mmd_scale: float = 1000.0
    diversity_pairs: int = 500
    diversity_win: int = 7

    def describe(self) -> dict[str, Any]:
        return {"kid": {"subsets": self.kid_subsets, "subset_size": self.kid_subset_size, "seed": self.kid_seed,
                        "kernel": "polynomial (x.y/d + 1)^3", "estimator": "unbiased"},
                "prdc": {"k_precision_recall": self.k_pr, "k_density_coverage": self.k_dc, "distance": "euclidean",
                         "inside": "strictly less than the k-NN radius"},
                "mmd_rbf": {"kernel": "rbf", "sigma": self.mmd_sigma, "scale": self.mmd_scale, "features": "l2-normalised",
                         "estimator": "biased (CMMD)"},
                "ms_ssim_diversity": {"pairs": self.diversity_pairs, "win_size": self.diversity_win, "sigma": 1.5,
                                      "seed": 0}}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


#: the columns of a report table, in order (a key's table shows those it has)
REPORT_COLUMNS = ["fd", "frd", "kid", "precision", "recall", "density", "coverage", "mmd_rbf", "cmmd", "ms_ssim_diversity"]
#: the provenance fields the comparability key hashes (everything but the model, its
#: parameters and output, the image's value range, the synthmed version and the time)
KEYED = ("implementation", "extractor", "reference", "n_real", "n_generated", "seeds", "metrics", "encoding", "region")
#: how a generated sample becomes the image the extractor sees (reference files are read as stored)
ENCODING = ("8-bit picture as `generate --format png` writes it (registry/outputs.preview: the output's value "
            "range, or the window of a CT output), then the extractor's input rules")
#: how a generated volume becomes what FRD sees (reference volumes are read as frd-score reads NIfTI files)
VOLUME_ENCODING = ("the volume's values as `generate --format nifti` writes them (canonical (slices, rows, cols), "
                   "float32), spacing_mm as the voxel spacing (1 when absent)")


def comparability_key(provenance: Mapping[str, Any]) -> str:
    """sha256 of the provenance of a measurement without the model, its parameters and the
    time: what must be equal for two values to be comparable."""
    keyed = {k: v for k, v in provenance.items() if k in KEYED}
    return _digest(keyed)


@dataclass
class Evaluation:
    ref: str
    upstream: str
    model_id: str
    version: str
    sha256: str
    output: str
    params: dict[str, Any]
    values: dict[str, float]
    provenance: dict[str, Any]
    key: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: which extractor was used and why (the best-passing of the set's sanity checks, the
    #: default, or named); not part of the provenance: it says why, not how, it was measured
    choice: ExtractorChoice | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "upstream": self.upstream, "model": self.model_id, "version": self.version,
                "sha256": self.sha256, "output": self.output, "params": self.params, "values": self.values,
                "better": {k: BETTER[k] for k in self.values}, "key": self.key, "run": self.run,
                "extractor": {"ref": f"{self.provenance['extractor']['id']}@{self.provenance['extractor']['version']}",
                              "family": self.provenance["extractor"].get("family"),
                              "trained": (self.provenance["extractor"].get("training") or {}).get("trained"),
                              "trained_on": (self.provenance["extractor"].get("training") or {}).get("data"),
                              "says": extractor_words(self.provenance["extractor"])},
                "extractor_choice": self.choice.as_dict() if self.choice else None,
                "provenance": self.provenance}

    def store(self, catalog: "Catalog") -> None:
        with catalog.transaction():
            catalog.evaluations.record_evaluation(
                run=self.run, upstream=self.upstream, model_id=self.model_id, version=self.version,
                sha256=self.sha256, values={k: (v, BETTER[k]) for k, v in self.values.items()}, key=self.key,
                reference=self.provenance["reference"]["name"] or self.provenance["reference"]["identity"][:12],
                extractor=f"{self.provenance['extractor']['id']}@{self.provenance['extractor']['version']}",
                params=self.params, provenance=self.provenance, finished=self.provenance["finished"])


def keyed_provenance(reference: ReferenceSet, extractor: Extractor, n: int, seed: int,
                     ms: MetricSettings, spec: OutputSpec | None = None,
                     mask: OutputSpec | None = None) -> dict[str, Any]:
    """The part of a measurement's provenance its comparability key hashes; known before
    anything is generated (so a scheduled run can tell what it measured already). A volume or
    a mask region adds ``region`` (and a volume its encoding); a 2-D whole image adds nothing."""
    msd = ms.describe()
    msd["kid"]["subset_size"] = min(ms.kid_subset_size, n, len(reference.files))  # capped at the smaller set
    out: dict[str, Any] = {"implementation": M.IMPLEMENTATION, "extractor": describe(extractor.record),
           "reference": reference.describe(), "n_real": len(reference.files), "n_generated": int(n),
           "seeds": [int(seed), int(seed + n - 1)], "metrics": msd, "encoding": ENCODING}
    volume = spec is not None and spec.dims == 3
    if volume:
        out["encoding"] = VOLUME_ENCODING
    if volume or mask is not None:
        out["region"] = ({"rule": "mask", "mask_output": mask.name, "reference": "each image's mask (reference add --masks)"}
                         if mask is not None else {"rule": "whole image but its first voxel (frd-score without a mask)"})
        out["region"]["dims"] = 3 if volume else 2
    return out


def pick_output(entry: "CatalogEntry", name: str | None, *, volumes: bool = False) -> OutputSpec:
    """The output to measure: ``name``, else the first 2-D image, else the first 2-D output of
    any kind (a mask generator's masks); a 3-D output only by ``name`` and when ``volumes`` (a
    radiomics extractor measures volumes). Models that need array inputs are refused: an
    evaluation generates from seeds alone."""
    arrays = [str(a.get("name")) for a in entry.record.data.get("array_inputs") or []]
    if arrays:
        raise EvaluationError(f"{entry.qualified_ref} needs array input(s) {', '.join(arrays)}; synthmed evaluate "
                              "generates from seeds alone",
                              hint="evaluate a model (or pipeline) that makes its inputs itself")
    specs = record_specs(entry.record)
    two_d = [s for s in specs if s.dims == 2]
    if name:
        for s in specs:
            if s.name == name:
                if s.dims == 3 and volumes:
                    return s
                if s.dims != 2:
                    raise EvaluationError(f"{entry.qualified_ref}: output {name!r} is {s.dims}-D; this extractor "
                                          "measures 2-D outputs", hint="measure volumes with --extractor frd-radiomics; "
                                          f"2-D outputs: {', '.join(o.name for o in two_d) or 'none'}")
                return s
        raise EvaluationError(f"{entry.qualified_ref} has no output {name!r}",
                              hint=f"its outputs: {', '.join(s.name for s in specs)}")
    if not two_d:
        raise EvaluationError(f"{entry.qualified_ref} has no 2-D output to evaluate",
                              hint="synthmed evaluate measures 2-D images (volumes are not evaluated)")
    return next((s for s in two_d if s.kind == "image"), two_d[0])


def mask_output(entry: "CatalogEntry", spec: OutputSpec) -> OutputSpec | None:
    """The mask the model makes for output ``spec``: the mask output whose ``segments`` names
    it, else the one undeclared mask output of its dimensionality and size; None when there is
    none; refused when several could be (the record should say with ``segments``)."""
    outs = {str(o.get("name")): o for o in entry.record.data.get("outputs") or []}
    masks = [s for s in record_specs(entry.record) if s.is_mask and s.name != spec.name]
    declared = [s for s in masks if outs.get(s.name, {}).get("segments") == spec.name]
    if declared:
        return declared[0]
    same = [s for s in masks if not outs.get(s.name, {}).get("segments") and s.dims == spec.dims
            and tuple(s.shape[:s.dims]) == tuple(spec.shape[:spec.dims])]
    if len(same) > 1:
        raise EvaluationError(f"{entry.qualified_ref}: masks {', '.join(s.name for s in same)} could each be the region "
                              f"of output {spec.name!r}", hint="the record must say which with the mask output's "
                                                               f"\"segments\": \"{spec.name}\"")
    return same[0] if same else None


def region_for(entry: "CatalogEntry", spec: OutputSpec, reference: ReferenceSet,
               extractor: Extractor) -> OutputSpec | None:
    """The rule of what FRD measures: the model's mask of the output exactly when the reference
    set has masks (both sides on their regions), else both whole; a volume against volumes."""
    if (spec.dims == 3) != reference.has_volumes:
        raise EvaluationError(f"{entry.qualified_ref}: output {spec.name!r} is {spec.dims}-D and reference "
                              f"{reference.label} holds {'volumes' if reference.has_volumes else '2-D images'}",
                              hint="measure a volume output against a reference set of NIfTI volumes, a 2-D output "
                                   "against pictures")
    if not reference.has_masks:
        return None
    if not extractor.record.is_radiomics:
        raise EvaluationError(f"reference {reference.label} has masks; only a radiomics extractor measures mask regions",
                              hint="--extractor frd-radiomics")
    mask = mask_output(entry, spec)
    if mask is None:
        raise EvaluationError(f"reference {reference.label} has masks, and {entry.qualified_ref} makes no mask for its "
                              f"output {spec.name!r}", hint="FRD on mask regions needs masks on both sides: measure "
                                                             "against a reference set without masks (whole images)")
    return mask


def generate_items(settings: "Settings", entry: "CatalogEntry", spec: OutputSpec, mask: OutputSpec | None, n: int,
                   seed: int, params: Mapping[str, Any], progress: Callable[[str], None]
                   ) -> tuple[str, list[Item], np.ndarray | None, dict[str, Any]]:
    """(package sha256, n radiomics items, the 8-bit pictures of a 2-D output or None, checked
    params): a 2-D sample as its 8-bit picture (as :func:`generate`), a volume as its values with
    its spacing (as ``generate --format nifti`` writes it), each with the model's mask of it."""
    package = prepare(entry, settings)
    items: list[Item] = []
    pictures = []
    spacing = tuple(float(v) for v in reversed(spec.spacing_mm)) if spec.spacing_mm else (1.0,) * spec.dims
    with open_runner(package, RunnerOptions.from_settings(settings)) as runner:
        checked = runner.check_params(dict(params))
        for _, batch in runner.iter_batches(list(range(seed, seed + n)), checked):
            for i, a in enumerate(np.asarray(batch[spec.name])):
                m = canonical(np.asarray(batch[mask.name])[i], mask) if mask is not None else None
                if spec.dims == 3:
                    items.append(Item(grey(canonical(a, spec), 3), spacing, None, None, m))
                else:
                    pictures.append(preview(a, spec))
                    items.append(Item(grey(pictures[-1], 2), (1.0, 1.0), None, None, m))
            progress(f"evaluate: {entry.qualified_ref}: {len(items)}/{n} samples")
    return package.sha256, items, (np.stack(pictures) if pictures else None), dict(checked)


def generate(settings: "Settings", entry: "CatalogEntry", spec: OutputSpec, n: int, seed: int,
             params: Mapping[str, Any], progress: Callable[[str], None]) -> tuple[str, np.ndarray, dict[str, Any]]:
    """(package sha256, n samples of the output as 8-bit pictures, checked params). A sample is
    measured as the picture `generate --format png` writes (:func:`~synthmed.registry.outputs.preview`:
    its value range, or the window of a CT output), so it meets reference images on their terms."""
    package = prepare(entry, settings)
    with open_runner(package, RunnerOptions.from_settings(settings)) as runner:
        checked = runner.check_params(dict(params))
        chunks = []
        done = 0
        for _, batch in runner.iter_batches(list(range(seed, seed + n)), checked):
            arr = np.asarray(batch[spec.name])
            chunks.append(np.stack([preview(a, spec) for a in arr]))
            done += len(arr)
            progress(f"evaluate: {entry.qualified_ref}: {done}/{n} samples")
    return package.sha256, np.concatenate(chunks), dict(checked)


def evaluate(settings: "Settings", entry: "CatalogEntry", reference: ReferenceSet, extractor: Extractor, *,
             n: int = 500, seed: int = 0, params: Mapping[str, Any] | None = None, output: str | None = None,
             ms: MetricSettings | None = None, progress: Callable[[str], None] = lambda m: None) -> Evaluation:
    """Measure one model version against one reference set with one extractor."""
    ms = ms or MetricSettings()
    if n < max(ms.k_dc, ms.k_pr) + 1:
        raise EvaluationError(f"-n {n} is too small: precision/recall and density/coverage need more than "
                              f"{max(ms.k_dc, ms.k_pr)} generated samples", hint="use -n 50 or more")
    spec = pick_output(entry, output, volumes=extractor.record.is_radiomics)
    mask = region_for(entry, spec, reference, extractor)
    ckey = config_key(extractor)
    ref_feats = reference.features(extractor, ckey)
    progress(f"evaluate: reference {reference.label}: {len(ref_feats)} images")
    sha, gen_feats, images, checked = generated_features(settings, entry, spec, extractor, ckey, n, seed,
                                                          dict(params or {}), progress, mask)
    values = feature_values(extractor, ref_feats, gen_feats, ms)
    div_images = images if images is not None else None
    if div_images is not None and min(div_images.shape[1:3]) >= ms.diversity_win:
        values["ms_ssim_diversity"] = M.ms_ssim_diversity(div_images, data_range=255.0,
                                                          pairs=ms.diversity_pairs, win_size=ms.diversity_win)["ms_ssim_diversity"]
    provenance = {
        **keyed_provenance(reference, extractor, n, seed, ms, spec, mask),
        "image": {"value_range": list(spec.value_range), "window": list(spec.window) if spec.window else None},
        "model": {"upstream": entry.upstream, "id": entry.id, "version": entry.version, "sha256": sha},
        "params": checked, "output": spec.name, "synthmed": synthmed_version(), "finished": utcnow(),
    }
    if reference.name is None:  # a folder: where it is on this site (shown by `show`, never served)
        provenance["site_local"] = {"reference": str(reference.source)}
    return Evaluation(f"{entry.upstream}/{entry.id}@{entry.version}", entry.upstream, entry.id, entry.version, sha,
                      spec.name, checked, {k2: float(v) for k2, v in values.items()}, provenance,
                      comparability_key(provenance))


def extractor_words(described: Mapping[str, Any]) -> str:
    """What a provenance's extractor is, in words: its family, and whether (and on what) it was trained."""
    t = described.get("training") or {}
    return f"{described.get('family', 'unknown')} features, {training_words(bool(t.get('trained')), t.get('data'))}"


def mmd_name(extractor: Extractor) -> str:
    """``cmmd`` only on a CLIP extractor's embeddings (what CMMD is defined on); ``mmd_rbf`` otherwise."""
    return "cmmd" if extractor.record.family == "clip" else "mmd_rbf"


def feature_values(extractor: Extractor, ref_feats: np.ndarray, gen_feats: np.ndarray,
                   ms: MetricSettings) -> dict[str, float]:
    """The feature metrics of one generated set against the reference, named for what they are."""
    values: dict[str, float] = {}
    if extractor.record.is_radiomics:
        values["frd"] = frd_v1(ref_feats, gen_feats)
        ref_feats, gen_feats = (np.asarray(f, dtype=np.float64) for f in standardise(ref_feats, gen_feats))
    else:
        values["fd"] = M.frechet_distance(ref_feats, gen_feats)
    k = M.kid(ref_feats, gen_feats, subsets=ms.kid_subsets, subset_size=ms.kid_subset_size, seed=ms.kid_seed)
    values["kid"] = k["kid"]
    if k["subset_size"] < max(len(ref_feats), len(gen_feats)) and ms.kid_subsets > 1:
        values["kid_std"] = k["kid_std"]  # when every subset is the whole of both sets it cannot vary: not reported
    values.update(M.prdc(ref_feats, gen_feats, k_pr=ms.k_pr, k_dc=ms.k_dc))
    values[mmd_name(extractor)] = M.mmd_rbf(ref_feats, gen_feats, sigma=ms.mmd_sigma, scale=ms.mmd_scale)
    return values


def generated_features(settings: "Settings", entry: "CatalogEntry", spec: OutputSpec, extractor: Extractor,
                       ckey: str, n: int, seed: int, params: dict[str, Any], progress: Callable[[str], None],
                       mask: OutputSpec | None = None) -> tuple[str, np.ndarray, np.ndarray | None, dict[str, Any]]:
    """(package sha256, features, images or None, checked params) of the generated set, from
    the cache when this exact set was measured with this extractor configuration before
    (evaluate and audit share it; the images come back from it when they were small enough
    to keep, else None and a caller that needs them makes them again)."""
    sha = entry.record.sha256 or ""
    ident: dict[str, Any] = {"sha256": sha, "output": spec.name, "params": params, "seeds": [seed, seed + n - 1]}
    if mask is not None or spec.dims == 3:
        ident["region"] = {"mask": mask.name if mask is not None else None, "dims": spec.dims}
    set_id = _digest(ident)
    cache = settings.features_cache_dir / ckey / f"{set_id[:40]}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                feats = np.asarray(z["features"])
                imgs = np.asarray(z["images"]) if "images" in z.files else None
                checked = json.loads(str(z["params"]))
            if len(feats) == n:
                progress(f"evaluate: {entry.qualified_ref}: features from the cache")
                return sha, feats, imgs, checked
        except (OSError, ValueError, KeyError) as exc:
            log.warning("feature cache %s unreadable (%s); computing again", cache, exc)
    images: np.ndarray | None
    if mask is not None or spec.dims == 3:  # radiomics on a region or a volume (region_for checked the extractor)
        sha, items, images, checked = generate_items(settings, entry, spec, mask, n, seed, params, progress)
        feats = cast(RadiomicsExtractor[Any], extractor).item_features(items)
    else:
        sha, images, checked = generate(settings, entry, spec, n, seed, params, progress)
        feats = extractor.features(images, (0.0, 255.0))
    arrays: dict[str, np.ndarray] = {"features": feats, "params": np.array(json.dumps(checked, sort_keys=True))}
    if images is not None and images.nbytes <= 64 << 20:
        arrays["images"] = images
    with atomic.atomic_file(cache, parents=True) as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return sha, feats, images, checked


# -- a site's evaluations: the CLI and the daemon's nightly run ----------------------------------


def already_measured(catalog: "Catalog", entry: "CatalogEntry", key: str, params: Mapping[str, Any]) -> bool:
    p = json.dumps(dict(params), sort_keys=True)
    return any(e["key"] == key and e["params"] == p
               for e in catalog.evaluations.evaluations_of(entry.upstream, entry.id, entry.version, entry.record.sha256))


def write_report(evals: list[Evaluation], failures: list[dict[str, str]], folder: Path) -> Path:
    """``evaluation.json`` (every value with its provenance) and ``evaluation.md`` (a table
    per comparability key) in ``folder``; returns the Markdown file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evaluation.json").write_text(json.dumps(
        {"format": "synthmed-evaluation-report/1", "evaluations": [e.as_dict() for e in evals],
         "failures": failures}, indent=1, sort_keys=True) + "\n")
    lines = ["# Measured quality (synthmed evaluate)", "",
             "Values under one comparability key were measured the same way (extractor and its rules, "
             "reference set, sample counts, seeds, metric settings) and may be compared; values under "
             "different keys may not.", ""]
    by_key: dict[str, list[Evaluation]] = {}
    for e in evals:
        by_key.setdefault(e.key, []).append(e)
    for key, group in by_key.items():
        p = group[0].provenance
        cols = [c for c in REPORT_COLUMNS if any(c in e.values for e in group)]
        lines += [f"## key {key[:12]}", "",
                  f"reference `{p['reference']['name'] or p['reference']['identity'][:12]}` ({p['n_real']} images, "
                  f"identity {p['reference']['identity'][:12]}), extractor `{p['extractor']['id']}@"
                  f"{p['extractor']['version']}` ({extractor_words(p['extractor'])}; sha256 "
                  f"{str(p['extractor']['sha256'])[:12]}, layer {p['extractor']['layer']}), {p['n_generated']} generated (seeds {p['seeds'][0]}..{p['seeds'][1]}), "
                  f"KID {p['metrics']['kid']['subsets']} subsets of {p['metrics']['kid']['subset_size']}", ""]
        whys = sorted({e.choice.why for e in group if e.choice is not None})
        lines += [f"extractor {why}" for why in whys] + ([""] if whys else [])
        lines += [
                  "| model | params | " + " | ".join(cols) + " |", "|" + " --- |" * (len(cols) + 2)]
        for e in group:
            params = ", ".join(f"{k}={v}" for k, v in sorted(e.params.items())) or "-"
            vals = " | ".join("-" if c not in e.values else f"{e.values[c]:.4g}" for c in cols)
            lines.append(f"| {e.ref} | {params} | {vals} |")
        lines.append("")
    if failures:
        lines += ["## not measured", ""] + [f"- {f['model']} vs {f['reference']}: {f['reason']}" for f in failures] + [""]
    if not evals and not failures:
        lines += ["Nothing was measured (no reference set on this site, or every model was measured already).", ""]
    md = folder / "evaluation.md"
    md.write_text("\n".join(lines))
    return md


def nightly_evaluations(settings: "Settings", catalog: "Catalog", entries: list["CatalogEntry"],
                        report_dir: Path, *, extractor_ref: str | None = None, n: int = 200,
                        progress: Callable[[str], None] = lambda m: None) -> tuple[list[Evaluation], list[dict[str, str]]]:
    """Evaluate each entry (with its default parameters) against each of the site's
    reference sets, skipping what was measured already under the same key; results go to
    the catalog and to ``report_dir/evaluation.{json,md}``. A model that fails is noted
    and the others go on."""
    names = list_references(settings)
    evals: list[Evaluation] = []
    failures: list[dict[str, str]] = []
    if not names:
        return evals, failures
    named = open_extractor(catalog, settings, extractor_ref) if extractor_ref else None
    for name in names:
        reference = open_reference(settings, name)
        if named is not None:
            extractor = named
            choice = ExtractorChoice(named.record.ref, f"{named.record.ref}: named in site.toml [evaluation] extractors")
        else:  # the best-passing extractor of the set's sanity checks, else the default (and it says so)
            extractor, choice = open_chosen(catalog, settings, reference)
        progress(f"evaluate: {reference.label}: extractor {choice.why}")
        key = comparability_key(keyed_provenance(reference, extractor, n, 0, MetricSettings()))
        for entry in entries:
            try:
                pick_output(entry, None)  # refuses a model without a 2-D image output
                params = dict(check_params(entry.record, {}))
                if already_measured(catalog, entry, key, params):
                    continue
                ev = evaluate(settings, entry, reference, extractor, n=n, progress=progress)
                ev.choice = choice
                ev.store(catalog)
                evals.append(ev)
            except EvaluationError as exc:
                failures.append({"model": entry.qualified_ref, "reference": name, "reason": exc.message})
            except Exception as exc:  # one model's failure never stops the others
                log.warning("evaluate %s against %s failed", entry.qualified_ref, name, exc_info=True)
                failures.append({"model": entry.qualified_ref, "reference": name,
                                 "reason": f"{type(exc).__name__}: {exc}"})
    write_report(evals, failures, report_dir)
    return evals, failures
