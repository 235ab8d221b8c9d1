"""retina-vessel-mask-dcgan: stage I of the dual-GAN miniature. A small DCGAN generator
making 64x64 binary retinal-vessel masks (the geometry of a fundus patch).

synthmed-1 package. Imports only torch, numpy and the standard library.

    from model import build
    m = build(package_dir, "cpu")
    out = m.sample([0, 1])          # {"mask": uint8 (2, 64, 64), values 0 or 1}

Parameters (the record's ``inputs``):
    threshold  float 0.05..0.95, default 0.5: the generator's soft output in [0, 1] is
               cut at this value (higher: thinner vessels)

Seeds: the latent of sample i is torch.randn(64) from torch.Generator().manual_seed(seeds[i]);
the generator runs in eval mode (BatchNorm with stored statistics, recomputed over 64
batches after training), so a sample does not depend on the batch it is made in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

NZ = 64


class Generator(nn.Module):
    """z (NZ) -> 4x4 -> 8 -> 16 -> 32 -> 64, one channel, sigmoid."""

    def __init__(self, ch: int = 32) -> None:
        super().__init__()
        c = ch

        def up(cin: int, cout: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

        self.net = nn.Sequential(
            nn.ConvTranspose2d(NZ, c * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(c * 8), nn.ReLU(True),
            *up(c * 8, c * 4), *up(c * 4, c * 2), *up(c * 2, c),
            nn.ConvTranspose2d(c, 1, 4, 2, 1), nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(z.view(z.shape[0], NZ, 1, 1))
        return out


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


class MaskModel:
    def __init__(self, package_dir: Path, device: str) -> None:
        cfg = json.loads((Path(package_dir) / "config.json").read_text())
        self.device = device
        self.net = Generator(cfg["ch"]).to(device).eval()
        state = read_safetensors(Path(package_dir) / "weights.safetensors")
        state = {k: (v.long() if k.endswith("num_batches_tracked") else v) for k, v in state.items()}
        self.net.load_state_dict(state)

    def latents(self, seeds: list[int]) -> torch.Tensor:
        return torch.stack([torch.randn(NZ, generator=torch.Generator().manual_seed(int(s))) for s in seeds])

    @torch.no_grad()
    def soft(self, seeds: list[int]) -> np.ndarray:
        """The generator's soft masks in [0, 1], (N, 64, 64) float32 (one sample per call,
        so no batch size ever changes a float)."""
        outs = [self.net(z[None].to(self.device))[0, 0].cpu().numpy() for z in self.latents(seeds)]
        return np.stack(outs).astype(np.float32) if outs else np.zeros((0, 64, 64), np.float32)

    def sample(self, seeds: list[int], threshold: float = 0.5) -> dict[str, np.ndarray]:
        return {"mask": (self.soft(seeds) > threshold).astype(np.uint8)}


def build(package_dir: Any, device: str = "cpu") -> MaskModel:
    return MaskModel(Path(package_dir), device)
