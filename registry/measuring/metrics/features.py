"""Distances between two sets of feature vectors (rows), in float64.

- :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to each set
  (FID when the features are Inception pool3 features of the standard weights).
- :func:`kid`: kernel inception distance (Bińkowski et al. 2018): the unbiased MMD² with
  the polynomial kernel ``(x·y / d + 1)³``, averaged over random subsets.
- :func:`prdc`: precision and recall (Kynkäänniemi et al. 2019, k-NN balls) and density
  and coverage (Naeem et al. 2020), following the published reference implementation
  (``prdc``): a point is inside a ball when its distance is strictly less than the radius.
  Both sets are first centred on their joint mean: distances do not change, but the
  expansion ``|x|² + |y|² - 2 x·y`` no longer loses its digits when the features sit far
  from the origin.
- :func:`mmd_rbf`: the biased MMD² with a Gaussian RBF kernel, as CMMD (Jayasumana et
  al. 2024) computes it (bandwidth sigma 10, scaled by 1000), on L2-normalised features.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import EvaluationError


def _rows(x: Any, what: str, min_rows: int = 2) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise EvaluationError(f"{what}: expected a 2-D array of feature rows, got shape {a.shape}")
    if a.shape[0] < min_rows:
        raise EvaluationError(f"{what}: {a.shape[0]} row(s); at least {min_rows} needed",
                         hint="evaluate with more samples (-n) or a larger reference set")
    if not np.isfinite(a).all():
        bad = ~np.isfinite(a).all(1)
        raise EvaluationError(f"{what}: {int(bad.sum())} row(s) contain NaN or inf (first: row {int(np.flatnonzero(bad)[0])})",
                              hint="check the images fed to the extractor")
    return a


def _same_dims(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise EvaluationError(f"feature sets differ in width: {a.shape[1]} vs {b.shape[1]}",
                         hint="both sets must come from the same extractor and layer")


def fid_stats(feats: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, ``ddof=1``) covariance of feature rows."""
    a = _rows(feats, "features")
    return a.mean(0), np.cov(a, rowvar=False)


def _sqrtm_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


#: how far below zero (relative to the largest eigenvalue) a covariance's eigenvalue may be
#: and still be round-off; beyond it the matrix is not a covariance and is refused
PSD_TOLERANCE = 1e-8


def _check_covariance(s: np.ndarray, what: str) -> None:
    if not np.isfinite(s).all():
        raise EvaluationError(f"{what}: the covariance holds NaN or inf", hint="recompute the statistics from finite features")
    scale = max(float(np.abs(s).max()), 1e-300)
    if not np.allclose(s, s.T, rtol=0, atol=1e-9 * scale):
        raise EvaluationError(f"{what}: the covariance is not symmetric",
                              hint="statistics must come from fid_stats (or numpy.cov) of real feature rows")
    w = np.linalg.eigvalsh((s + s.T) / 2)
    if w.min() < -PSD_TOLERANCE * max(float(w.max()), 1e-300):
        raise EvaluationError(f"{what}: the covariance is not positive semi-definite (smallest eigenvalue "
                              f"{w.min():.3g}, largest {w.max():.3g})",
                              hint="a covariance of feature rows has no negative eigenvalues; recompute the "
                                   "statistics, do not edit or average them")


def frechet_from_stats(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """``|mu1 - mu2|² + tr(S1 + S2 - 2 (S1 S2)^½)``.

    The trace of the matrix square root is computed without a general ``sqrtm``: with
    ``R = S1^½`` (symmetric, from an eigendecomposition), ``S1 S2`` is similar to the
    symmetric positive semi-definite ``R S2 R``, so ``tr (S1 S2)^½`` is the sum of the
    square roots of that matrix's eigenvalues (negative round-off clipped to 0).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(s1).astype(np.float64), np.atleast_2d(s2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise EvaluationError(f"statistics do not match: means {mu1.shape} {mu2.shape}, covariances {s1.shape} {s2.shape}")
    if not (np.isfinite(mu1).all() and np.isfinite(mu2).all()):
        raise EvaluationError("statistics: a mean holds NaN or inf", hint="recompute the statistics from finite features")
    _check_covariance(s1, "first statistics")
    _check_covariance(s2, "second statistics")
    r = _sqrtm_psd(s1)
    m = r @ s2 @ r
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    # a distance: only round-off can take it below 0 (the inputs are checked PSD above)
    return max(float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean), 0.0)


def frechet_distance(real: Any, fake: Any) -> float:
    a, b = _rows(real, "real features"), _rows(fake, "generated features")
    _same_dims(a, b)
    return frechet_from_stats(*fid_stats(a), *fid_stats(b))


def _poly_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = len(x), len(y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kid(real: Any, fake: Any, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """KID: the mean and std of the unbiased polynomial-kernel MMD² over ``subsets``
    random subsets (drawn without replacement within a subset; ``numpy.random.default_rng(seed)``).
    The subset size is capped at the smaller set's size (the value used is returned)."""
    a, b = _rows(real, "real features"), _rows(fake, "generated features")
    _same_dims(a, b)
    if subsets < 1:
        raise EvaluationError(f"KID subsets must be >= 1, got {subsets}")
    m = min(int(subset_size), len(a), len(b))
    if m < 2:
        raise EvaluationError("KID needs at least 2 rows in each set")
    rng = np.random.default_rng(seed)
    vals = np.array([_poly_mmd2_unbiased(a[rng.choice(len(a), m, replace=False)],
                                         b[rng.choice(len(b), m, replace=False)]) for _ in range(subsets)])
    return {"kid": float(vals.mean()), "kid_std": float(vals.std()), "subsets": int(subsets), "subset_size": int(m)}


def _pairwise(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.sqrt(np.clip(sq, 0, None))


def _kth_nn_radius(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest neighbour in its own set (itself excluded)."""
    d = _pairwise(x, x)
    return np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself (distance 0)


def prdc(real: Any, fake: Any, *, k_pr: int = 3, k_dc: int = 5) -> dict[str, float]:
    """Precision and recall with ``k_pr`` nearest neighbours (Kynkäänniemi et al.), density
    and coverage with ``k_dc`` (Naeem et al.). Euclidean distances between feature rows."""
    a, b = _rows(real, "real features"), _rows(fake, "generated features")
    _same_dims(a, b)
    for name, k in (("k_pr", k_pr), ("k_dc", k_dc)):
        if not 1 <= k < min(len(a), len(b)):
            raise EvaluationError(f"{name}={k} needs more than {k} rows in each set (real {len(a)}, generated {len(b)})")
    centre = np.concatenate([a, b]).mean(0)  # translation leaves distances alone and keeps their digits
    a, b = a - centre, b - centre
    d_rf = _pairwise(a, b)  # real x fake
    r_real_pr, r_fake_pr = _kth_nn_radius(a, k_pr), _kth_nn_radius(b, k_pr)
    precision = float((d_rf < r_real_pr[:, None]).any(axis=0).mean())
    recall = float((d_rf < r_fake_pr[None, :]).any(axis=1).mean())
    r_real_dc = r_real_pr if k_dc == k_pr else _kth_nn_radius(a, k_dc)
    density = float((d_rf < r_real_dc[:, None]).sum(axis=0).mean() / k_dc)
    coverage = float((d_rf.min(axis=1) < r_real_dc).mean())
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def mmd_rbf(real: Any, fake: Any, *, sigma: float = 10.0, scale: float = 1000.0, normalise: bool = True) -> float:
    """CMMD's estimator: ``scale * (mean k(x,x') + mean k(y,y') - 2 mean k(x,y))`` with
    ``k(a,b) = exp(-|a-b|² / (2 sigma²))`` over all pairs (diagonals included: the biased
    V-statistic, as CMMD's reference code). ``normalise`` scales each row to unit L2 norm
    first (CMMD's CLIP embeddings are unit vectors)."""
    a, b = _rows(real, "real features"), _rows(fake, "generated features")
    _same_dims(a, b)
    if normalise:
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    g = 1.0 / (2.0 * sigma * sigma)

    def k(x: np.ndarray, y: np.ndarray) -> float:
        sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
        return float(np.exp(-g * np.clip(sq, 0, None)).mean())

    return float(scale * (k(a, a) + k(b, b) - 2.0 * k(a, b)))
