"""retina-vessel-pix2pix: stage II of the dual-GAN miniature. A small pix2pix U-Net that
turns a 64x64 retinal-vessel mask into a 64x64 RGB colour-fundus patch.

synthmed-1 package. Imports only torch, numpy and the standard library.

    from model import build
    m = build(package_dir, "cpu")
    out = m.sample([0, 1], mask=masks)   # masks: (2, 64, 64), vessel where > 0
                                         # -> {"image": uint8 (2, 64, 64, 3)}

The array input ``mask`` (the record's ``array_inputs``) holds one mask per seed.
Instance normalisation and one network call per sample keep a sample independent of its
batch. ``config.json`` chooses the network:

- ``z_dim`` 0 (1.0.0): no noise input (pix2pix's dropout noise is off at inference, as in
  most pix2pix use), so the seed does not change the image: the same mask always gives
  the same patch.
- ``z_dim`` > 0 (1.1.0): a latent code of ``z_dim`` numbers, drawn from
  ``numpy.random.default_rng(seed).standard_normal(z_dim)`` (float32), is broadcast over
  the mask as extra input channels (a conditional VAE-GAN, BicycleGAN's cVAE-GAN half:
  in training an encoder gave the code of each real patch, its global appearance, that the
  mask does not determine). Sample i depends on mask i and seed i alone.
- ``decoder`` "transpose" (1.0.0, the default): strided transposed convolutions;
  "resize": nearest-neighbour 2x upsampling then a 3x3 convolution, which does not
  leave the transposed convolution's checkerboard in the image (Odena et al. 2016).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def down(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.InstanceNorm2d(cout, affine=True))
    layers.append(nn.LeakyReLU(0.2, True))
    return nn.Sequential(*layers)


def _upconv(cin: int, cout: int, resize: bool, bias: bool) -> nn.Module:
    if resize:
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1, bias=bias))
    return nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias)


def up(cin: int, cout: int, resize: bool = False) -> nn.Sequential:
    return nn.Sequential(_upconv(cin, cout, resize, bias=False),
                         nn.InstanceNorm2d(cout, affine=True), nn.ReLU(True))


class UNet(nn.Module):
    """1x64x64 mask (in [-1, 1]) and a z_dim latent -> 3x64x64 image (tanh): encoder
    64->32->16->8->4, decoder back with skip connections (pix2pix's U-Net, four levels)."""

    def __init__(self, ch: int = 32, z_dim: int = 0, decoder: str = "transpose") -> None:
        super().__init__()
        if decoder not in ("transpose", "resize"):
            raise ValueError(f"decoder {decoder!r}: expected 'transpose' or 'resize'")
        c, r = ch, decoder == "resize"
        self.z_dim = z_dim
        self.d1 = down(1 + z_dim, c, norm=False)   # 32
        self.d2 = down(c, c * 2)           # 16
        self.d3 = down(c * 2, c * 4)       # 8
        self.d4 = down(c * 4, c * 4)       # 4
        self.u1 = up(c * 4, c * 4, r)      # 8
        self.u2 = up(c * 8, c * 2, r)      # 16
        self.u3 = up(c * 4, c, r)          # 32
        self.out = _upconv(c * 2, 3, r, bias=True)  # 64

    def forward(self, m: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if self.z_dim:
            if z is None or z.shape != (m.shape[0], self.z_dim):
                raise ValueError(f"this network takes a latent of shape ({m.shape[0]}, {self.z_dim})")
            m = torch.cat([m, z[:, :, None, None].expand(-1, -1, *m.shape[2:])], 1)
        e1 = self.d1(m)
        e2 = self.d2(e1)
        e3 = self.d3(e2)
        e4 = self.d4(e3)
        h = self.u1(e4)
        h = self.u2(torch.cat([h, e3], 1))
        h = self.u3(torch.cat([h, e2], 1))
        return torch.tanh(self.out(F.relu(torch.cat([h, e1], 1))))


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A minimal safetensors reader (F32/F16 only): the header is JSON, no code runs."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": np.float32, "F16": np.float16}[meta["dtype"]]
        a, b = meta["data_offsets"]
        arr = np.frombuffer(raw[base + a: base + b], dtype=dtype).reshape(meta["shape"])
        out[name] = torch.from_numpy(arr.astype(np.float32))
    return out


def mask_tensor(mask: np.ndarray) -> torch.Tensor:
    """(N, 64, 64) masks, vessel where > 0 -> (N, 1, 64, 64) float in {-1, 1}."""
    m = np.asarray(mask)
    if m.ndim == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    return torch.from_numpy((m > 0).astype(np.float32) * 2.0 - 1.0)[:, None]


class PhotoModel:
    def __init__(self, package_dir: Path, device: str) -> None:
        cfg = json.loads((Path(package_dir) / "config.json").read_text())
        self.device = device
        self.z_dim = int(cfg.get("z_dim", 0))
        self.net = UNet(cfg["ch"], self.z_dim, cfg.get("decoder", "transpose")).to(device).eval()
        self.net.load_state_dict(read_safetensors(Path(package_dir) / "weights.safetensors"))
        if self.z_dim:  # one call before any sample: the first forward pass in a process was seen to
            # differ (by 1 grey level in a few pixels) from every later one; a warm-up makes sample 0
            # of every run the same as the rest
            with torch.no_grad():
                self.net(torch.zeros(1, 1, 64, 64, device=device), torch.zeros(1, self.z_dim, device=device))

    def latents(self, seeds: list[int]) -> np.ndarray:
        """The latent code of each seed: (N, z_dim) float32, from that seed alone."""
        return np.stack([np.random.default_rng(s).standard_normal(self.z_dim).astype(np.float32)
                         for s in seeds]) if seeds else np.zeros((0, self.z_dim), np.float32)

    @torch.no_grad()
    def translate(self, mask: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
        """(N, 64, 64) masks (and (N, z_dim) latents when the network takes them) ->
        (N, 64, 64, 3) uint8, one network call per mask."""
        x = mask_tensor(mask)
        zt = torch.from_numpy(np.asarray(z, np.float32)) if self.z_dim else None
        if zt is not None and len(zt) != len(x):
            raise ValueError(f"{len(x)} masks but {len(zt)} latents")
        outs = [self.net(x[i:i + 1].to(self.device), None if zt is None else zt[i:i + 1].to(self.device))[0].cpu()
                for i in range(len(x))]
        if not outs:
            return np.zeros((0, 64, 64, 3), np.uint8)
        y = torch.stack(outs).permute(0, 2, 3, 1).add(1.0).mul(127.5).round().clamp(0, 255)
        return y.to(torch.uint8).numpy()

    def sample(self, seeds: list[int], *, mask: np.ndarray) -> dict[str, np.ndarray]:
        if len(mask) != len(seeds):
            raise ValueError(f"{len(seeds)} seeds but {len(mask)} masks")
        return {"image": self.translate(mask, self.latents(seeds) if self.z_dim else None)}


def build(package_dir: Any, device: str = "cpu") -> PhotoModel:
    return PhotoModel(Path(package_dir), device)
