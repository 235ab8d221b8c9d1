"""Pixel metrics with an explicit data range: PSNR, SSIM and MS-SSIM (Wang et al. 2003),
and MS-SSIM diversity (the mean MS-SSIM of random pairs within one set; lower = more
diverse).

Images are ``(N, H, W)`` or ``(N, H, W, C)``; SSIM is computed per channel and averaged.
SSIM uses a Gaussian window (``win_size`` taps, ``sigma``), valid filtering (no padding),
``K1 = 0.01``, ``K2 = 0.03``. MS-SSIM downsamples by 2x2 averaging between scales and uses
Wang et al.'s weights ``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)`` exactly as published
at 5 scales (they sum to 1.0001; pytorch-msssim and the reference code use them as
they are); small images get as many scales as fit (each scale's side at least
``win_size``), with those first weights renormalised to sum to 1; the number of scales
used is part of the result.

Every pixel metric refuses a NaN or infinite pixel (naming the set and the image), as the
feature metrics refuse NaN features. ``data_range`` is any positive real number,
a numpy scalar included (``np.float32(255)``). PSNR of an image reconstructed exactly
is infinite: :func:`psnr` averages over the images that differ from their reconstruction
and :func:`psnr_detail` says how many were exact (all exact: ``inf``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import EvaluationError

MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _images(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4:
        raise EvaluationError(f"{what}: expected images (N, H, W) or (N, H, W, C), got shape {a.shape}")
    bad = ~np.isfinite(a).reshape(len(a), -1).all(1)
    if bad.any():
        raise EvaluationError(f"{what}: {int(bad.sum())} image(s) hold NaN or infinite pixels (first: image "
                              f"{int(np.flatnonzero(bad)[0])})",
                              hint="pixel metrics need finite values; check the images (or their decoding)")
    return a


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = _images(a, "images"), _images(b, "reconstructions")
    if x.shape != y.shape:
        raise EvaluationError(f"image sets differ in shape: {x.shape} vs {y.shape}")
    return x, y


def _check_range(data_range: Any) -> float:
    """A positive, finite real number: Python or numpy (``np.float32(255)``, a 0-d array); not a bool."""
    ok = isinstance(data_range, (int, float, np.integer, np.floating)) and not isinstance(data_range, (bool, np.bool_))
    if isinstance(data_range, np.ndarray) and data_range.ndim == 0 and data_range.dtype.kind in "iuf":
        ok, data_range = True, data_range.item()
    value = float(data_range) if ok else float("nan")
    if not (ok and np.isfinite(value) and value > 0):
        raise EvaluationError(f"data_range must be a positive finite number (e.g. 255 for uint8, 1 for [0, 1]), "
                              f"got {data_range!r} ({type(data_range).__name__})",
                              hint="pass the width of the pixel value range as a number")
    return value


def psnr_detail(a: Any, b: Any, *, data_range: Any) -> dict[str, float]:
    """``{"psnr", "exact", "images"}``: the mean over images of ``10 log10(data_range² / MSE)``
    taken over the images that differ from their reconstruction, and how many were
    reconstructed exactly (MSE 0, an infinite PSNR each). ``psnr`` is ``inf`` when every
    image is exact."""
    L = _check_range(data_range)
    x, y = _pair(a, b)
    mse = ((x - y) ** 2).reshape(len(x), -1).mean(1)
    exact = mse == 0
    finite = mse[~exact]
    value = float(np.mean(10.0 * np.log10(L * L / finite))) if len(finite) else float("inf")
    return {"psnr": value, "exact": int(exact.sum()), "images": int(len(mse))}


def psnr(a: Any, b: Any, *, data_range: Any) -> float:
    """Mean PSNR over the images that differ from their reconstruction (:func:`psnr_detail`)."""
    return psnr_detail(a, b, data_range=data_range)["psnr"]


def gaussian_window(win_size: int, sigma: float) -> np.ndarray:
    r = np.arange(win_size, dtype=np.float64) - (win_size - 1) / 2
    g = np.exp(-(r * r) / (2 * sigma * sigma))
    return g / g.sum()


def _filter(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable valid filtering over axes 1 and 2 of (N, H, W, C)."""
    from numpy.lib.stride_tricks import sliding_window_view as sw

    w = len(g)
    h = (sw(x, w, axis=1) * g).sum(-1)
    return (sw(h, w, axis=2) * g).sum(-1)


def _ssim_cs(x: np.ndarray, y: np.ndarray, L: float, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image and channel: (mean SSIM map, mean contrast-structure map), shape (N, C)."""
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    mx, my = _filter(x, g), _filter(y, g)
    sxx = _filter(x * x, g) - mx * mx
    syy = _filter(y * y, g) - my * my
    sxy = _filter(x * y, g) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    s = ((2 * mx * my + c1) / (mx * mx + my * my + c1)) * cs
    return s.mean((1, 2)), cs.mean((1, 2))


def ssim(a: Any, b: Any, *, data_range: Any, win_size: int = 11, sigma: float = 1.5) -> float:
    L = _check_range(data_range)
    x, y = _pair(a, b)
    if min(x.shape[1:3]) < win_size:
        raise EvaluationError(f"images of {x.shape[1]}x{x.shape[2]} are smaller than the SSIM window ({win_size})")
    s, _ = _ssim_cs(x, y, L, gaussian_window(win_size, sigma))
    return float(s.mean())


def ms_ssim_scales(shape: tuple[int, int], win_size: int) -> int:
    side, n = min(shape), 0
    while n < len(MS_WEIGHTS) and side >= win_size:
        n += 1
        side //= 2
    return n


def _ms_ssim_per_image(x: np.ndarray, y: np.ndarray, L: float, win_size: int, sigma: float) -> tuple[np.ndarray, int]:
    scales = ms_ssim_scales(x.shape[1:3], win_size)
    if scales < 1:
        raise EvaluationError(f"images of {x.shape[1]}x{x.shape[2]} are smaller than the MS-SSIM window ({win_size})")
    w = np.array(MS_WEIGHTS[:scales])
    if scales < len(MS_WEIGHTS):  # the published weights as they are at full depth (sum 1.0001)
        w = w / w.sum()
    g = gaussian_window(win_size, sigma)
    vals = []
    for i in range(scales):
        s, cs = _ssim_cs(x, y, L, g)
        vals.append(np.maximum(s if i == scales - 1 else cs, 0.0))  # negative values clipped, as pytorch-msssim
        if i < scales - 1:
            h, wd = (x.shape[1] // 2) * 2, (x.shape[2] // 2) * 2
            x = x[:, :h, :wd].reshape(len(x), h // 2, 2, wd // 2, 2, -1).mean((2, 4))
            y = y[:, :h, :wd].reshape(len(y), h // 2, 2, wd // 2, 2, -1).mean((2, 4))
    out = np.prod(np.stack([v ** wi for v, wi in zip(vals, w)]), axis=0)  # (N, C)
    return out.mean(1), scales


def ms_ssim(a: Any, b: Any, *, data_range: Any, win_size: int = 11, sigma: float = 1.5) -> dict[str, float]:
    """Mean MS-SSIM over image pairs; returns ``{"ms_ssim", "scales"}``."""
    L = _check_range(data_range)
    x, y = _pair(a, b)
    v, scales = _ms_ssim_per_image(x, y, L, win_size, sigma)
    return {"ms_ssim": float(v.mean()), "scales": scales}


def ms_ssim_diversity(images: Any, *, data_range: Any, pairs: int = 500, seed: int = 0,
                      win_size: int = 7, sigma: float = 1.5) -> dict[str, float]:
    """Mean MS-SSIM of ``pairs`` random pairs of distinct images of one set
    (``numpy.random.default_rng(seed)``); lower means a more diverse set."""
    L = _check_range(data_range)
    x = _images(images, "images")
    if len(x) < 2:
        raise EvaluationError("MS-SSIM diversity needs at least 2 images")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(x), pairs)
    j = (i + rng.integers(1, len(x), pairs)) % len(x)
    v, scales = _ms_ssim_per_image(x[i], x[j], L, win_size, sigma)
    return {"ms_ssim_diversity": float(v.mean()), "pairs": int(pairs), "scales": scales, "win_size": win_size}


def autoencoder_metrics(images: Any, reconstructions: Any, *, data_range: Any, win_size: int = 7,
                        sigma: float = 1.5) -> dict[str, Any]:
    """Reconstruction quality of an autoencoder: PSNR and MS-SSIM with an explicit data range."""
    m = ms_ssim(images, reconstructions, data_range=data_range, win_size=win_size, sigma=sigma)
    p = psnr_detail(images, reconstructions, data_range=data_range)
    return {"psnr": p["psnr"], "psnr_exact_images": p["exact"], "ms_ssim": m["ms_ssim"],
            "ms_ssim_scales": m["scales"], "ms_ssim_win_size": win_size, "ms_ssim_sigma": sigma,
            "data_range": _check_range(data_range)}
