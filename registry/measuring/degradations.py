"""Known degradations of real images, for the extractor sanity checks (:mod:`.sanity`).

Pure numpy and deterministic: the same images, strength and seed give the same bytes.
An image is an array (H, W) or (H, W, C) with its value range ``(lo, hi)`` (as
:func:`.reference_sets.read_image` returns it); a degraded image keeps its shape, dtype and
range: values are clipped to the range and, for an integer image, rounded (a degraded copy
is a picture a model could have written).

Each degradation has a strength; the strengths the checks use are :data:`STRENGTHS`
(mild to strong, each clearly visible on a 32 to 64 px patch):

- ``blur``: Gaussian blur of standard deviation ``s`` pixels times ``max(1, shorter side / 64)``
  (reflecting borders, truncated at 3 sigma);
- ``noise``: additive Gaussian noise of standard deviation ``s`` times the value range;
- ``shift``: intensity shift, ``s`` times the value range added to every pixel (clipped);
- ``downup``: down-sampling by the factor ``s`` (area average) and up again (bilinear), the
  detail a low-resolution model loses;
- ``mean``: a fraction ``s`` of the images replaced by the mean image of the set (of the
  images of the same shape and range); the images replaced at a lower strength are
  replaced at every higher one, so the strengths nest.

:func:`flat` is the flat-image "model": each image replaced by its own mean colour.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np

from ..errors import EvaluationError

#: an image with its value range, as reference sets read them
Image = tuple[np.ndarray, tuple[float, float]]

#: the degradations the monotonicity checks apply, in the order they are reported
DEGRADATIONS = ("blur", "noise", "shift", "downup", "mean")
#: their strengths, mild to strong (units above)
STRENGTHS: dict[str, tuple[float, ...]] = {
    "blur": (0.5, 1.0, 2.0),
    "noise": (0.02, 0.05, 0.1),
    "shift": (0.02, 0.05, 0.1),
    "downup": (2.0, 4.0, 8.0),
    "mean": (0.1, 0.25, 0.5),
}
#: what each strength means, for tables and provenance
UNITS = {
    "blur": "Gaussian sigma in px (x max(1, shorter side/64))",
    "noise": "Gaussian noise std, fraction of the value range",
    "shift": "added intensity, fraction of the value range",
    "downup": "down-sampling factor (area), then bilinear up",
    "mean": "fraction of the images replaced by the mean image",
}


def _finish(x: np.ndarray, like: np.ndarray, vr: tuple[float, float]) -> np.ndarray:
    """Clip to the value range; round back to an integer dtype."""
    x = np.clip(x, vr[0], vr[1])
    if like.dtype.kind in "ui":
        return np.rint(x).astype(like.dtype)
    return x.astype(like.dtype)


def _as_float(a: np.ndarray) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    return x[..., None] if x.ndim == 2 else x


def _back(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    return x[..., 0] if like.ndim == 2 else x


def _check(images: Sequence[Image]) -> None:
    for i, (a, vr) in enumerate(images):
        if np.asarray(a).ndim not in (2, 3):
            raise EvaluationError(f"image {i}: expected a 2-D image (H, W) or (H, W, C), got shape {np.shape(a)}")
        if not float(vr[1]) > float(vr[0]):
            raise EvaluationError(f"image {i}: value range {vr} is empty")


def gaussian_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3.0 * sigma)))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _convolve_axis(x: np.ndarray, k: np.ndarray, axis: int) -> np.ndarray:
    r = len(k) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    n = x.shape[axis]
    if r >= n:  # reflect needs the border to be shorter than the side: fall back to the edge value
        xp = np.pad(x, pad, mode="edge")
    else:
        xp = np.pad(x, pad, mode="reflect")
    out = np.zeros_like(x)
    for j, w in enumerate(k):
        out += w * np.take(xp, np.arange(j, j + n), axis=axis)
    return out


def blur(a: np.ndarray, vr: tuple[float, float], sigma: float) -> np.ndarray:
    """Gaussian blur of ``sigma`` px times ``max(1, shorter side / 64)``."""
    x = _as_float(a)
    s = float(sigma) * max(1.0, min(x.shape[:2]) / 64.0)
    k = gaussian_kernel(s)
    return _finish(_back(_convolve_axis(_convolve_axis(x, k, 0), k, 1), a), a, vr)


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): each output sample the average of the input it covers (fractional edges weighted)."""
    m = np.zeros((n_out, n_in))
    edges = np.linspace(0.0, n_in, n_out + 1)
    for o in range(n_out):
        lo, hi = edges[o], edges[o + 1]
        for i in range(int(np.floor(lo)), int(np.ceil(hi))):
            m[o, i] = min(hi, i + 1) - max(lo, i)
    return m / m.sum(axis=1, keepdims=True)


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): linear interpolation at pixel centres (``align_corners=False``, edges clamped)."""
    m = np.zeros((n_out, n_in))
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1.0)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = pos - i0
    m[np.arange(n_out), i0] += 1.0 - w
    m[np.arange(n_out), i1] += w
    return m


def downup(a: np.ndarray, vr: tuple[float, float], factor: float) -> np.ndarray:
    """Down-sample by ``factor`` (area average; at least 1 px a side), then up again (bilinear)."""
    x = _as_float(a)
    h, w = x.shape[:2]
    hs, ws = max(1, int(round(h / factor))), max(1, int(round(w / factor)))
    dh, dw = _area_matrix(h, hs), _area_matrix(w, ws)
    uh, uw = _bilinear_matrix(hs, h), _bilinear_matrix(ws, w)
    small = np.einsum("ah,hwc,bw->abc", dh, x, dw)
    return _finish(_back(np.einsum("ha,abc,wb->hwc", uh, small, uw), a), a, vr)


def shift(a: np.ndarray, vr: tuple[float, float], amount: float) -> np.ndarray:
    """Every pixel plus ``amount`` times the value range (clipped)."""
    return _finish(np.asarray(a, dtype=np.float64) + float(amount) * (vr[1] - vr[0]), a, vr)


def _rng(seed: int, *what: object) -> np.random.Generator:
    """A generator for one (seed, degradation, strength, ...): independent streams, same bytes every run."""
    digest = hashlib.sha256(repr((int(seed), *what)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def degrade(images: Sequence[Image], name: str, strength: float, seed: int = 0) -> list[Image]:
    """``images`` with degradation ``name`` at ``strength`` (:data:`DEGRADATIONS`)."""
    _check(images)
    if name not in DEGRADATIONS:
        raise EvaluationError(f"unknown degradation {name!r}", hint=f"known: {', '.join(DEGRADATIONS)}")
    if not (np.isfinite(strength) and strength > 0):
        raise EvaluationError(f"{name}: strength {strength} must be a positive number")
    if name == "mean":
        return _replace_by_mean(images, strength, seed)
    if name == "noise":
        out = []
        for i, (a, vr) in enumerate(images):
            z = _rng(seed, "noise", float(strength), i).standard_normal(np.shape(a))
            out.append((_finish(np.asarray(a, np.float64) + z * strength * (vr[1] - vr[0]), a, vr), vr))
        return out
    fn: Callable[[np.ndarray, tuple[float, float], float], np.ndarray] = {
        "blur": blur, "shift": shift, "downup": downup}[name]
    return [(fn(a, vr, strength), vr) for a, vr in images]


def _replace_by_mean(images: Sequence[Image], fraction: float, seed: int) -> list[Image]:
    if fraction > 1:
        raise EvaluationError(f"mean: fraction {fraction} is above 1")
    order = _rng(seed, "mean").permutation(len(images))  # one order for every fraction: they nest
    chosen = set(order[:int(round(fraction * len(images)))].tolist())
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, (a, vr) in enumerate(images):
        groups.setdefault((np.shape(a), tuple(vr)), []).append(i)
    means = {k: np.mean([np.asarray(images[i][0], np.float64) for i in idx], axis=0) for k, idx in groups.items()}
    out = list(images)
    for i in sorted(chosen):
        a, vr = images[i]
        out[i] = (_finish(means[(np.shape(a), tuple(vr))], a, vr), vr)
    return out


def flat(images: Sequence[Image]) -> list[Image]:
    """The flat-image "model": each image replaced by its own mean colour (per channel)."""
    _check(images)
    out = []
    for a, vr in images:
        x = _as_float(a)
        m = np.broadcast_to(x.mean(axis=(0, 1), keepdims=True), x.shape)
        out.append((_finish(_back(np.array(m), a), a, vr), vr))
    return out
