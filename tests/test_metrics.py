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
    lambda: M.psnr(np.zeros((2, 8, 8)), np.ones((2, 8, 8)), data_range=True),
    lambda: M.psnr(np.zeros((2, 8, 8)), np.ones((2, 8, 8)), data_range=np.float32("nan")),
    lambda: M.psnr(np.zeros((2, 8, 8)), np.ones((2, 8, 8)), data_range="255"),
    lambda: M.ssim(np.zeros((2, 8, 8)), np.zeros((2, 9, 8)), data_range=1),
    lambda: M.ms_ssim(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), data_range=1),
])
def test_bad_inputs_are_refused_with_a_clear_error(call: object) -> None:
    with pytest.raises(EvaluationError):
        call()  # type: ignore[operator]


# -- the metric details of #23 item 6 ---------------------------------------------------------


def test_ms_ssim_uses_wangs_weights_unrenormalised_at_five_scales() -> None:
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 255, (2, 112, 112))
    y = np.clip(x + rng.normal(0, 25, x.shape), 0, 255)
    got = M.ms_ssim(x, y, data_range=255, win_size=7)
    assert got["scales"] == 5
    # the product over scales with the published weights as they are (sum 1.0001)
    from synthmed.registry.measuring.metrics.pixels import _ssim_cs, gaussian_window
    g, a, b, vals = gaussian_window(7, 1.5), x[..., None], y[..., None], []
    for i in range(5):
        s, cs = _ssim_cs(a, b, 255.0, g)
        vals.append(np.maximum(s if i == 4 else cs, 0.0))
        if i == 4:
            break
        a = a.reshape(2, a.shape[1] // 2, 2, a.shape[2] // 2, 2, 1).mean((2, 4))
        b = b.reshape(2, b.shape[1] // 2, 2, b.shape[2] // 2, 2, 1).mean((2, 4))
    want = np.mean(np.prod([v[:, 0] ** w for v, w in zip(vals, M.pixels.MS_WEIGHTS)], axis=0))
    assert sum(M.pixels.MS_WEIGHTS) == pytest.approx(1.0001)
    assert got["ms_ssim"] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("call", [
    lambda x, y: M.psnr(x, y, data_range=255),
    lambda x, y: M.ssim(x, y, data_range=255, win_size=7),
    lambda x, y: M.ms_ssim(x, y, data_range=255, win_size=7),
    lambda x, y: M.autoencoder_metrics(x, y, data_range=255),
    lambda x, y: M.ms_ssim_diversity(y, data_range=255, pairs=4),
])
def test_a_nan_pixel_is_refused_by_every_pixel_metric(call: object) -> None:
    x = np.full((3, 16, 16), 100.0)
    y = x + np.arange(16.0)
    y[2, 3, 4] = np.nan
    with pytest.raises(EvaluationError, match="NaN or infinite pixels .*image 2"):
        call(x, y)  # type: ignore[operator]


def test_psnr_counts_exact_reconstructions_instead_of_refusing_the_set() -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 255, (3, 16, 16))
    y = x.copy()
    y[1] += rng.normal(0, 5, (16, 16))
    y[2] += rng.normal(0, 9, (16, 16))
    d = M.pixels.psnr_detail(x, y, data_range=255)
    want = np.mean([peak_signal_noise_ratio(x[i], y[i], data_range=255) for i in (1, 2)])
    assert d["exact"] == 1 and d["images"] == 3 and d["psnr"] == pytest.approx(want, abs=1e-9)
    assert M.psnr(x, x, data_range=255) == float("inf")
    assert M.autoencoder_metrics(x, y, data_range=255)["psnr_exact_images"] == 1


@pytest.mark.parametrize("rng_value", [np.float32(255), np.float64(255), np.int64(255), np.uint8(255), np.array(255.0)])
def test_numpy_scalars_are_a_data_range(rng_value: object) -> None:
    x = np.zeros((2, 16, 16))
    y = np.full((2, 16, 16), 3.0)
    assert M.psnr(x, y, data_range=rng_value) == pytest.approx(M.psnr(x, y, data_range=255))
    assert M.autoencoder_metrics(x, y, data_range=rng_value)["data_range"] == 255.0


def test_frechet_refuses_statistics_that_are_not_a_covariance() -> None:
    mu = np.zeros(3)
    good = np.eye(3)
    bad = np.diag([1.0, 1.0, -0.5])
    with pytest.raises(EvaluationError, match="not positive semi-definite"):
        M.frechet_from_stats(mu, good, mu, bad)
    with pytest.raises(EvaluationError, match="not symmetric"):
        M.frechet_from_stats(mu, good, mu, np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]]))
    with pytest.raises(EvaluationError, match="NaN"):
        M.frechet_from_stats(mu, good, np.array([0, np.nan, 0]), good)
    # equal statistics: exactly 0, never a negative round-off
    rng = np.random.default_rng(0)
    f = rng.normal(size=(50, 20)) * 1e3
    m, s = M.fid_stats(f)
    assert M.frechet_from_stats(m, s, m, s) >= 0.0


def test_prdc_does_not_drift_when_features_sit_far_from_the_origin(feats: tuple[np.ndarray, np.ndarray]) -> None:
    real, fake = feats
    near = M.prdc(real, fake)
    offset = 1e7  # |x|^2 ~ 1e15: the expansion loses the distances' digits without centring
    far = M.prdc(real + offset, fake + offset)
    assert far == near
    d = cdist(real, fake)
    assert near["coverage"] == pytest.approx(float((d.min(1) < np.sort(cdist(real, real), 1)[:, 5]).mean()))
