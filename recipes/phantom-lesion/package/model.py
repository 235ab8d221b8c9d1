"""phantom-lesion: a procedural (not learned) generator of CT-like head phantoms with
elliptical lesions and their binary masks, in 2D (128x128) or 3D (64x64x64).

synthmed-1 package. Imports only numpy and the standard library (no weights).

    from model import build
    m = build(package_dir, "cpu")
    out = m.sample([0, 1], lesion_count=3)
    # {"image": int16 (2, 128, 128) HU, "mask": uint8 (2, 128, 128) in {0, 1},
    #  "volume": int16 (2, 64, 64, 64) HU (D, H, W), "volume_mask": uint8 (2, 64, 64, 64)}

``dims`` (2, 3 or 0 = both, the default) chooses what is rendered. synthmed's runner
wants every output the record declares, so the outputs not asked for are still returned,
as all-air (-1000 HU) images with empty masks of the declared shapes; the rendered ones
do not depend on ``dims`` (2D and 3D draw from separate streams of the same seed).

Parameters (the record's ``inputs``; defaults in config.json):
    dims            0 | 2 | 3: render both (0), only the 2D image (2), only the 3D volume (3)
    lesion_count    int 0..10
    lesion_size_mm  [min, max] lesion diameter in mm, 2 <= min <= max <= 60
    contrast_hu     float -300..300: HU added inside a lesion (negative = hypodense)
    noise_hu        float 0..100: standard deviation of the Gaussian noise in HU

The head is the modified Shepp-Logan phantom (Toft's version of Shepp & Logan 1974; the
3D ellipsoids after Kak & Slaney) mapped to CT numbers (air -1000, bone 800, brain 20-40,
CSF 5 HU), jittered per seed in size (+-5%), rotation (+-8 degrees) and tissue values
(+-4 HU), lightly blurred (partial volume), with lesions placed wholly inside the brain,
not overlapping each other. Everything a sample draws comes from
``numpy.random.default_rng([seed, 2])`` (2D) or ``default_rng([seed, 3])`` (3D), so
sample i depends only on seeds[i] and the params.

Bare API: ``m.render(seed, **params)`` renders one sample (a dict of unbatched arrays);
``sample`` is a loop over it with the arrays stacked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

# Modified Shepp-Logan (Toft), 2D: (tissue, a, b, x0, y0, phi_deg)
ELLIPSES_2D = [
    ("skull", 0.69, 0.92, 0.0, 0.0, 0.0),
    ("brain", 0.6624, 0.8740, 0.0, -0.0184, 0.0),
    ("csf", 0.1100, 0.3100, 0.22, 0.0, -18.0),
    ("csf", 0.1600, 0.4100, -0.22, 0.0, 18.0),
    ("grey", 0.2100, 0.2500, 0.0, 0.35, 0.0),
    ("grey", 0.0460, 0.0460, 0.0, 0.1, 0.0),
    ("grey", 0.0460, 0.0460, 0.0, -0.1, 0.0),
    ("grey", 0.0460, 0.0230, -0.08, -0.605, 0.0),
    ("grey", 0.0230, 0.0230, 0.0, -0.606, 0.0),
    ("grey", 0.0230, 0.0460, 0.06, -0.605, 0.0),
]
# 3D (Kak & Slaney style): (tissue, a, b, c, x0, y0, z0, phi_deg)
ELLIPSOIDS_3D = [
    ("skull", 0.69, 0.92, 0.81, 0.0, 0.0, 0.0, 0.0),
    ("brain", 0.6624, 0.874, 0.78, 0.0, -0.0184, 0.0, 0.0),
    ("csf", 0.11, 0.31, 0.22, 0.22, 0.0, 0.0, -18.0),
    ("csf", 0.16, 0.41, 0.28, -0.22, 0.0, 0.0, 18.0),
    ("grey", 0.21, 0.25, 0.41, 0.0, 0.35, -0.15, 0.0),
    ("grey", 0.046, 0.046, 0.05, 0.0, 0.1, 0.25, 0.0),
    ("grey", 0.046, 0.046, 0.05, 0.0, -0.1, 0.25, 0.0),
    ("grey", 0.046, 0.023, 0.05, -0.08, -0.605, 0.0, 0.0),
    ("grey", 0.023, 0.023, 0.02, 0.0, -0.606, 0.0, 0.0),
    ("grey", 0.023, 0.046, 0.02, 0.06, -0.605, 0.0, 0.0),
]
# CT numbers; each ellipse REPLACES the value under it (painter's order), not additive.
TISSUE_HU = {"air": -1000.0, "skull": 800.0, "brain": 30.0, "csf": 5.0, "grey": 40.0}
HU_MIN, HU_MAX = -1024, 3071


def _blur(a: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 smoothing along every axis (edges replicated)."""
    for ax in range(a.ndim):
        p = np.pad(a, [(1, 1) if i == ax else (0, 0) for i in range(a.ndim)], mode="edge")
        lo = np.take(p, range(0, a.shape[ax]), axis=ax)
        mid = np.take(p, range(1, a.shape[ax] + 1), axis=ax)
        hi = np.take(p, range(2, a.shape[ax] + 2), axis=ax)
        a = 0.25 * lo + 0.5 * mid + 0.25 * hi
    return a


def _rot(phi: float) -> np.ndarray:
    c, s = math.cos(phi), math.sin(phi)
    return np.array([[c, -s], [s, c]])


def _random_rotation_3d(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


class PhantomLesion:
    def __init__(self, package_dir: Path, device: str = "cpu") -> None:
        cfg = json.loads((Path(package_dir) / "config.json").read_text())
        self.size2 = int(cfg["size_2d"])
        self.size3 = int(cfg["size_3d"])
        self.spacing2 = float(cfg["spacing_mm_2d"])
        self.spacing3 = float(cfg["spacing_mm_3d"])
        self.defaults = dict(cfg["defaults"])
        self.device = device  # unused: numpy only

    # -- parameters ------------------------------------------------------------------
    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise TypeError(f"unknown parameters {sorted(unknown)}; expected {sorted(self.defaults)}")
        p = {**self.defaults, **params}
        if p["dims"] not in (0, 2, 3) or isinstance(p["dims"], bool):
            raise ValueError(f"dims must be 0 (both), 2 or 3, got {p['dims']!r}")
        n = p["lesion_count"]
        if isinstance(n, bool) or int(n) != n or not 0 <= int(n) <= 10:
            raise ValueError(f"lesion_count must be an integer in 0..10, got {n!r}")
        lo, hi = (float(v) for v in p["lesion_size_mm"])
        if not 2.0 <= lo <= hi <= 60.0:
            raise ValueError(f"lesion_size_mm must be [min, max] with 2 <= min <= max <= 60, got {p['lesion_size_mm']!r}")
        if not -300.0 <= float(p["contrast_hu"]) <= 300.0:
            raise ValueError(f"contrast_hu must be in -300..300, got {p['contrast_hu']!r}")
        if not 0.0 <= float(p["noise_hu"]) <= 100.0:
            raise ValueError(f"noise_hu must be in 0..100, got {p['noise_hu']!r}")
        return {"dims": int(p["dims"]), "lesion_count": int(n), "lesion_size_mm": (lo, hi),
                "contrast_hu": float(p["contrast_hu"]), "noise_hu": float(p["noise_hu"])}

    # -- one sample ----------------------------------------------------------------------
    def render(self, seed: int, **params: Any) -> dict[str, np.ndarray]:
        """One sample, unbatched: every output, the ones ``dims`` excludes left blank."""
        p = self._params(params)
        out: dict[str, np.ndarray] = {}
        if p["dims"] in (0, 2):
            out.update(self._render2(np.random.default_rng([int(seed), 2]), p))
        else:
            out["image"] = np.full((self.size2,) * 2, -1000, np.int16)
            out["mask"] = np.zeros((self.size2,) * 2, np.uint8)
        if p["dims"] in (0, 3):
            out.update(self._render3(np.random.default_rng([int(seed), 3]), p))
        else:
            out["volume"] = np.full((self.size3,) * 3, -1000, np.int16)
            out["volume_mask"] = np.zeros((self.size3,) * 3, np.uint8)
        return out

    def _render2(self, rng: np.random.Generator, p: dict[str, Any]) -> dict[str, np.ndarray]:
        n = self.size2
        c = (np.arange(n) + 0.5) / n * 2 - 1  # normalised coordinates, [-1, 1]
        yy, xx = np.meshgrid(-c, c, indexing="ij")  # y up
        scale = 1 + rng.uniform(-0.05, 0.05)
        R = _rot(math.radians(rng.uniform(-8, 8)))
        pts = np.stack([xx.ravel(), yy.ravel()]) / scale
        pts = R.T @ pts
        hu = {k: v + (rng.uniform(-4, 4) if k not in ("air", "skull") else 0.0) for k, v in TISSUE_HU.items()}
        img = np.full(n * n, hu["air"])
        brain = np.zeros(n * n, bool)
        for tissue, a, b, x0, y0, phi in ELLIPSES_2D:
            q = _rot(math.radians(phi)).T @ (pts - np.array([[x0], [y0]]))
            inside = (q[0] / a) ** 2 + (q[1] / b) ** 2 <= 1
            img[inside] = hu[tissue]
            if tissue == "brain":
                brain = inside
        img = img.reshape(n, n)
        brain = brain.reshape(n, n)
        # lesions: ellipses in pixel space, wholly inside the brain, not overlapping
        mask = np.zeros((n, n), bool)
        py, px = np.mgrid[:n, :n].astype(np.float64)
        placed = 0
        for _ in range(200 * max(p["lesion_count"], 1)):
            if placed >= p["lesion_count"]:
                break
            d = rng.uniform(*p["lesion_size_mm"]) / self.spacing2  # diameter in px
            ra = d / 2
            rb = ra * rng.uniform(0.6, 1.0)
            th = rng.uniform(0, math.pi)
            cy, cx = rng.uniform(0, n, 2)
            dy, dx = py - cy, px - cx
            u = math.cos(th) * dx + math.sin(th) * dy
            v = -math.sin(th) * dx + math.cos(th) * dy
            les = (u / ra) ** 2 + (v / rb) ** 2 <= 1
            if not les.any() or not brain[les].all() or (mask & _dilate(les)).any():
                continue
            mask |= les
            placed += 1
        img = img + p["contrast_hu"] * mask
        img = _blur(img) + rng.normal(0, p["noise_hu"], img.shape) if p["noise_hu"] > 0 else _blur(img)
        return {"image": np.clip(np.rint(img), HU_MIN, HU_MAX).astype(np.int16), "mask": mask.astype(np.uint8)}

    def _render3(self, rng: np.random.Generator, p: dict[str, Any]) -> dict[str, np.ndarray]:
        n = self.size3
        c = (np.arange(n) + 0.5) / n * 2 - 1
        zz, yy, xx = np.meshgrid(c, -c, c, indexing="ij")  # (D, H, W)
        scale = 1 + rng.uniform(-0.05, 0.05)
        R2 = _rot(math.radians(rng.uniform(-8, 8)))
        R = np.eye(3)
        R[:2, :2] = R2  # in-plane (axial) rotation
        pts = R.T @ (np.stack([xx.ravel(), yy.ravel(), zz.ravel()]) / scale)
        hu = {k: v + (rng.uniform(-4, 4) if k not in ("air", "skull") else 0.0) for k, v in TISSUE_HU.items()}
        vol = np.full(n ** 3, hu["air"])
        brain = np.zeros(n ** 3, bool)
        for tissue, a, b, cc, x0, y0, z0, phi in ELLIPSOIDS_3D:
            Rz = np.eye(3)
            Rz[:2, :2] = _rot(math.radians(phi))
            q = Rz.T @ (pts - np.array([[x0], [y0], [z0]]))
            inside = (q[0] / a) ** 2 + (q[1] / b) ** 2 + (q[2] / cc) ** 2 <= 1
            vol[inside] = hu[tissue]
            if tissue == "brain":
                brain = inside
        vol = vol.reshape(n, n, n)
        brain = brain.reshape(n, n, n)
        mask = np.zeros((n, n, n), bool)
        grid = np.stack(np.mgrid[:n, :n, :n].astype(np.float64))  # (3, D, H, W) voxel coords
        placed = 0
        for _ in range(200 * max(p["lesion_count"], 1)):
            if placed >= p["lesion_count"]:
                break
            d = rng.uniform(*p["lesion_size_mm"]) / self.spacing3
            radii = d / 2 * np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)])
            Q = _random_rotation_3d(rng)
            ctr = rng.uniform(0, n, 3)
            r = int(math.ceil(radii.max())) + 1
            lo = np.maximum(np.floor(ctr).astype(int) - r, 0)
            hi = np.minimum(np.floor(ctr).astype(int) + r + 1, n)
            sl = tuple(slice(a, b) for a, b in zip(lo, hi))
            rel = grid[(slice(None),) + sl] - ctr[:, None, None, None]
            q = np.tensordot(Q.T, rel, axes=1)
            les_local = ((q / radii[:, None, None, None]) ** 2).sum(0) <= 1
            if not les_local.any() or not brain[sl][les_local].all():
                continue
            les = np.zeros_like(mask)
            les[sl] = les_local
            if (mask & _dilate(les)).any():
                continue
            mask |= les
            placed += 1
        vol = vol + p["contrast_hu"] * mask
        vol = _blur(vol)
        if p["noise_hu"] > 0:
            vol = vol + rng.normal(0, p["noise_hu"], vol.shape)
        return {"volume": np.clip(np.rint(vol), HU_MIN, HU_MAX).astype(np.int16),
                "volume_mask": mask.astype(np.uint8)}

    # -- the synthmed-1 contract -----------------------------------------------------
    def sample(self, seeds: list[int], **params: Any) -> dict[str, np.ndarray]:
        self._params(params)
        if not seeds:
            s2, s3 = (0,) + (self.size2,) * 2, (0,) + (self.size3,) * 3
            return {"image": np.zeros(s2, np.int16), "mask": np.zeros(s2, np.uint8),
                    "volume": np.zeros(s3, np.int16), "volume_mask": np.zeros(s3, np.uint8)}
        outs = [self.render(s, **params) for s in seeds]
        return {k: np.stack([o[k] for o in outs]) for k in ("image", "mask", "volume", "volume_mask")}


def _dilate(m: np.ndarray) -> np.ndarray:
    """Binary dilation by one pixel/voxel along each axis (keeps lesions apart)."""
    out = m.copy()
    for ax in range(m.ndim):
        out[tuple(slice(1, None) if i == ax else slice(None) for i in range(m.ndim))] |= \
            m[tuple(slice(None, -1) if i == ax else slice(None) for i in range(m.ndim))]
        out[tuple(slice(None, -1) if i == ax else slice(None) for i in range(m.ndim))] |= \
            m[tuple(slice(1, None) if i == ax else slice(None) for i in range(m.ndim))]
    return out


def build(package_dir: Path, device: str = "cpu") -> PhantomLesion:
    return PhantomLesion(Path(package_dir), device)
