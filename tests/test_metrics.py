"""Golden tests of synthmed.registry.measuring.metrics: fixed feature arrays and images give the
values of an independent computation (scipy's sqrtm, loops over the published formulas,
scikit-image's SSIM and PSNR) within 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.distance import cdist
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from synthmed.registry.measuring import metrics as M
from synthmed.registry.errors import EvaluationError


@pytest.fixture(scope="module")
def feats() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1234)
    real = rng.normal(size=(120, 12))
    fake = rng.normal(0.4, 1.3, size=(90, 12)) + rng.normal(size=(1, 12))
    return real, fake


def test_frechet_distance_matches_scipy_sqrtm(feats: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = feats
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    ref = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    assert M.frechet_distance(a, b) == pytest.approx(ref, abs=1e-6)
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # the same Gaussians give the same distance through the stored statistics
    assert M.frechet_from_stats(*M.fid_stats(a), *M.fid_stats(b)) == pytest.approx(ref, abs=1e-6)


def _kid_reference(a: np.ndarray, b: np.ndarray, subsets: int, m: int, seed: int) -> list[float]:
    """The unbiased MMD² with k(x, y) = (x.y/d + 1)^3, written as the double sums of Bińkowski et al."""
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    out = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k = lambda u, v: (float(u @ v) / d + 1.0) ** 3  # noqa: E731
        sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
        out.append(sxx + syy - 2 * sxy)
    return out


def test_kid_matches_the_double_sums(feats: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = feats
    ref = _kid_reference(a, b, 4, 30, 7)
    got = M.kid(a, b, subsets=4, subset_size=30, seed=7)
    assert got["kid"] == pytest.approx(float(np.mean(ref)), abs=1e-6)
    assert got["kid_std"] == pytest.approx(float(np.std(ref)), abs=1e-6)
    assert got["subset_size"] == 30
    assert M.kid(a, b, subsets=2, subset_size=10_000)["subset_size"] == 90  # capped at the smaller set


def _prdc_reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Naeem et al.'s reference formulas, with scipy's cdist and a full sort."""
    rr = np.sort(cdist(real, real), axis=1)[:, k]
    ff = np.sort(cdist(fake, fake), axis=1)[:, k]
    d = cdist(real, fake)
    precision = np.mean([any(d[i, j] < rr[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(d[i, j] < ff[j] for j in range(len(fake))) for i in range(len(real))])
    density = np.mean([sum(d[i, j] < rr[i] for i in range(len(real))) for j in range(len(fake))]) / k
    coverage = np.mean([d[i].min() < rr[i] for i in range(len(real))])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_prdc_matches_the_published_formulas(feats: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = feats
    got = M.prdc(a, b, k_pr=3, k_dc=5)
    pr, dc = _prdc_reference(a, b, 3), _prdc_reference(a, b, 5)
    for name, ref in (("precision", pr), ("recall", pr), ("density", dc), ("coverage", dc)):
        assert got[name] == pytest.approx(ref[name], abs=1e-6), name


def test_prdc_on_points_worked_by_hand() -> None:
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[0.5], [10.0], [11.0], [12.0]])
    got = M.prdc(real, fake, k_pr=1, k_dc=1)
    # real 1-NN radii are all 1: only 0.5 lies inside a real ball (of 0 and 1); fake radii 1, 9.5, 1, 1:
    # real points 0, 1, 2, 3 lie within 9.5 of 10? |3-10| = 7 < 9.5 yes, so every real point is recalled
    assert got["precision"] == 0.25 and got["recall"] == 1.0
    assert got["density"] == pytest.approx(2 / 4)  # 0.5 inside two real balls, /k=1, mean over 4 fakes
    assert got["coverage"] == 0.5  # real 0 and 1 have a fake within their radius


def test_rbf_mmd_matches_the_cmmd_formula(feats: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = feats
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    g = 1 / (2 * 0.5 ** 2)
    k = lambda x, y: np.exp(-g * cdist(x, y, "sqeuclidean")).mean()  # noqa: E731
    ref = 1000 * (k(an, an) + k(bn, bn) - 2 * k(an, bn))
    assert M.mmd_rbf(a, b, sigma=0.5) == pytest.approx(ref, abs=1e-6)
    assert M.mmd_rbf(a, a) == pytest.approx(0.0, abs=1e-9)


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (3, 40, 40, 3)).astype(np.float64)
    y = np.clip(x + rng.normal(0, 12, x.shape), 0, 255)
    return x, y


def test_ssim_and_psnr_match_scikit_image(images: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = images
    ref = np.mean([structural_similarity(x[i], y[i], data_range=255, channel_axis=-1, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False) for i in range(len(x))])
    assert M.ssim(x, y, data_range=255) == pytest.approx(ref, abs=1e-6)
    ref_psnr = np.mean([peak_signal_noise_ratio(x[i], y[i], data_range=255) for i in range(len(x))])
    assert M.psnr(x, y, data_range=255) == pytest.approx(ref_psnr, abs=1e-6)


def test_ms_ssim_scales_and_data_range(images: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = images
    # 20 px with an 11-tap window: one scale fits (10 px would not), so MS-SSIM is SSIM
    xs, ys = x[:, :20, :20], y[:, :20, :20]
    one = M.ms_ssim(xs, ys, data_range=255)
    assert one["scales"] == 1 and one["ms_ssim"] == pytest.approx(M.ssim(xs, ys, data_range=255), abs=1e-12)
    assert M.ms_ssim(x, y, data_range=255)["scales"] == 2  # 40 and 20 px
    three = M.ms_ssim(x, y, data_range=255, win_size=7)
    assert three["scales"] == 3 and 0 < three["ms_ssim"] < 1
    assert M.ms_ssim(x, x, data_range=255, win_size=7)["ms_ssim"] == pytest.approx(1.0, abs=1e-12)
    # the data range is explicit and matters: the same pixels read as [0, 1] data compare differently
    assert M.psnr(x / 255, y / 255, data_range=1.0) == pytest.approx(M.psnr(x, y, data_range=255), abs=1e-9)
    assert M.ms_ssim(x / 255, y / 255, data_range=1.0, win_size=7)["ms_ssim"] == pytest.approx(three["ms_ssim"],
                                                                                              abs=1e-9)
    assert M.ms_ssim(x, y, data_range=1.0, win_size=7)["ms_ssim"] != pytest.approx(three["ms_ssim"], abs=1e-4)
    ae = M.autoencoder_metrics(x, y, data_range=255)
    assert ae["data_range"] == 255 and ae["psnr"] == pytest.approx(M.psnr(x, y, data_range=255))


def test_diversity_is_lower_for_a_more_varied_set() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, 32, 32))
    same = np.repeat(base, 20, axis=0) + rng.normal(0, 2, (20, 32, 32))
    varied = rng.integers(0, 256, (20, 32, 32))
    d_same = M.ms_ssim_diversity(same, data_range=255, pairs=50)["ms_ssim_diversity"]
    d_varied = M.ms_ssim_diversity(varied, data_range=255, pairs=50)["ms_ssim_diversity"]
    assert d_same > 0.9 > d_varied


@pytest.mark.parametrize("call", [
    lambda: M.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4))),
    lambda: M.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3))),
    lambda: M.frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3))),
    lambda: M.prdc(np.zeros((3, 2)), np.zeros((9, 2)), k_pr=3),
    lambda: M.kid(np.zeros((5, 2)), np.zeros((5, 2)), subsets=0),
    lambda: M.psnr(np.zeros((2, 8, 8)), np.ones((2, 8, 8)), data_range=0),
    lambda: M.psnr(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), data_range=1),
    lambda: M.ssim(np.zeros((2, 8, 8)), np.zeros((2, 9, 8)), data_range=1),
    lambda: M.ms_ssim(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), data_range=1),
])
def test_bad_inputs_are_refused_with_a_clear_error(call: object) -> None:
    with pytest.raises(EvaluationError):
        call()  # type: ignore[operator]
