"""retina-patch-ldm: a Medfusion-style latent diffusion model for 32x32 colour fundus
patches: a small VAE (downsampling 4: 32x32x3 pixels <-> 8x8x4 latents) and a
class-conditional latent DDPM (UNet on the latents, v-prediction, cosine schedule) with
classifier-free guidance and a DDIM sampler.

synthmed-1 package. Imports only torch, numpy and the standard library.

    from model import build
    m = build(package_dir, "cpu")
    out = m.sample([0, 1], steps=25, label="vessel")   # {"image": uint8 (2, 32, 32, 3)}

Parameters (the record's ``inputs``):
    steps     int 5..250, default 25: DDIM steps (eta = 0, deterministic given the seed)
    label     "any" | "vessel" | "background", default "any" (the null class)
    guidance  float 0..10, default 1.0: classifier-free guidance scale (ignored for "any")

Bare API:
    z_T = m.latents(seeds)                  # (N, 4, 8, 8), one torch.Generator per seed
    z0  = m.ddim(z_T, steps, label, guidance)
    x   = m.decode(z0)                      # float pixels in [-1, 1], (N, 3, 32, 32)
    z   = m.encode(x)                       # the VAE's posterior mean (scaled latents)
    m.reconstruct(x)                        # decode(encode(x)): the autoencoder alone

Every network call is padded to a multiple of 8 rows, so a sample does not depend on the
batch it was made in.
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


class Res(nn.Module):
    """GroupNorm-SiLU-conv residual block, with an optional embedding added in between."""

    def __init__(self, cin: int, cout: int, temb: int = 0) -> None:
        super().__init__()
        self.n1 = nn.GroupNorm(8, cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(temb, cout) if temb else None
        self.n2 = nn.GroupNorm(8, cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        if self.t is not None and emb is not None:
            h = h + self.t(emb)[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return h + self.skip(x)


class VAE(nn.Module):
    """32x32x3 <-> 8x8xZ (two stride-2 downsamplings: a downsampling factor of 4)."""

    def __init__(self, ch: int = 32, z: int = 4) -> None:
        super().__init__()
        c1, c2 = ch, ch * 2
        self.e_in = nn.Conv2d(3, c1, 3, padding=1)
        self.e1 = Res(c1, c1)
        self.e_d1 = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.e2 = Res(c1, c2)
        self.e_d2 = nn.Conv2d(c2, c2, 3, stride=2, padding=1)
        self.e3 = Res(c2, c2)
        self.e_n = nn.GroupNorm(8, c2)
        self.e_out = nn.Conv2d(c2, 2 * z, 3, padding=1)
        self.d_in = nn.Conv2d(z, c2, 3, padding=1)
        self.d3 = Res(c2, c2)
        self.d_u2 = nn.Conv2d(c2, c2, 3, padding=1)
        self.d2 = Res(c2, c1)
        self.d_u1 = nn.Conv2d(c1, c1, 3, padding=1)
        self.d1 = Res(c1, c1)
        self.d_n = nn.GroupNorm(8, c1)
        self.d_out = nn.Conv2d(c1, 3, 3, padding=1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.e1(self.e_in(x))
        h = self.e2(self.e_d1(h))
        h = self.e3(self.e_d2(h))
        mean, logvar = self.e_out(F.silu(self.e_n(h))).chunk(2, dim=1)
        return mean, logvar.clamp(-20, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.d3(self.d_in(z))
        h = self.d2(self.d_u2(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        h = self.d1(self.d_u1(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        return self.d_out(F.silu(self.d_n(h)))


class LatentUNet(nn.Module):
    """UNet on 8x8 latents: channels (c, 2c) at 8 and 4; class embedding (vessel,
    background, null) added to the time embedding."""

    def __init__(self, ch: int = 64, z: int = 4, num_classes: int = 3) -> None:
        super().__init__()
        temb = ch * 4
        self.ch = ch
        self.temb = nn.Sequential(nn.Linear(ch, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.cemb = nn.Embedding(num_classes, temb)
        c1, c2 = ch, ch * 2
        self.inc = nn.Conv2d(z, c1, 3, padding=1)
        self.d1 = Res(c1, c1, temb)
        self.down = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.d2 = Res(c1, c2, temb)
        self.mid1 = Res(c2, c2, temb)
        self.mid2 = Res(c2, c2, temb)
        self.u2 = Res(c2 + c2, c1, temb)
        self.up = nn.Conv2d(c1, c1, 3, padding=1)
        self.u1 = Res(c1 + c1, c1, temb)
        self.outn = nn.GroupNorm(8, c1)
        self.outc = nn.Conv2d(c1, z, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.temb(timestep_embedding(t, self.ch)) + self.cemb(y)
        h1 = self.d1(self.inc(x), emb)                       # 8
        h2 = self.d2(self.down(h1), emb)                     # 4
        h = self.mid2(self.mid1(h2, emb), emb)
        h = self.u2(torch.cat([h, h2], 1), emb)              # 4
        h = self.up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.u1(torch.cat([h, h1], 1), emb)              # 8
        return self.outc(F.silu(self.outn(h)))


def cosine_alphas_cumprod(T: int) -> torch.Tensor:
    s = 0.008
    x = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((x + s) / (1 + s) * math.pi / 2) ** 2
    ac = f / f[0]
    betas = (1 - ac[1:] / ac[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0).float()


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a .safetensors file (JSON header + raw little-endian tensors; no pickle)."""
    dtypes = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32,
              "U8": np.uint8}
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


def _padded(fn: Any, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    """Call ``fn`` on rows padded to a multiple of PAD_MULTIPLE; drop the padding."""
    n = x.shape[0]
    pad = -n % PAD_MULTIPLE
    if pad:
        x = torch.cat([x, torch.zeros(pad, *x.shape[1:], device=x.device, dtype=x.dtype)])
        rest = tuple(torch.cat([r, r[:1].expand(pad, *r.shape[1:])]) for r in rest)
    return fn(x, *rest)[:n]


class RetinaPatchLDM:
    def __init__(self, package_dir: Path, device: str = "cpu") -> None:
        package_dir = Path(package_dir)
        cfg = json.loads((package_dir / "config.json").read_text())
        self.size, self.zc, self.zs = int(cfg["size"]), int(cfg["z_channels"]), int(cfg["size"]) // 4
        self.T = int(cfg["T"])
        self.device = torch.device(device)
        state = {k: v.float() for k, v in _load_safetensors(package_dir / "weights.safetensors").items()}
        self.vae = VAE(int(cfg["vae_ch"]), self.zc)
        self.net = LatentUNet(int(cfg["unet_ch"]), self.zc)
        self.vae.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("vae.")})
        self.net.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("unet.")})
        for mod in (self.vae, self.net):
            mod.to(self.device).eval()
            for p in mod.parameters():
                p.requires_grad_(False)
        self.ac = cosine_alphas_cumprod(self.T).to(self.device)
        self.scale = float(cfg["latent_scale"])  # latents are divided by their training std
        self.mean = torch.tensor(cfg["mean"], dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    # -- bare pieces ---------------------------------------------------------------
    def latents(self, seeds: list[int]) -> torch.Tensor:
        zs = [torch.randn(self.zc, self.zs, self.zs, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.stack(zs).to(self.device)

    @torch.inference_mode()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] (N, 3, 32, 32) -> scaled posterior means (N, 4, 8, 8)."""
        return _padded(lambda v: self.vae.encode((v - self.mean) / self.std)[0], x.to(self.device)) / self.scale

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> pixels in [-1, 1]."""
        x = _padded(self.vae.decode, z * self.scale) * self.std + self.mean
        return x.clamp(-1.0, 1.0)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def _v(self, z: torch.Tensor, t: int, label: int, guidance: float) -> torch.Tensor:
        m = z.shape[0]
        tt = torch.full((m,), t, dtype=torch.long, device=z.device)
        yc = torch.full((m,), label, dtype=torch.long, device=z.device)
        v = _padded(self.net, z, tt, yc)
        if label != LABELS["any"] and guidance != 1.0:
            vu = _padded(self.net, z, tt, torch.full_like(yc, LABELS["any"]))
            v = vu + guidance * (v - vu)
        return v

    @torch.inference_mode()
    def ddim(self, z: torch.Tensor, steps: int = 25, label: str = "any", guidance: float = 1.0) -> torch.Tensor:
        lab = LABELS[label]
        ts = np.unique(np.linspace(0, self.T - 1, steps).round().astype(np.int64))[::-1]
        for i, t in enumerate(ts):
            a_t = self.ac[int(t)]
            a_prev = self.ac[int(ts[i + 1])] if i + 1 < len(ts) else torch.tensor(1.0, device=z.device)
            v = self._v(z, int(t), lab, guidance)
            z0 = a_t.sqrt() * z - (1 - a_t).sqrt() * v
            eps = (z - a_t.sqrt() * z0) / (1 - a_t).sqrt()
            z = a_prev.sqrt() * z0 + (1 - a_prev).sqrt() * eps
        return z

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
        z = self.ddim(self.latents(list(seeds)), int(steps), label, float(guidance))
        return {"image": self.to_uint8(self.decode(z))}


def build(package_dir: Path, device: str = "cpu") -> RetinaPatchLDM:
    return RetinaPatchLDM(Path(package_dir), device)
