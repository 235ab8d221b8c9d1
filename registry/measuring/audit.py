"""``synthmed audit``: does a model give back the images it was trained on?

One audit generates ``n`` samples (seeds ``seed .. seed+n-1``) of one 2-D output, as the
8-bit pictures ``generate --format png`` writes (the output's window applied), and compares
them with a training set (a site-local reference set or a folder, as ``evaluate
--reference`` takes) and, optionally, a held-out set of real images of the same kind, in
pixel space and in a pinned extractor's feature space (:mod:`.memorisation` holds the
statistics and the verdict's thresholds).

Site-local data never leaves the site: an audit's result (:meth:`Audit.as_dict`, the
catalog's ``audits`` table, reports) carries statistics, seeds and indices into the
training set's manifest, never an image, a file name or a feature; where a folder was
audited against, its path is kept under ``site_local`` (shown by ``synthmed show`` on the
site, never served). :func:`write_matches` writes pictures of the flagged pairs into a
local folder for a person to look at.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ..errors import EvaluationError, SynthmedError
from ..stamps import synthmed_version, utcnow
from . import memorisation as MM
from .evaluate import config_key, generate, generated_features, pick_output
from ..runner import check_params
from .extractors import Extractor, describe, open_extractor
from .reference_sets import ReferenceSet, open_reference

if TYPE_CHECKING:  # pragma: no cover
    from ..catalog import Catalog, CatalogEntry
    from ..settings import Settings

log = logging.getLogger(__name__)

#: longest side of the images compared pixel by pixel (larger outputs are shrunk, area-averaged)
PIXEL_SIDE = 64
#: fewest samples an audit draws
MIN_SAMPLES = 10
#: the provenance fields an audit's key hashes (what must be equal for two audits to be the same
#: measurement; the pixel rules follow from the implementation, the model's output and the sets)
KEYED = ("implementation", "thresholds", "training", "holdout", "extractor", "n_generated", "seeds")


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def set_label(ref: ReferenceSet | None) -> str | None:
    """How a result names a set: its name, or ``dir:`` and the first 12 digits of its identity."""
    return None if ref is None else ref.label


def describe_set(ref: ReferenceSet | None) -> dict[str, Any] | None:
    return None if ref is None else ref.describe()


def pixel_rules(spec_shape: tuple[int, int], channels: int) -> dict[str, Any]:
    h, w = spec_shape
    scale = min(1.0, PIXEL_SIDE / max(h, w))
    return {"size": [max(1, round(h * scale)), max(1, round(w * scale))], "channels": channels,
            "resize": "PIL: box filter when shrinking, bilinear when enlarging (reference images to the sample size first)",
            "grey": "ITU-R 601 luma when either side is grey",
            "similarity": "Pearson correlation of the pixels, best over flips and rotations",
            "transforms": list(MM.TRANSFORMS if h == w else MM.TRANSFORMS[:4])}


def _to_unit(a: np.ndarray, value_range: tuple[float, float], channels: int) -> np.ndarray:
    """An image (h, w[, c]) -> float (h, w, channels) in [0, 1]."""
    lo, hi = float(value_range[0]), float(value_range[1])
    x = (np.asarray(a, dtype=np.float64) - lo) / ((hi - lo) or 1.0)
    x = np.clip(x, 0.0, 1.0)
    if x.ndim == 2:
        x = x[:, :, None]
    x = x[:, :, :3] if x.shape[2] >= 3 else x[:, :, :1]
    if channels == 1 and x.shape[2] == 3:
        x = (x * np.array([0.299, 0.587, 0.114])).sum(axis=2, keepdims=True)
    elif channels == 3 and x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return x


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    h, w = size
    if x.shape[:2] == (h, w):
        return x
    shrink = x.shape[0] >= h and x.shape[1] >= w
    filt = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    return np.stack([np.asarray(Image.fromarray(x[:, :, c].astype(np.float32), mode="F").resize((w, h), filt))
                     for c in range(x.shape[2])], axis=2).astype(np.float64)


def prepare_pixels(images: list[tuple[np.ndarray, tuple[float, float]]], sample_size: tuple[int, int],
                   rules: Mapping[str, Any]) -> np.ndarray:
    """Images of any size and range -> (N, h, w, c) in [0, 1] at the comparison size: first to
    the samples' size (so a reference image meets a sample as it would be drawn), then down."""
    size = (int(rules["size"][0]), int(rules["size"][1]))
    return np.stack([_resize(_resize(_to_unit(a, vr, int(rules["channels"])), sample_size), size) for a, vr in images])


@dataclass
class Audit:
    upstream: str
    model_id: str
    version: str
    sha256: str
    output: str
    params: dict[str, Any]
    verdict: str
    reasons: list[str]
    values: dict[str, Any]
    near_copies: list[dict[str, Any]]
    provenance: dict[str, Any]
    key: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def ref(self) -> str:
        return f"{self.upstream}/{self.model_id}@{self.version}"

    def as_dict(self) -> dict[str, Any]:
        """The audit as a report carries it: statistics, seeds and training indices only."""
        prov = {k: v for k, v in self.provenance.items() if k != "site_local"}
        return {"ref": self.ref, "upstream": self.upstream, "model": self.model_id, "version": self.version,
                "sha256": self.sha256, "output": self.output, "params": self.params, "verdict": self.verdict,
                "reasons": self.reasons, "values": self.values, "near_copies": self.near_copies, "key": self.key,
                "run": self.run, "provenance": prov}

    def store(self, catalog: "Catalog") -> None:
        p = self.provenance
        with catalog.transaction():
            catalog.audits.record_audit(
                run=self.run, upstream=self.upstream, model_id=self.model_id, version=self.version, sha256=self.sha256,
                verdict=self.verdict, training=p["training_label"], holdout=p.get("holdout_label"),
                extractor=f"{p['extractor']['id']}@{p['extractor']['version']}", n=p["n_generated"],
                seed=p["seeds"][0], params=self.params, key=self.key,
                summary={"reasons": self.reasons, "values": self.values, "near_copies": self.near_copies},
                provenance=p, finished=p["finished"])


@dataclass
class AuditPictures:
    """What :func:`write_matches` draws from (kept in memory only, never stored)."""

    samples: np.ndarray      # (N, h, w, c) in [0, 1] at the comparison size
    training: np.ndarray     # (M, h, w, c) likewise
    closest: list[dict[str, Any]]


def keyed_provenance(training: ReferenceSet, holdout: ReferenceSet | None, extractor: Extractor, n: int,
                     seed: int, rules: Mapping[str, Any]) -> dict[str, Any]:
    return {"implementation": MM.IMPLEMENTATION, "thresholds": dict(MM.THRESHOLDS),
            "training": describe_set(training), "holdout": describe_set(holdout),
            "extractor": describe(extractor.record), "n_generated": int(n), "seeds": [int(seed), int(seed + n - 1)],
            "pixels": dict(rules)}


def audit_key(provenance: Mapping[str, Any]) -> str:
    return _digest({k: provenance.get(k) for k in KEYED})


def _check_sets(training: ReferenceSet, holdout: ReferenceSet | None) -> None:
    if holdout is None:
        return
    shared = {f["sha256"] for f in training.files} & {f["sha256"] for f in holdout.files}
    if shared:
        raise EvaluationError(f"the held-out set {holdout.label} shares {len(shared)} image(s) with the training set "
                              f"{training.label}", hint="the held-out set must be real images the model was NOT "
                                                        "trained on; remove the shared files or pick another set")


def run_audit(settings: "Settings", entry: "CatalogEntry", training: ReferenceSet, extractor: Extractor, *,
              holdout: ReferenceSet | None = None, n: int = 200, seed: int = 0,
              params: Mapping[str, Any] | None = None, output: str | None = None,
              progress: Callable[[str], None] = lambda m: None) -> tuple[Audit, AuditPictures]:
    """Audit one model version against a training set (and a held-out set)."""
    if n < MIN_SAMPLES:
        raise EvaluationError(f"-n {n} is too small for an audit", hint=f"use -n {MIN_SAMPLES} or more (default 200)")
    _check_sets(training, holdout)
    spec = pick_output(entry, output)
    progress(f"audit: reading {len(training.files)} training images of {training.label}")
    train_imgs = training.load_images()
    hold_imgs = holdout.load_images() if holdout is not None else None
    # the samples' features (and the samples) from evaluate's cache when this set was made before
    sha, s_feat, cached, checked = generated_features(settings, entry, spec, extractor, config_key(extractor), n, seed,
                                                      dict(params or {}), progress)
    samples = cached if cached is not None else generate(settings, entry, spec, n, seed, dict(checked), progress)[1]
    m, rules, s_px, t_px = measure_pictures(samples, list(range(seed, seed + n)), training, train_imgs, extractor,
                                            holdout, hold_imgs, progress, s_feat=s_feat)
    verdict, reasons = MM.verdict(m.values)
    site_local = {k: str(r.source) for k, r in (("training", training), ("holdout", holdout))
                  if r is not None and r.name is None}
    provenance = {
        **keyed_provenance(training, holdout, extractor, n, seed, rules),
        "training_label": set_label(training), "holdout_label": set_label(holdout),
        "image": {"value_range": list(spec.value_range), "window": list(spec.window) if spec.window else None},
        "model": {"upstream": entry.upstream, "id": entry.id, "version": entry.version, "sha256": sha},
        "params": checked, "output": spec.name, "synthmed": synthmed_version(), "finished": utcnow(),
    }
    if site_local:
        provenance["site_local"] = site_local
    audit = Audit(entry.upstream, entry.id, entry.version, sha, spec.name, checked, verdict, reasons,
                  _rounded(m.values), [{k: p[k] for k in ("seed", "training_index", "similarity", "transform")}
                                       for p in m.nearest], provenance, audit_key(provenance))
    return audit, AuditPictures(s_px, t_px, m.nearest or m.closest)


def measure_pictures(samples: np.ndarray, seeds: list[int], training: ReferenceSet,
                     train_imgs: list[tuple[np.ndarray, tuple[float, float]]], extractor: Extractor,
                     holdout: ReferenceSet | None = None,
                     hold_imgs: list[tuple[np.ndarray, tuple[float, float]]] | None = None,
                     progress: Callable[[str], None] = lambda m: None, *, s_feat: np.ndarray | None = None
                     ) -> tuple[MM.Measures, dict[str, Any], np.ndarray, np.ndarray]:
    """The audit's numbers for samples given as 8-bit pictures ``(N, rows, cols[, c])`` (made
    now by :func:`run_audit`, or read from a dataset's files by :func:`audit_pictures`), each
    with its seed: (measures, pixel rules, samples and training at the comparison size).
    ``s_feat``: the samples' features where they are known already (evaluate's cache)."""
    rows, cols = samples.shape[1], samples.shape[2]
    grey = samples.ndim == 3 or samples.shape[3] == 1 or any(
        a.ndim == 2 or a.shape[2] < 3 for a, _ in train_imgs + (hold_imgs or []))
    rules = pixel_rules((rows, cols), 1 if grey else 3)
    progress("audit: comparing pixels and features")
    s_px = prepare_pixels([(a, (0.0, 255.0)) for a in samples], (rows, cols), rules)
    t_px = prepare_pixels(train_imgs, (rows, cols), rules)
    ckey = config_key(extractor)
    if s_feat is None:
        s_feat = extractor.features(samples, (0.0, 255.0))
    t_feat = training.features(extractor, ckey)
    h_px = h_feat = None
    if holdout is not None and hold_imgs is not None:
        h_px = prepare_pixels(hold_imgs, (rows, cols), rules)
        h_feat = holdout.features(extractor, ckey)
    return MM.measure(s_px, t_px, s_feat, t_feat, seeds, h_px, h_feat), rules, s_px, t_px


def audit_pictures(samples: np.ndarray, seeds: list[int], training: ReferenceSet, extractor: Extractor, *,
                   holdout: ReferenceSet | None = None,
                   progress: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """The audit of pictures that already exist (a dataset's own files, as 8-bit pictures), as
    a dataset record keeps it: verdict, reasons, numbers, the training set's label and size,
    the sample count, synthmed's version and the date. Statistics only, never an image."""
    if len(samples) < MIN_SAMPLES:
        raise EvaluationError(f"{len(samples)} items are too few for a memorisation audit",
                              hint=f"audit a dataset of {MIN_SAMPLES} items or more")
    _check_sets(training, holdout)
    progress(f"audit: reading {len(training.files)} training images of {training.label}")
    train_imgs = training.load_images()
    hold_imgs = holdout.load_images() if holdout is not None else None
    m, _, _, _ = measure_pictures(samples, seeds, training, train_imgs, extractor, holdout, hold_imgs, progress)
    verdict, reasons = MM.verdict(m.values)
    out: dict[str, Any] = {
        "verdict": verdict, "reasons": reasons,
        "numbers": {**_rounded(m.values), "extractor": f"{extractor.record.id}@{extractor.record.version}",
                    "thresholds": dict(MM.THRESHOLDS)},
        "training": {"name": set_label(training), "size": len(training.files)},
        "n_samples": int(len(samples)), "synthmed_version": synthmed_version(), "date": utcnow(),
    }
    if holdout is not None:
        out["numbers"]["holdout"] = {"name": set_label(holdout), "size": len(holdout.files)}
    return out


def _rounded(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (round(float(v), 6) if isinstance(v, float) else v) for k, v in values.items()}


def check_matches_folder(settings: "Settings", folder: Path) -> Path:
    """``--matches DIR`` must lie outside the site folder (nothing under it is served or exported
    by mistake) and not be a file."""
    d = Path(folder).expanduser().resolve()
    home = Path(settings.home).resolve()
    if d == home or home in d.parents:
        raise EvaluationError(f"--matches {folder}: it lies inside the site folder {home}",
                              hint="pictures of training images must stay in a private folder of your own, "
                                   "outside the site, e.g. --matches ~/audit-matches")
    if d.exists() and not d.is_dir():
        raise EvaluationError(f"--matches {folder}: it is a file, not a folder", hint="name a folder")
    return d


def write_matches(audit: Audit, pictures: AuditPictures, folder: Path) -> list[Path]:
    """Side-by-side PNGs (sample | sample turned as matched | training image) of the flagged
    pairs, or of the most similar pairs when none was flagged, and a README; returns the files."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    flagged = bool(audit.near_copies)
    for rank, p in enumerate(pictures.closest[:100]):
        s = pictures.samples[p["sample"]]
        parts = [s, MM.transform(s, p["transform"]), pictures.training[p["training_index"]]]
        gap = np.ones((s.shape[0], 2, s.shape[2]))
        row = np.concatenate([parts[0], gap, parts[1], gap, parts[2]], axis=1)
        scale = max(1, 128 // s.shape[0])
        px = (np.clip(row, 0, 1) * 255).round().astype(np.uint8).repeat(scale, 0).repeat(scale, 1)
        name = (f"{'flagged' if flagged else 'closest'}-{rank:03d}-seed{p['seed']}-train{p['training_index']}-"
                f"sim{p['similarity']:.3f}.png")
        Image.fromarray(px[:, :, 0] if px.shape[2] == 1 else px).save(folder / name)
        out.append(folder / name)
    readme = folder / "README.txt"
    readme.write_text(
        f"synthmed audit of {audit.ref} (verdict {audit.verdict}, run {audit.run}).\n"
        f"{'Flagged pairs (near-copies)' if flagged else 'No near-copy: the most similar pairs'}: each picture shows "
        "the sample, the sample turned as it matched, and the training image, at the comparison size.\n"
        "These pictures show site-local training images: keep them on this site, do not share them.\n")
    return out + [readme]


# -- on a schedule: the daemon's nightly job ------------------------------------------------------


def scheduled_audits(settings: "Settings", catalog: "Catalog", may_run: Callable[["CatalogEntry"], bool],
                     report_dir: Path, *, progress: Callable[[str], None] = lambda m: None
                     ) -> tuple[list[Audit], list[dict[str, str]]]:
    """Audit each model of ``[[evaluation.audit]]`` in site.toml (its served version, default
    parameters, seeds from 0) unless it was audited the same way already; store the results
    and write ``audit.json``/``audit.md`` into ``report_dir``. A model that cannot be audited
    is listed with the reason, and the others go on."""
    done: list[Audit] = []
    failures: list[dict[str, str]] = []
    targets = settings.evaluation.audits
    if not targets:
        return done, failures
    ext_ref = settings.evaluation.extractors[0] if settings.evaluation.extractors else None
    for t in targets:
        try:
            entry = catalog.models.resolve(t.model)
            if not may_run(entry):
                raise EvaluationError(f"{entry.qualified_ref} is not mirrored or this site does not run its code",
                                      hint="it is audited once its package is in the store and allow_code permits it")
            training = open_reference(settings, t.training)
            holdout = open_reference(settings, t.holdout) if t.holdout else None
            extractor = open_extractor(catalog, settings, ext_ref)
            params = dict(check_params(entry.record, {}))
            # the key is known before anything is generated: skip what was audited the same way
            pick_output(entry, None)  # refuses a model without a 2-D output
            probe = keyed_provenance(training, holdout, extractor, t.samples, 0, {})
            if catalog.audits.has_audit(entry.upstream, entry.id, entry.version, entry.record.sha256 or "",
                                        audit_key(probe), params):
                continue
            audit, _ = run_audit(settings, entry, training, extractor, holdout=holdout, n=t.samples, seed=0,
                                 progress=progress)
            audit.store(catalog)
            done.append(audit)
        except SynthmedError as exc:  # not found, not runnable, a set or extractor missing: said, not logged
            failures.append({"model": t.model, "training": t.training, "reason": exc.message})
        except Exception as exc:  # one model's failure never stops the others
            log.warning("audit of %s failed", t.model, exc_info=True)
            failures.append({"model": t.model, "training": t.training, "reason": f"{type(exc).__name__}: {exc}"})
    write_audit_report(done, failures, report_dir)
    return done, failures


def write_audit_report(audits: list[Audit], failures: list[dict[str, str]], folder: Path) -> Path:
    """``audit.json`` (each audit as :meth:`Audit.as_dict`: statistics and indices only) and
    ``audit.md`` in ``folder``; returns the Markdown file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "audit.json").write_text(json.dumps({"format": "synthmed-audit-report/1",
                                                   "audits": [a.as_dict() for a in audits], "failures": failures},
                                                  indent=1, sort_keys=True) + "\n")
    lines = ["# Memorisation audits (synthmed audit)", "",
             "| model | verdict | training | held-out | samples | near-copies | pixel DCR ratio | feature DCR ratio | "
             "authenticity |", "|" + " --- |" * 9]
    for a in audits:
        v, p = a.values, a.provenance
        lines.append(f"| {a.ref} | **{a.verdict}** | {p['training_label']} | {p.get('holdout_label') or '-'} | "
                     f"{v['n_generated']} | {v['near_copies']}{' (uninformative)' if v.get('near_copy_uninformative') else ''} | "
                     f"{v['pixel_dcr_ratio']:.3g} | "
                     f"{v['feature_dcr_ratio']:.3g} | {v['authenticity']:.3g} |")
    lines.append("")
    for a in audits:
        if a.reasons:
            lines += [f"{a.ref}:"] + [f"- {r}" for r in a.reasons] + [""]
    if failures:
        lines += ["## not audited", ""] + [f"- {f['model']} (training {f['training']}): {f['reason']}"
                                           for f in failures] + [""]
    if not audits and not failures:
        lines += ["Nothing to audit (every configured model was audited the same way already).", ""]
    md = folder / "audit.md"
    md.write_text("\n".join(lines))
    return md
