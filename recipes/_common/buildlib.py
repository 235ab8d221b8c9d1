"""Shared helpers for the starter-model recipes (not part of any package).

- ``deterministic_zip``: zip a folder with sorted entries and fixed timestamps, so the
  same files always give the same bytes (with the same zlib).
- ``patch_features`` / ``frechet``: a small, honest patch-statistics Fréchet distance on
  hand-crafted features (no Inception network, so never call it FID).
- ``save_grid``: a PNG grid of samples for eyeballing.
- ``load_module``: import another recipe's script or a package's module by its path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np

ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def deterministic_zip(src_dir: Path, zip_path: Path) -> None:
    """Zip every regular file under ``src_dir`` (sorted, fixed dates and modes)."""
    files = sorted(p for p in src_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for p in files:
            name = p.relative_to(src_dir).as_posix()
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = (0o100644 << 16)
            zf.writestr(info, p.read_bytes(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    tmp.replace(zip_path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- patch statistics


def patch_features(x: np.ndarray) -> np.ndarray:
    """Hand-crafted features of RGB uint8 patches (N, H, W, 3) -> (N, 27) float64.

    Per channel: mean, std, 10/50/90th percentiles, mean |horizontal gradient|,
    mean |vertical gradient| (21); of the grey image: fraction of spectral power in
    4 radial frequency bands, mean |Laplacian|, and the R-G/B-G colour-ratio means
    folded into 1 value (6 in all).
    """
    x = x.astype(np.float64) / 255.0
    n = x.shape[0]
    flat = x.reshape(n, -1, 3)
    feats = [flat.mean(1), flat.std(1)]
    feats += [np.percentile(flat, q, axis=1) for q in (10, 50, 90)]
    feats.append(np.abs(np.diff(x, axis=2)).mean((1, 2)))
    feats.append(np.abs(np.diff(x, axis=1)).mean((1, 2)))
    g = x.mean(-1)
    g = g - g.mean((1, 2), keepdims=True)
    p = np.abs(np.fft.fftshift(np.fft.fft2(g), axes=(1, 2))) ** 2
    h, w = g.shape[1:]
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - h // 2, xx - w // 2) / (min(h, w) / 2)
    tot = p.sum((1, 2)) + 1e-12
    bands = [((r >= a) & (r < b)) for a, b in ((0, 0.125), (0.125, 0.25), (0.25, 0.5), (0.5, 2.0))]
    feats.append(np.stack([(p * m).sum((1, 2)) / tot for m in bands], 1))
    lap = np.abs(4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:])
    feats.append(lap.mean((1, 2))[:, None])
    feats.append((flat[..., 0] - flat[..., 2]).mean(1)[:, None])
    return np.concatenate(feats, 1)


def frechet(fa: np.ndarray, fb: np.ndarray, ref: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to features ``fa`` and ``fb``, after
    z-scoring every feature with the mean/std of ``ref`` (the held-out real set)."""
    from scipy import linalg

    mu, sd = ref.mean(0), ref.std(0) + 1e-8
    a, b = (fa - mu) / sd, (fb - mu) / sd
    m1, m2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(c1 @ c2, disp=False)
    covmean = covmean.real
    return float(((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def channel_stats_distance(xa: np.ndarray, xb: np.ndarray) -> float:
    """L2 distance between the per-channel (mean, std) vectors of two patch sets, in
    0..255 units (6 numbers: R/G/B mean and std over all pixels)."""
    def st(x: np.ndarray) -> np.ndarray:
        f = x.reshape(-1, 3).astype(np.float64)
        return np.concatenate([f.mean(0), f.std(0)])
    return float(np.linalg.norm(st(xa) - st(xb)))


def baselines(real_eval: np.ndarray, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Trivial generators to put a distance in context: uniform noise, and the mean
    real patch plus small Gaussian noise (so its covariance is not singular)."""
    shape = (n,) + real_eval.shape[1:]
    uni = rng.integers(0, 256, size=shape, dtype=np.uint8)
    mean = real_eval.astype(np.float64).mean(0)
    meanp = np.clip(mean[None] + rng.normal(0, 2.0, size=shape), 0, 255).round().astype(np.uint8)
    return {"uniform_noise": uni, "mean_patch_plus_noise": meanp}


# ---------------------------------------------------------------- pictures


def save_grid(images: np.ndarray, path: Path, ncol: int = 4, pad: int = 2, scale: int = 1) -> None:
    """images: (N, H, W, C) uint8 or (N, H, W) uint8 -> one PNG grid."""
    from PIL import Image

    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, -1)
    n, h, w, c = images.shape
    nrow = (n + ncol - 1) // ncol
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, ncol)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = images[i]
    img = Image.fromarray(grid)
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def load_module(name: str, path: Path) -> ModuleType:
    """Import the file ``path`` (another recipe's ``train.py``, a package's ``model.py``) as
    module ``name``, registered in ``sys.modules`` (so pickling and dataclasses see it)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
