"""Fit the vessel-tree model (tree-package/model.py, retina-vessel-mask-tree) to the real
training masks: a seeded random search, then a local one, over the model's parameters,
minimising the distance between summary statistics of generated and real masks.

The statistics (mask_stats): vessel fraction (mean, standard deviation, share of
near-empty patches), vessel width (skeleton-to-edge distance x 2 - 1: its 25th, 50th,
75th and 90th percentiles, and its mean standard deviation within a patch), skeleton
length per patch, branch points and end points per 100 skeleton pixels, and how much the
skeleton bends (principal-axis ratio in 16x16 blocks). Each enters the distance as a squared relative difference, so the
fit is a method-of-moments estimate; only training-region masks are used.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def _tree_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("dualgan_tree_model", HERE / "tree-package" / "model.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tree_pkg = _tree_module()

# the search space: (low, high) of each parameter drawn uniformly; the rest fixed. SPACE is 1.0.0's;
# WIDE opens the bounds the longer 1.0.0-space search ended on (roots 10, min_width 4, turn_sd 0.0005,
# branch_min_width 2)
SPACE = {"roots": (1.0, 10.0), "spread": (0.05, 1.2), "width_mu": (0.8, 2.2), "width_sigma": (0.05, 0.6), "taper": (0.0, 0.006),
         "min_width": (1.0, 4.0), "turn_sd": (0.0005, 0.02), "end_rate": (0.0, 0.03), "branch_rate": (0.002, 0.08),
         "branch_min_width": (2.0, 7.0), "edge_jitter": (0.0, 0.3)}
WIDE = {**SPACE, "roots": (1.0, 20.0), "min_width": (1.0, 7.0), "turn_sd": (0.0001, 0.02),
        "branch_min_width": (1.0, 7.0)}
SPACES = {"1": SPACE, "wide": WIDE}
#: a floor under each statistic's scale in the distance: shares near 0 must not dominate it
FLOOR = {"fraction_mean": 0.05, "fraction_sd": 0.05, "near_empty": 0.1, "ends_per_100": 1.0, "branch_per_100": 1.0}
#: weights in the distance: the bend statistic varies little (a pixel skeleton is never quite straight), so it
#: counts ten times; the within-patch width spread twice
WEIGHT = {"bend": 10.0, "width_sd_in_patch": 2.0}
FIXED = {"persistence": 0.9}
STAT_NAMES = ("fraction_mean", "fraction_sd", "near_empty", "width_p25", "width_p50", "width_p75", "width_p90",
              "width_sd_in_patch", "skeleton_px", "branch_per_100", "ends_per_100", "bend")


def mask_stats(masks: np.ndarray) -> dict[str, float]:
    from scipy import ndimage
    from skimage import morphology

    frac = masks.reshape(len(masks), -1).mean(1)
    widths: list[np.ndarray] = []
    spreads: list[float] = []
    bends: list[float] = []
    skel_px, branches, ends = 0, 0, 0
    kernel = np.ones((3, 3))
    for m in masks:
        b = m.astype(bool)
        if not b.any():
            continue
        sk = morphology.skeletonize(b)
        d = ndimage.distance_transform_edt(b)
        widths.append(2 * d[sk] - 1)
        spreads.append(float(widths[-1].std()))
        bends.extend(_bends(sk))
        nb = ndimage.convolve(sk.astype(np.int32), kernel, mode="constant") - 1
        inner = np.zeros_like(sk)
        inner[3:-3, 3:-3] = True
        skel_px += int(sk.sum())
        branches += int((sk & (nb >= 3)).sum())
        ends += int((sk & (nb == 1) & inner).sum())
    w = np.concatenate(widths) if widths else np.zeros(1)
    n = max(len(masks), 1)
    return {"fraction_mean": float(frac.mean()), "fraction_sd": float(frac.std()),
            "near_empty": float((frac < 0.005).mean()),
            **{f"width_p{q}": float(np.percentile(w, q)) for q in (25, 50, 75, 90)},
            "width_sd_in_patch": float(np.mean(spreads)) if spreads else 0.0,
            "bend": float(np.mean(bends)) if bends else 0.0,
            "skeleton_px": skel_px / n, "branch_per_100": 100 * branches / max(skel_px, 1),
            "ends_per_100": 100 * ends / max(skel_px, 1)}


def _bends(sk: np.ndarray, block: int = 16) -> list[float]:
    """How far the skeleton bends: in each 16x16 block holding one simple piece of it
    (8..24 pixels), the ratio of the small to the large principal axis of its pixels'
    coordinates (0 for a straight piece)."""
    out = []
    for y in range(0, sk.shape[0], block):
        for x in range(0, sk.shape[1], block):
            pts = np.argwhere(sk[y:y + block, x:x + block])
            if 8 <= len(pts) <= 24:
                ev = np.linalg.eigvalsh(np.cov(pts.T.astype(np.float64)))
                out.append(float(np.sqrt(max(ev[0], 0.0) / max(ev[1], 1e-9))))
    return out


def distance(a: dict[str, float], b: dict[str, float]) -> float:
    return float(sum(WEIGHT.get(k, 1.0) * ((a[k] - b[k]) / max(abs(b[k]), FLOOR.get(k, 0.0), 1e-9)) ** 2
                     for k in STAT_NAMES))


def generate(params: dict[str, float], n: int, first_seed: int = 10_000_000) -> np.ndarray:
    m = tree_pkg.TreeModel({**FIXED, **params})
    return np.asarray(m.sample(list(range(first_seed, first_seed + n)))["mask"])


def fit(real_masks: np.ndarray, seed: int, n_random: int = 48, n_local: int = 48, n_eval: int = 200,
        log: Any = print, space: str = "1") -> dict[str, Any]:
    """-> {"params", "distance", "real_stats", "fitted_stats", "candidates", "seconds"}."""
    bounds = SPACES[space]
    t0 = time.time()
    rng = np.random.default_rng(seed)
    target = mask_stats(real_masks)
    best: tuple[float, dict[str, float]] = (float("inf"), {})

    def consider(p: dict[str, float], tag: str) -> None:
        nonlocal best
        dist = distance(mask_stats(generate(p, n_eval)), target)
        if dist < best[0]:
            best = (dist, p)
            log(f"[tree] {tag} distance {dist:.3f} {({k: round(v, 4) for k, v in p.items()})}")

    for _ in range(n_random):
        consider({k: float(rng.uniform(lo, hi)) for k, (lo, hi) in bounds.items()}, "random")
    for i in range(n_local):  # shrinking Gaussian steps around the best so far
        scale = 0.25 * (1.0 - i / n_local) + 0.03
        p = {k: float(np.clip(best[1][k] + rng.normal(0, scale * (hi - lo)), lo, hi))
             for k, (lo, hi) in bounds.items()}
        consider(p, "local")
    params = {**FIXED, **{k: round(v, 6) for k, v in best[1].items()}}
    return {"params": params, "distance": round(best[0], 4), "real_stats": target,
            "fitted_stats": mask_stats(generate(best[1], 1000, first_seed=0)),
            "candidates": n_random + n_local, "candidate_samples": n_eval, "space": {k: list(v) for k, v in bounds.items()},
            "seconds": round(time.time() - t0, 1)}
