"""ihc-patch-dcgan in medigan's package layout (medigan-1): the same DCGAN weights as the
synthmed-1 package ihc-patch-dcgan 1.0.0, behind medigan's calling convention.

    generate(model_file, num_samples, output_path, save_images, **custom)

Like medigan's own models it draws from torch's *global* generator: pass ``seed`` (a
custom argument) to seed ``random``, numpy and torch globally first, or seed them
yourself. All ``num_samples`` latents are drawn in one ``torch.randn`` call on the CPU, so
sample i depends on the whole batch; synthmed's runner calls it once per seed with the
global generators seeded, which gives exactly the latent that ihc-patch-dcgan draws from
``torch.Generator().manual_seed(seed)``.

save_images=True writes ``{output_path}/{i}.png`` (8-bit RGB, 64x64) and returns None;
save_images=False returns a list of (64, 64, 3) uint8 numpy arrays.

Imports only torch, numpy and the standard library (PNGs are written with zlib).
Weights: ``model.pt``, a state_dict saved with torch.save (float16 tensors), loaded with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import logging
import random
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

NZ, NGF = 100, 32
log = logging.getLogger(__name__)


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
    """The ihc-patch-dcgan generator (batch norms folded into the convolutions)."""

    def __init__(self, nz: int = NZ, ngf: int = NGF, nc: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(*generator_layers(nz, ngf, nc, batchnorm=False))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def _png_bytes(img: np.ndarray) -> bytes:
    h, w, c = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    color = {1: 0, 3: 2, 4: 6}[c]
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


_CACHE: dict[tuple[str, str], Generator] = {}


def _load(model_file: str, device: torch.device) -> Generator:
    key = (str(Path(model_file).resolve()), str(device))
    if key not in _CACHE:
        net = Generator()
        state = torch.load(model_file, map_location="cpu", weights_only=True)
        net.load_state_dict({k: v.float() for k, v in state.items()})
        net.to(device).eval()
        _CACHE[key] = net
    return _CACHE[key]


def generate(model_file: str, num_samples: int, output_path: str, save_images: bool = True,
             seed: int | None = None, device: str | None = None, **custom: Any) -> list[np.ndarray] | None:
    """Generate ``num_samples`` 64x64 RGB IHC patches (see the module docstring)."""
    if custom:
        log.warning("ignoring unknown arguments %s", sorted(custom))
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    n = int(num_samples)
    z = torch.randn(n, NZ).view(-1, NZ, 1, 1)  # before loading: building the net draws from the global RNG
    net = _load(model_file, dev)
    pad = -n % 8  # the same padded batch shapes as ihc-patch-dcgan, hence the same pixels
    if pad:
        z = torch.cat([z, torch.zeros(pad, NZ, 1, 1)])
    with torch.inference_mode():
        x = net(z.to(dev))[:n]
    imgs = ((x.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    images = [np.ascontiguousarray(im) for im in imgs]
    if not save_images:
        return images
    out = Path(output_path)
    out.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        (out / f"{i}.png").write_bytes(_png_bytes(im))
    log.info("saved %d images to %s", len(images), out)
    return None
