"""ihc-patch-dcgan: a DCGAN making 64x64 RGB immunohistochemistry patches.

synthmed-1 package. Imports only torch, numpy and the standard library.

    from model import build
    m = build(package_dir, "cpu")
    out = m.sample([0, 1, 2])          # {"image": uint8 array (3, 64, 64, 3)}

Bare API (for benchmarks against a plain forward loop):
    z = m.latents(seeds)               # (N, nz, 1, 1) float32 on m.device, one
                                       # torch.Generator().manual_seed(seed) per sample
    x = m.forward_batch(z)             # the generator network alone, (N, 3, 64, 64) in [-1, 1]
    img = m.to_uint8(x)                # (N, 64, 64, 3) uint8 numpy

The batch-norm layers of training are folded into the convolutions (population
statistics re-estimated after training), so inference has no batch statistics at all.
``sample`` pads every forward call to a multiple of 8 samples (padding rows are dropped)
so that the convolution kernels see the same batch shapes whatever the caller's batch
size; on the CPUs we tested, sample i is then bit-identical for batch sizes 1, 7 and 64.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

PAD_MULTIPLE = 8


def generator_layers(nz: int = 100, ngf: int = 32, nc: int = 3, batchnorm: bool = False) -> list[nn.Module]:
    """The generator's layers: 4x4 from a transposed convolution of the latent, three
    (nearest 2x upsample, 3x3 conv) stages to 32x32, then a last upsample and 3x3 conv
    straight to RGB at 64x64 (resize-convolutions: no checkerboard artefacts). With
    ``batchnorm`` (training) each hidden conv is followed by a BatchNorm2d and has no
    bias; without (inference) the norms are folded into the convs' weights and biases."""
    chans = [ngf * 8, ngf * 4, ngf * 2, ngf]

    def norm(c: int) -> list[nn.Module]:
        return [nn.BatchNorm2d(c)] if batchnorm else []

    layers: list[nn.Module] = [nn.ConvTranspose2d(nz, chans[0], 4, 1, 0, bias=not batchnorm), *norm(chans[0]),
                               nn.ReLU(inplace=True)]
    for i in range(3):
        layers += [nn.Upsample(scale_factor=2.0, mode="nearest"),
                   nn.Conv2d(chans[i], chans[i + 1], 3, 1, 1, bias=not batchnorm), *norm(chans[i + 1]),
                   nn.ReLU(inplace=True)]
    layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(chans[-1], nc, 3, 1, 1, bias=True),
               nn.Tanh()]
    return layers


class Generator(nn.Module):
    """DCGAN-style generator, batch norms folded (see generator_layers)."""

    def __init__(self, nz: int = 100, ngf: int = 32, nc: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(*generator_layers(nz, ngf, nc, batchnorm=False))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


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


class IHCPatchGAN:
    def __init__(self, package_dir: Path, device: str = "cpu") -> None:
        package_dir = Path(package_dir)
        cfg = json.loads((package_dir / "config.json").read_text())
        self.nz = int(cfg["nz"])
        self.device = torch.device(device)
        self.net = Generator(self.nz, int(cfg["ngf"]), 3)
        # weights are stored as float16 to keep the zip small; compute is float32
        state = {k: v.float() for k, v in _load_safetensors(package_dir / "weights.safetensors").items()}
        self.net.load_state_dict(state)
        self.net.to(self.device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    # -- bare pieces -------------------------------------------------------------
    def latents(self, seeds: list[int]) -> torch.Tensor:
        zs = [torch.randn(self.nz, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.stack(zs).view(len(seeds), self.nz, 1, 1).to(self.device)

    @torch.inference_mode()
    def forward_batch(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    @staticmethod
    def to_uint8(x: torch.Tensor) -> np.ndarray:
        x = ((x.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
        return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    # -- the synthmed-1 contract --------------------------------------------------
    def sample(self, seeds: list[int], **params: Any) -> dict[str, np.ndarray]:
        if params:
            raise TypeError(f"ihc-patch-dcgan takes no parameters, got {sorted(params)}")
        n = len(seeds)
        if n == 0:
            return {"image": np.zeros((0, 64, 64, 3), np.uint8)}
        z = self.latents(list(seeds))
        padded = -n % PAD_MULTIPLE
        if padded:
            z = torch.cat([z, torch.zeros(padded, self.nz, 1, 1, device=self.device)])
        return {"image": self.to_uint8(self.forward_batch(z)[:n])}


def build(package_dir: Path, device: str = "cpu") -> IHCPatchGAN:
    return IHCPatchGAN(Path(package_dir), device)
