"""retina-patch-dcgan: an unconditional DCGAN making 32x32 colour fundus patches, trained
on the data of retina-patch-ddpm (a baseline for comparing GAN, DDPM and LDM at equal
training compute).

synthmed-1 package. Imports only torch, numpy and the standard library.

    from model import build
    m = build(package_dir, "cpu")
    out = m.sample([0, 1])        # {"image": uint8 (2, 32, 32, 3)}

No parameters. Sample i comes from z = torch.randn(100) of torch.Generator().manual_seed(seeds[i]);
batch norms run in eval mode (population statistics re-estimated after training), and every
call is padded to a multiple of 8 rows, so a sample does not depend on its batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

PAD_MULTIPLE = 8


def generator_layers(nz: int = 100, ngf: int = 48, nc: int = 3) -> list[nn.Module]:
    """4x4 from a transposed convolution of the latent, two (nearest 2x upsample, 3x3 conv,
    BN, ReLU) stages to 16x16, a last upsample and 3x3 conv to RGB at 32x32."""
    chans = [ngf * 4, ngf * 2, ngf]
    layers: list[nn.Module] = [nn.ConvTranspose2d(nz, chans[0], 4, 1, 0, bias=False), nn.BatchNorm2d(chans[0]),
                               nn.ReLU(inplace=True)]
    for i in range(2):
        layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(chans[i], chans[i + 1], 3, 1, 1, bias=False),
                   nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True)]
    layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(chans[-1], nc, 3, 1, 1), nn.Tanh()]
    return layers


class Generator(nn.Module):
    def __init__(self, nz: int = 100, ngf: int = 48) -> None:
        super().__init__()
        self.net = nn.Sequential(*generator_layers(nz, ngf))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a .safetensors file (JSON header + raw little-endian tensors; no pickle)."""
    dtypes = {"F16": np.float16, "F32": np.float32, "I64": np.int64}
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


class RetinaPatchDCGAN:
    def __init__(self, package_dir: Path, device: str = "cpu") -> None:
        cfg = json.loads((Path(package_dir) / "config.json").read_text())
        self.nz = int(cfg["nz"])
        self.device = torch.device(device)
        self.net = Generator(self.nz, int(cfg["ngf"]))
        state = _load_safetensors(Path(package_dir) / "weights.safetensors")
        self.net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        self.net.to(self.device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def latents(self, seeds: list[int]) -> torch.Tensor:
        zs = [torch.randn(self.nz, 1, 1, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.stack(zs).to(self.device)

    @torch.inference_mode()
    def forward_batch(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        pad = -n % PAD_MULTIPLE
        if pad:
            z = torch.cat([z, torch.zeros(pad, *z.shape[1:], device=z.device)])
        return self.net(z)[:n]

    @staticmethod
    def to_uint8(x: torch.Tensor) -> np.ndarray:
        x = ((x.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
        return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def sample(self, seeds: list[int], **extra: Any) -> dict[str, np.ndarray]:
        if extra:
            raise TypeError(f"unknown parameters {sorted(extra)}; this model takes none")
        if not seeds:
            return {"image": np.zeros((0, 32, 32, 3), np.uint8)}
        return {"image": self.to_uint8(self.forward_batch(self.latents(list(seeds))))}


def build(package_dir: Path, device: str = "cpu") -> RetinaPatchDCGAN:
    return RetinaPatchDCGAN(Path(package_dir), device)
