"""The memorisation audit's statistics, pure numpy (:mod:`.audit` runs it on a site).

Given N generated samples and a training set (and, optionally, a held-out real set of the
same kind), it measures:

- **pixel similarity to the nearest training image**: the Pearson correlation of the two
  images' pixels (after the output's window, at the audit's comparison size), the best over
  the flips and rotations of the sample (8 for a square image, 4 otherwise), so a copy that
  was flipped, rotated, re-contrasted or lightly noised is still found. A sample at or above
  :data:`NEAR_COPY_SIMILARITY` is a **near-copy**. A flat image (pixel standard deviation
  below :data:`FLAT_STD` of the range) has no pattern to copy; its similarity is 0.
- **the training set's own leave-one-out values** (each training image against the others,
  with the same transforms): how close real images of this kind come to each other, the
  baseline for both the near-copy rate and the distances. When that own rate is high
  (:data:`UNINFORMATIVE_NEAR_DUPLICATE_FRACTION`: overlapping patches, adjacent slices) the
  near-copy count is **uninformative** (``near_copy_uninformative`` in the values): it drives
  no verdict, and the audit says so.
- **distance to closest record (DCR)**: in pixel space (``sqrt(2 (1 - r))``, the distance of
  the standardised images) and in feature space (Euclidean), the median over samples divided
  by the median leave-one-out distance of the training set (well below 1: samples sit closer
  to training images than training images sit to each other).
- **the DCR test** (with a held-out set): the fraction of samples closer to the training
  set than to the held-out set, both cut to the same size; without memorisation it is 1/2,
  and a one-sided binomial test gives its p-value.
- **authenticity** (Alaa et al., ICML 2022, feature space): a sample is unauthentic when it
  is closer to its nearest training image than that image's own nearest training neighbour
  is; the fraction of authentic samples, with the held-out set's own value as its baseline.

:func:`verdict` turns the numbers into ``pass`` / ``review`` / ``fail`` with the reasons; every
threshold is a constant here and in :data:`THRESHOLDS` (part of each audit's provenance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EvaluationError

#: version 2: the near-copy rules stand aside when the training set's own near-duplicate rate makes them uninformative
IMPLEMENTATION = {"name": "synthmed.registry.measuring.memorisation", "version": "2"}

#: pixel similarity (Pearson r, best over flips and rotations) at or above which a sample is a near-copy
NEAR_COPY_SIMILARITY = 0.95
#: a pixel standard deviation below this (on a 0..1 scale) makes an image flat: nothing to copy
FLAT_STD = 1.0 / 512
#: fail: at least this fraction of samples are near-copies, and this much more than the training set's own rate
FAIL_NEAR_COPY_FRACTION = 0.05
#: the near-copy count is **uninformative** when at least this fraction of the training images are near-copies
#: of another training image (overlapping patches, adjacent slices, phantoms): an independent sample of the
#: same kind is then as likely a near-copy as not, so the count cannot separate copying from the set's own
#: redundancy. The near-copy rules then drive no verdict (the audit says so); the DCR test against a held-out
#: set decides, and without one the verdict is at least ``review``
UNINFORMATIVE_NEAR_DUPLICATE_FRACTION = 0.5
#: fail: the DCR test's fraction of samples closer to training than to held-out, with p below FAIL_DCR_P
FAIL_DCR_FRACTION = 0.75
FAIL_DCR_P = 1e-3
#: review: the DCR test's p-value below this
REVIEW_DCR_P = 1e-2
#: review: median DCR over the median leave-one-out distance below this (pixel or feature space)
REVIEW_DCR_RATIO = 0.5
#: review: authenticity this far below the held-out set's own authenticity
REVIEW_AUTHENTICITY_DROP = 0.2

THRESHOLDS = {"near_copy_similarity": NEAR_COPY_SIMILARITY, "flat_std": FLAT_STD,
              "fail_near_copy_fraction": FAIL_NEAR_COPY_FRACTION,
              "uninformative_near_duplicate_fraction": UNINFORMATIVE_NEAR_DUPLICATE_FRACTION,
              "fail_dcr_fraction": FAIL_DCR_FRACTION,
              "fail_dcr_p": FAIL_DCR_P, "review_dcr_p": REVIEW_DCR_P, "review_dcr_ratio": REVIEW_DCR_RATIO,
              "review_authenticity_drop": REVIEW_AUTHENTICITY_DROP}

VERDICTS = ("pass", "review", "fail")
#: how a sample was turned to match (the order of :func:`_transforms`)
TRANSFORMS = ("none", "flip left-right", "flip up-down", "rotate 180", "transpose", "rotate 90 clockwise",
              "rotate 90 counter-clockwise", "anti-transpose")
#: how many of the most similar pairs :class:`Measures` keeps besides the near-copies
CLOSEST = 8


def transform(x: np.ndarray, name: str) -> np.ndarray:
    """One image (h, w, c) turned by the transform ``name`` (:data:`TRANSFORMS`)."""
    return _transforms(x[None])[TRANSFORMS.index(name)][0]


def _transforms(x: np.ndarray) -> list[np.ndarray]:
    """The flips and rotations of (N, h, w, c) images: 8 when square, else the 4 that keep the shape."""
    out = [x, x[:, :, ::-1], x[:, ::-1, :], x[:, ::-1, ::-1]]
    if x.shape[1] == x.shape[2]:
        t = x.transpose(0, 2, 1, 3)
        out += [t, t[:, :, ::-1], t[:, ::-1, :], t[:, ::-1, ::-1]]
    return out


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, h, w, c) in [0, 1] -> (rows of zero mean and unit norm (N, P) float32, flat mask).
    The dot product of two rows is the Pearson correlation of the two images."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    std = flat.std(axis=1)
    z = flat - flat.mean(axis=1, keepdims=True)
    is_flat = std < FLAT_STD
    norm = np.linalg.norm(z, axis=1)
    z = np.where(is_flat[:, None], 0.0, z / np.where(norm > 0, norm, 1.0)[:, None])
    return z.astype(np.float32), is_flat


def _check_images(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or len(x) == 0:
        raise EvaluationError(f"{what}: expected (N, h, w, c) images, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise EvaluationError(f"{what}: images hold NaN or infinite pixels")
    return x


def nearest_similarity(samples: np.ndarray, training: np.ndarray, *,
                       leave_one_out: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each sample, (best pixel similarity to a training image, that image's index, the
    transform index that matched). ``leave_one_out``: ``samples`` is ``training`` and an image
    is never matched with itself (nor with its own flips)."""
    s = _check_images(samples, "samples")
    t = _check_images(training, "training images")
    if s.shape[1:] != t.shape[1:]:
        raise EvaluationError(f"samples {s.shape[1:]} and training images {t.shape[1:]} differ in shape")
    zt, _ = _standardise(t)
    best = np.full(len(s), -np.inf)
    idx = np.zeros(len(s), dtype=np.int64)
    how = np.zeros(len(s), dtype=np.int64)
    for k, variant in enumerate(_transforms(s)):
        zs, _ = _standardise(np.ascontiguousarray(variant))
        for lo in range(0, len(zs), 256):
            sim = zs[lo:lo + 256] @ zt.T
            if leave_one_out:
                rows = np.arange(lo, min(lo + 256, len(zs)))
                sim[rows - lo, rows] = -np.inf
            j = sim.argmax(axis=1)
            v = sim[np.arange(len(j)), j].astype(np.float64)
            better = v > best[lo:lo + len(j)]
            best[lo:lo + len(j)][better] = v[better]
            idx[lo:lo + len(j)][better] = j[better]
            how[lo:lo + len(j)][better] = k
    if leave_one_out and len(t) == 1:
        best[:] = 0.0
    return np.clip(best, -1.0, 1.0), idx, how


def pixel_distance(similarity: np.ndarray) -> np.ndarray:
    """The distance of two standardised images from their correlation: ``sqrt(2 (1 - r))``."""
    return np.sqrt(np.clip(2.0 * (1.0 - np.asarray(similarity, dtype=np.float64)), 0.0, None))


def nearest_distance(a: np.ndarray, b: np.ndarray, *, leave_one_out: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance of each row of ``a`` to its nearest row of ``b`` and that row's index
    (``leave_one_out``: ``a`` is ``b``, a row is never its own neighbour)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or not len(b):
        raise EvaluationError(f"feature sets of shapes {a.shape} and {b.shape} cannot be compared")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise EvaluationError("features hold NaN or infinite values")
    bb = (b * b).sum(1)
    d_out = np.empty(len(a))
    i_out = np.empty(len(a), dtype=np.int64)
    for lo in range(0, len(a), 512):
        x = a[lo:lo + 512]
        sq = (x * x).sum(1)[:, None] + bb[None, :] - 2.0 * x @ b.T
        if leave_one_out:
            rows = np.arange(lo, lo + len(x))
            sq[rows - lo, rows] = np.inf
        j = sq.argmin(axis=1)
        i_out[lo:lo + len(x)] = j
        d_out[lo:lo + len(x)] = np.sqrt(np.clip(sq[np.arange(len(j)), j], 0.0, None))
    return d_out, i_out


def binomial_p_greater(k: int, n: int) -> float:
    """One-sided p-value of at least ``k`` successes in ``n`` fair coin flips."""
    if n <= 0:
        return 1.0
    return min(1.0, sum(math.comb(n, i) for i in range(max(k, 0), n + 1)) / 2 ** n)


def dcr_test(to_training: np.ndarray, to_holdout: np.ndarray) -> dict[str, float]:
    """Fraction of samples closer to the training set than to the held-out set (ties count
    half) and the one-sided binomial p-value of that many under "no memorisation" (1/2)."""
    t, h = np.asarray(to_training), np.asarray(to_holdout)
    closer = float((t < h).sum() + 0.5 * (t == h).sum())
    n = len(t)
    return {"closer_to_training": closer / n if n else float("nan"),
            "p_value": binomial_p_greater(int(math.ceil(closer)), n)}


def authenticity(d_sample: np.ndarray, nearest: np.ndarray, loo: np.ndarray) -> float:
    """Alaa et al. (2022): the fraction of samples farther from their nearest training point
    than that point is from its own nearest training neighbour."""
    d = np.asarray(d_sample)
    return float((d > np.asarray(loo)[np.asarray(nearest)]).mean()) if len(d) else float("nan")


def same_size_subsets(n_train: int, n_holdout: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices cutting the training and held-out sets to the same size (a seeded draw from
    the larger), so that "closer to training" is 1/2 without memorisation."""
    m = min(n_train, n_holdout)
    rng = np.random.default_rng(seed)
    pick = lambda n: np.sort(rng.choice(n, m, replace=False)) if n > m else np.arange(n)  # noqa: E731
    return pick(n_train), pick(n_holdout)


@dataclass
class Measures:
    """Everything the verdict is made of (all plain floats and ints, JSON-ready)."""

    values: dict[str, Any]
    #: per near-copy, most similar first: sample index, seed, training index, similarity, transform
    nearest: list[dict[str, Any]] = field(default_factory=list)
    #: the most similar pairs whether near-copies or not (for a person to look at)
    closest: list[dict[str, Any]] = field(default_factory=list)


def measure(samples_px: np.ndarray, training_px: np.ndarray, samples_feat: np.ndarray, training_feat: np.ndarray,
            seeds: list[int], holdout_px: np.ndarray | None = None,
            holdout_feat: np.ndarray | None = None) -> Measures:
    """The audit's numbers for samples and training (and held-out) images prepared alike:
    pixels (N, h, w, c) in [0, 1], features (N, d)."""
    sim, idx, how = nearest_similarity(samples_px, training_px)
    loo_sim, _, _ = nearest_similarity(training_px, training_px, leave_one_out=True)
    flat_s = _standardise(samples_px)[1]
    near = sim >= NEAR_COPY_SIMILARITY
    px_d, loo_px_d = pixel_distance(sim), pixel_distance(loo_sim)
    f_d, f_idx = nearest_distance(samples_feat, training_feat)
    loo_f_d, _ = nearest_distance(training_feat, training_feat, leave_one_out=True)
    v: dict[str, Any] = {
        "n_generated": int(len(samples_px)), "n_training": int(len(training_px)),
        "near_copies": int(near.sum()), "near_copy_fraction": float(near.mean()),
        "training_near_duplicate_fraction": float((loo_sim >= NEAR_COPY_SIMILARITY).mean()),
        "near_copy_uninformative": near_copies_uninformative(float((loo_sim >= NEAR_COPY_SIMILARITY).mean())),
        "flat_samples": int(flat_s.sum()),
        "pixel_similarity_max": float(sim.max()), "pixel_similarity_median": float(np.median(sim)),
        "training_loo_similarity_median": float(np.median(loo_sim)),
        "pixel_dcr_median": float(np.median(px_d)), "training_loo_pixel_median": float(np.median(loo_px_d)),
        "feature_dcr_median": float(np.median(f_d)), "training_loo_feature_median": float(np.median(loo_f_d)),
        "authenticity": authenticity(f_d, f_idx, loo_f_d),
    }
    v["pixel_dcr_ratio"] = _ratio(v["pixel_dcr_median"], v["training_loo_pixel_median"])
    v["feature_dcr_ratio"] = _ratio(v["feature_dcr_median"], v["training_loo_feature_median"])
    if holdout_px is not None and holdout_feat is not None:
        v.update(_holdout_measures(samples_px, training_px, samples_feat, training_feat, holdout_px, holdout_feat,
                                   loo_f_d))
    order = np.argsort(-sim, kind="stable")
    pairs: list[dict[str, Any]] = [
        {"sample": int(i), "seed": int(seeds[i]), "training_index": int(idx[i]),
         "similarity": round(float(sim[i]), 6), "transform": TRANSFORMS[int(how[i])]} for i in order]
    return Measures(v, [p for p in pairs if near[p["sample"]]], pairs[:CLOSEST])


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else (float("inf") if a > 0 else 1.0)


def _holdout_measures(samples_px: np.ndarray, training_px: np.ndarray, samples_feat: np.ndarray,
                      training_feat: np.ndarray, holdout_px: np.ndarray, holdout_feat: np.ndarray,
                      loo_f_d: np.ndarray) -> dict[str, Any]:
    ti, hi = same_size_subsets(len(training_px), len(holdout_px))
    sim_t, _, _ = nearest_similarity(samples_px, training_px[ti])
    sim_h, _, _ = nearest_similarity(samples_px, holdout_px[hi])
    px = dcr_test(pixel_distance(sim_t), pixel_distance(sim_h))
    ft = dcr_test(nearest_distance(samples_feat, training_feat[ti])[0],
                  nearest_distance(samples_feat, holdout_feat[hi])[0])
    # the held-out set's own authenticity against the training set: what real, unseen images score
    h_d, h_idx = nearest_distance(holdout_feat, training_feat)
    return {"n_holdout": int(len(holdout_px)), "dcr_size": int(len(ti)),
            "pixel_closer_to_training": px["closer_to_training"], "pixel_dcr_p": px["p_value"],
            "feature_closer_to_training": ft["closer_to_training"], "feature_dcr_p": ft["p_value"],
            "holdout_authenticity": authenticity(h_d, h_idx, loo_f_d)}


def near_copies_uninformative(training_near_duplicate_fraction: float) -> bool:
    """Whether the training set's own near-duplicate rate makes the near-copy count say nothing
    about memorisation (:data:`UNINFORMATIVE_NEAR_DUPLICATE_FRACTION`)."""
    return training_near_duplicate_fraction >= UNINFORMATIVE_NEAR_DUPLICATE_FRACTION


def uninformative_note(v: dict[str, Any]) -> str:
    """The words for an uninformative near-copy count (the CLI, reports and pages print it)."""
    return (f"the near-copy count is uninformative: {v['training_near_duplicate_fraction']:.0%} of the training "
            f"images are near-copies of another training image (>= {UNINFORMATIVE_NEAR_DUPLICATE_FRACTION:.0%}: "
            "overlapping patches, adjacent slices), so samples of the same kind are near-copies whether copied or "
            "not; it drives no verdict")


def verdict(v: dict[str, Any]) -> tuple[str, list[str]]:
    """``pass`` / ``review`` / ``fail`` and the reasons, from :func:`measure`'s values."""
    fail: list[str] = []
    review: list[str] = []
    frac, base = v["near_copy_fraction"], v["training_near_duplicate_fraction"]
    if near_copies_uninformative(base):
        if "pixel_closer_to_training" not in v:
            review.append(uninformative_note(v) + "; without a held-out set nothing else can tell a copying model "
                          "from an honest one: audit again with --holdout (real images the model was not trained on)")
    elif frac >= FAIL_NEAR_COPY_FRACTION and frac - base >= FAIL_NEAR_COPY_FRACTION:
        fail.append(f"{v['near_copies']} of {v['n_generated']} samples ({frac:.0%}) are near-copies of training "
                    f"images (pixel similarity >= {NEAR_COPY_SIMILARITY}; training images among themselves: {base:.0%})")
    elif v["near_copies"] and frac > base:
        review.append(f"{v['near_copies']} sample(s) are near-copies of training images (pixel similarity >= "
                      f"{NEAR_COPY_SIMILARITY})")
    for space in ("pixel", "feature"):
        if f"{space}_closer_to_training" in v:
            c, p = v[f"{space}_closer_to_training"], v[f"{space}_dcr_p"]
            msg = (f"{c:.0%} of samples are closer to the training set than to the held-out set in {space} space "
                   f"(1/2 expected; p = {p:.2g})")
            if c >= FAIL_DCR_FRACTION and p < FAIL_DCR_P:
                fail.append(msg)
            elif p < REVIEW_DCR_P:
                review.append(msg)
        r = v[f"{space}_dcr_ratio"]
        if r < REVIEW_DCR_RATIO:
            review.append(f"samples sit {r:.2f}x as far from their nearest training image as training images sit "
                          f"from each other ({space} space, medians)")
    if "holdout_authenticity" in v and v["authenticity"] < v["holdout_authenticity"] - REVIEW_AUTHENTICITY_DROP:
        review.append(f"authenticity {v['authenticity']:.2f}, held-out real images {v['holdout_authenticity']:.2f}")
    if fail:
        return "fail", fail + review
    if review:
        return "review", review
    return "pass", []
