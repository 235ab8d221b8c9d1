"""retina-vessel-mask-tree: stage I of the dual-GAN miniature, version 2. A stochastic
vessel-tree model whose parameters were fitted to the vesselness masks of retina.jpg's
training region; it draws 64x64 binary retinal-vessel masks (the geometry of a fundus
patch) as a window onto a larger grown tree.

synthmed-1 package. Imports only numpy and the standard library.

    from model import build
    m = build(package_dir, "cpu")
    out = m.sample([0, 1])          # {"mask": uint8 (2, 64, 64), values 0 or 1}

The model (config.json holds the fitted parameters):
    a 192x192 canvas and a main direction phi, uniform per sample (in a fundus the vessels
    of one small window run roughly alike, away from the optic disc); Poisson(roots)
    vessels start on the canvas's back edge across phi, each heading phi plus Normal(0,
    spread); each vessel is a random walk of unit steps
    whose turning rate is an AR(1) process (persistence, turn_sd), its width log-normal
    (width_mu, width_sigma) tapering by `taper` per pixel; it ends on leaving the canvas's circumcircle,
    on tapering below min_width, or with probability end_rate / width per pixel; it branches with probability
    branch_rate per pixel while wider than branch_min_width, the branch taking a width
    fraction Uniform(0.45, 0.85) of its parent's and turning 25..75 degrees to a random
    side (down to depth 4). Edges are roughened by a radius jitter (edge_jitter, a
    5-step moving average of Gaussian noise). The centre 64x64 window is the sample.

Parameters (the record's ``inputs``):
    width_scale  float 0.5..2.0, default 1.0: multiplies every vessel width

Seeds: sample i is drawn from numpy.random.default_rng(seeds[i]) alone, so it does not
depend on the batch it is made in nor on the device; no network, nothing to run on a GPU.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

CANVAS = 192
SIZE = 64
MAX_DEPTH = 4
MAX_STEPS = 400
PARAMS = ("roots", "spread", "width_mu", "width_sigma", "taper", "min_width", "turn_sd", "persistence", "end_rate",
          "branch_rate", "branch_min_width", "edge_jitter")


class TreeModel:
    def __init__(self, params: dict[str, float]) -> None:
        missing = [k for k in PARAMS if k not in params]
        if missing:
            raise ValueError(f"config.json lacks the tree parameters {missing}")
        self.p = {k: float(params[k]) for k in PARAMS}
        lo = (CANVAS - SIZE) // 2
        self.window = (lo, lo + SIZE)

    # ------------------------------------------------------------ growing
    def _walk(self, rng: np.random.Generator, x: float, y: float, theta: float, w: float,
              depth: int, paths: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        p = self.p
        noise = rng.normal(0.0, p["turn_sd"], MAX_STEPS)
        turn = np.empty(MAX_STEPS)
        acc = 0.0
        for i in range(MAX_STEPS):  # AR(1) turning rate: smooth curves
            acc = p["persistence"] * acc + noise[i]
            turn[i] = acc
        th = theta + np.cumsum(turn)
        xs = x + np.cumsum(np.cos(th))
        ys = y + np.cumsum(np.sin(th))
        ws = w * np.exp(-p["taper"] * np.arange(1, MAX_STEPS + 1))
        ends = rng.random(MAX_STEPS) < p["end_rate"] / np.maximum(ws, 0.5)
        far = (xs - CANVAS / 2.0) ** 2 + (ys - CANVAS / 2.0) ** 2 > (0.75 * CANVAS) ** 2  # the canvas's circumcircle
        out = far | ends | (ws < p["min_width"])
        n = int(np.argmax(out)) if out.any() else MAX_STEPS
        # edge roughness: radius noise smoothed over 5 steps (unsmoothed noise makes skeleton spurs)
        jitter = 1.0 + p["edge_jitter"] * np.convolve(rng.standard_normal(MAX_STEPS + 4), np.full(5, 0.2), "valid")
        paths.append((xs[:n], ys[:n], ws[:n] * jitter[:n]))
        if depth >= MAX_DEPTH or n == 0:
            return
        forks = np.flatnonzero((rng.random(n) < p["branch_rate"]) & (ws[:n] > p["branch_min_width"]))
        for i in forks:
            frac = rng.uniform(0.45, 0.85)
            side = 1.0 if rng.random() < 0.5 else -1.0
            angle = side * math.radians(rng.uniform(25.0, 75.0))
            self._walk(rng, float(xs[i]), float(ys[i]), float(th[i]) + angle, float(ws[i]) * frac,
                       depth + 1, paths)

    def _paths(self, rng: np.random.Generator, width_scale: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        p = self.p
        paths: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        phi = float(rng.uniform(0.0, 2.0 * math.pi))  # the sample's main vessel direction
        c = CANVAS / 2.0
        for _ in range(int(rng.poisson(p["roots"]))):
            u = float(rng.uniform(-c, c))  # vessels start on the canvas's back edge across phi
            x = c - c * math.cos(phi) - u * math.sin(phi)
            y = c - c * math.sin(phi) + u * math.cos(phi)
            theta = phi + float(rng.normal(0.0, p["spread"]))
            w = width_scale * float(np.exp(rng.normal(p["width_mu"], p["width_sigma"])))
            self._walk(rng, x, y, theta, w, 0, paths)
        return paths

    # ------------------------------------------------------------ drawing
    def _draw(self, paths: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
        lo, hi = self.window
        out = np.zeros((SIZE, SIZE), bool)
        yy, xx = np.mgrid[0:SIZE, 0:SIZE]
        for xs, ys, ws in paths:
            r = np.maximum(ws, 0.7) / 2.0
            keep = (xs > lo - r - 1) & (xs < hi + r) & (ys > lo - r - 1) & (ys < hi + r)
            for cx, cy, rr in zip(xs[keep] - lo, ys[keep] - lo, r[keep]):
                y0, y1 = max(int(cy - rr), 0), min(int(cy + rr) + 2, SIZE)
                x0, x1 = max(int(cx - rr), 0), min(int(cx + rr) + 2, SIZE)
                if y0 >= y1 or x0 >= x1:
                    continue
                d2 = (yy[y0:y1, x0:x1] + 0.5 - cy) ** 2 + (xx[y0:y1, x0:x1] + 0.5 - cx) ** 2
                out[y0:y1, x0:x1] |= d2 <= rr * rr
        return out

    def one(self, seed: int, width_scale: float = 1.0) -> np.ndarray:
        rng = np.random.default_rng(int(seed))
        return self._draw(self._paths(rng, width_scale)).astype(np.uint8)

    def sample(self, seeds: list[int], width_scale: float = 1.0) -> dict[str, np.ndarray]:
        if not 0.5 <= float(width_scale) <= 2.0:
            raise ValueError(f"width_scale must lie in 0.5..2.0, got {width_scale}")
        masks = [self.one(s, float(width_scale)) for s in seeds]
        return {"mask": np.stack(masks) if masks else np.zeros((0, SIZE, SIZE), np.uint8)}


def build(package_dir: Any, device: str = "cpu") -> TreeModel:
    cfg = json.loads((Path(package_dir) / "config.json").read_text())
    return TreeModel(cfg["params"])
