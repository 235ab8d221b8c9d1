"""retina-patch-ddpm: a small class-conditional DDPM (UNet) with a DDIM sampler making
32x32 RGB patches of a colour fundus photograph (inside the fundus disc).

synthmed-1 package. Imports only torch, numpy and the standard library.

    from model import build
    m = build(package_dir, "cpu")
    out = m.sample([0, 1], steps=25, label="vessel")   # {"image": uint8 (2, 32, 32, 3)}

Parameters (the record's ``inputs``):
    steps     int 5..250, default 25: DDIM steps (eta = 0, deterministic given the seed)
    label     "any" | "vessel" | "background", default "any" ("any" = unconditional,
              the null class the model was also trained on)
    guidance  float 0..10, default 1.0: classifier-free guidance scale (1.0 = plain
              conditional; ignored for label "any")

Bare API (for benchmarks against a plain loop):
    x_T = m.latents(seeds)                     # (N, 3, 32, 32), one torch.Generator per seed
    v   = m.forward_batch(x_t, t, y)           # one UNet call (v-prediction, standardised
                                               # pixels); t: (N,) long, y: (N,) long
    x0  = m.ddim(x_T, steps=25, label="any")   # the whole sampler, float in [-1, 1]
    img = m.to_uint8(x0)

Batch invariance: every network call is padded to a multiple of 8 rows (padding rows are
dropped). Without it, on the CPU we tested (torch 2.13, 2 threads), 25 DDIM steps gave
float differences of up to 1.2e-7 between batch sizes 1, 7 and 64 (no uint8 pixel flipped
in 64 samples, but nothing guarantees that); with it, the floats themselves are
bit-identical for batch sizes 1, 7 and 64.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PAD_MULTIPLE = 8
LABELS = {"vessel": 0, "background": 1, "any": 2}


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int) -> None:
        super().__init__()
        self.n1 = nn.GroupNorm(8, cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(temb, cout)
        self.n2 = nn.GroupNorm(8, cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        h = h + self.t(emb)[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """32x32 UNet: channels (c, 2c, 2c) at 32, 16, 8 px; one res block per level and
    side; class embedding (vessel, background, null) added to the time embedding."""

    def __init__(self, ch: int = 32, num_classes: int = 3) -> None:
        super().__init__()
        temb = ch * 4
        self.ch = ch
        self.temb = nn.Sequential(nn.Linear(ch, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.cemb = nn.Embedding(num_classes, temb)
        c1, c2, c3 = ch, ch * 2, ch * 2
        self.inc = nn.Conv2d(3, c1, 3, padding=1)
        self.d1 = ResBlock(c1, c1, temb)
        self.down1 = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.d2 = ResBlock(c1, c2, temb)
        self.down2 = nn.Conv2d(c2, c2, 3, stride=2, padding=1)
        self.d3 = ResBlock(c2, c3, temb)
        self.mid = ResBlock(c3, c3, temb)
        self.u3 = ResBlock(c3 + c3, c2, temb)
        self.up2 = nn.Conv2d(c2, c2, 3, padding=1)
        self.u2 = ResBlock(c2 + c2, c1, temb)
        self.up1 = nn.Conv2d(c1, c1, 3, padding=1)
        self.u1 = ResBlock(c1 + c1, c1, temb)
        self.outn = nn.GroupNorm(8, c1)
        self.outc = nn.Conv2d(c1, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.temb(timestep_embedding(t, self.ch)) + self.cemb(y)
        h1 = self.d1(self.inc(x), emb)                     # 32
        h2 = self.d2(self.down1(h1), emb)                  # 16
        h3 = self.d3(self.down2(h2), emb)                  # 8
        h = self.mid(h3, emb)
        h = self.u3(torch.cat([h, h3], 1), emb)            # 8
        h = self.up2(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.u2(torch.cat([h, h2], 1), emb)            # 16
        h = self.up1(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.u1(torch.cat([h, h1], 1), emb)            # 32
        return self.outc(F.silu(self.outn(h)))


def cosine_alphas_cumprod(T: int) -> torch.Tensor:
    s = 0.008
    x = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((x + s) / (1 + s) * math.pi / 2) ** 2
    ac = f / f[0]
    betas = (1 - ac[1:] / ac[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0).float()


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a .safetensors file (JSON header + raw little-endian tensors; no pickle)
    with the standard library and numpy, so the package needs no extra dependency."""
    dtypes = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "BF16": None,
              "I64": np.int64, "I32": np.int32, "U8": np.uint8}
    data = Path(path).read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    body = memoryview(data)[8 + n:]
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = dtypes.get(info["dtype"])
        if dt is None:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        arr = np.frombuffer(body[start:end], dtype=np.dtype(dt).newbyteorder("<")).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.astype(dt, copy=True))
    return out


class RetinaPatchDDPM:
    def __init__(self, package_dir: Path, device: str = "cpu") -> None:
        package_dir = Path(package_dir)
        cfg = json.loads((package_dir / "config.json").read_text())
        self.size = int(cfg["size"])
        self.T = int(cfg["T"])
        self.device = torch.device(device)
        self.net = UNet(int(cfg["ch"]))
        state = {k: v.float() for k, v in _load_safetensors(package_dir / "weights.safetensors").items()}
        self.net.load_state_dict(state)
        self.net.to(self.device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.ac = cosine_alphas_cumprod(self.T).to(self.device)
        # the model works on per-channel standardised pixels: z = (x - mean) / std, x in [-1, 1]
        self.mean = torch.tensor(cfg["mean"], dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.lo, self.hi = (-1 - self.mean) / self.std, (1 - self.mean) / self.std

    # -- bare pieces ---------------------------------------------------------------
    def latents(self, seeds: list[int]) -> torch.Tensor:
        xs = [torch.randn(3, self.size, self.size, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.stack(xs).to(self.device)

    @torch.inference_mode()
    def forward_batch(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(x, t, y)

    def _v(self, x: torch.Tensor, t: int, label: int, guidance: float) -> torch.Tensor:
        n = x.shape[0]
        pad = -n % PAD_MULTIPLE
        if pad:
            x = torch.cat([x, torch.zeros(pad, *x.shape[1:], device=x.device)])
        m = x.shape[0]
        tt = torch.full((m,), t, dtype=torch.long, device=x.device)
        yc = torch.full((m,), label, dtype=torch.long, device=x.device)
        v = self.net(x, tt, yc)
        if label != LABELS["any"] and guidance != 1.0:
            vu = self.net(x, tt, torch.full_like(yc, LABELS["any"]))
            v = vu + guidance * (v - vu)
        return v[:n]

    @torch.inference_mode()
    def ddim(self, x: torch.Tensor, steps: int = 25, label: str = "any", guidance: float = 1.0) -> torch.Tensor:
        lab = LABELS[label]
        ts = np.unique(np.linspace(0, self.T - 1, steps).round().astype(np.int64))[::-1]
        for i, t in enumerate(ts):
            a_t = self.ac[int(t)]
            a_prev = self.ac[int(ts[i + 1])] if i + 1 < len(ts) else torch.tensor(1.0, device=x.device)
            v = self._v(x, int(t), lab, guidance)  # v-prediction: v = sqrt(a) eps - sqrt(1 - a) x0
            x0 = a_t.sqrt() * x - (1 - a_t).sqrt() * v
            x0 = torch.maximum(torch.minimum(x0, self.hi), self.lo)
            eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        return x * self.std + self.mean

    @staticmethod
    def to_uint8(x: torch.Tensor) -> np.ndarray:
        x = ((x.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
        return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    # -- the synthmed-1 contract -------------------------------------------------
    def sample(self, seeds: list[int], steps: int = 25, label: str = "any", guidance: float = 1.0,
               **extra: Any) -> dict[str, np.ndarray]:
        if extra:
            raise TypeError(f"unknown parameters {sorted(extra)}; expected steps, label, guidance")
        if isinstance(steps, bool) or int(steps) != steps or not 5 <= int(steps) <= 250:
            raise ValueError(f"steps must be an integer in 5..250, got {steps!r}")
        if label not in LABELS:
            raise ValueError(f"label must be one of {sorted(LABELS)}, got {label!r}")
        if not 0.0 <= float(guidance) <= 10.0:
            raise ValueError(f"guidance must be in 0..10, got {guidance!r}")
        if not seeds:
            return {"image": np.zeros((0, self.size, self.size, 3), np.uint8)}
        x = self.ddim(self.latents(list(seeds)), int(steps), label, float(guidance))
        return {"image": self.to_uint8(x)}


def build(package_dir: Path, device: str = "cpu") -> RetinaPatchDDPM:
    return RetinaPatchDDPM(Path(package_dir), device)
