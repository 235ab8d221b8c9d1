"""retina-vessel-pix2pix: stage II of the dual-GAN miniature. A small pix2pix U-Net that
turns a 64x64 retinal-vessel mask into a 64x64 RGB colour-fundus patch.

synthmed-1 package. Imports only torch, numpy and the standard library.

    from model import build
    m = build(package_dir, "cpu")
    out = m.sample([0, 1], mask=masks)   # masks: (2, 64, 64), vessel where > 0
                                         # -> {"image": uint8 (2, 64, 64, 3)}

The array input ``mask`` (the record's ``array_inputs``) holds one mask per seed; the
image of sample i depends only on mask i. The network has no noise input (pix2pix's
dropout noise is off at inference, as in most pix2pix use), so the seed does not change
the image: the same mask always gives the same patch. Instance normalisation and one
network call per sample keep a sample independent of its batch.
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


def up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
                         nn.InstanceNorm2d(cout, affine=True), nn.ReLU(True))


class UNet(nn.Module):
    """1x64x64 mask (in [-1, 1]) -> 3x64x64 image (tanh): encoder 64->32->16->8->4,
    decoder back with skip connections (pix2pix's U-Net, four levels)."""

    def __init__(self, ch: int = 32) -> None:
        super().__init__()
        c = ch
        self.d1 = down(1, c, norm=False)   # 32
        self.d2 = down(c, c * 2)           # 16
        self.d3 = down(c * 2, c * 4)       # 8
        self.d4 = down(c * 4, c * 4)       # 4
        self.u1 = up(c * 4, c * 4)         # 8
        self.u2 = up(c * 8, c * 2)         # 16
        self.u3 = up(c * 4, c)             # 32
        self.out = nn.ConvTranspose2d(c * 2, 3, 4, 2, 1)  # 64

    def forward(self, m: torch.Tensor) -> torch.Tensor:
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
        self.net = UNet(cfg["ch"]).to(device).eval()
        self.net.load_state_dict(read_safetensors(Path(package_dir) / "weights.safetensors"))

    @torch.no_grad()
    def translate(self, mask: np.ndarray) -> np.ndarray:
        """(N, 64, 64) masks -> (N, 64, 64, 3) uint8, one network call per mask."""
        x = mask_tensor(mask)
        outs = [self.net(x[i:i + 1].to(self.device))[0].cpu() for i in range(len(x))]
        if not outs:
            return np.zeros((0, 64, 64, 3), np.uint8)
        y = torch.stack(outs).permute(0, 2, 3, 1).add(1.0).mul(127.5).round().clamp(0, 255)
        return y.to(torch.uint8).numpy()

    def sample(self, seeds: list[int], *, mask: np.ndarray) -> dict[str, np.ndarray]:
        if len(mask) != len(seeds):
            raise ValueError(f"{len(seeds)} seeds but {len(mask)} masks")
        return {"image": self.translate(mask)}


def build(package_dir: Any, device: str = "cpu") -> PhotoModel:
    return PhotoModel(Path(package_dir), device)
