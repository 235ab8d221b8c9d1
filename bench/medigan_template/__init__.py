"""A stand-in for medigan's model template (``templates/examples/__init__.py`` in
medigan's repository), written for synthmed's benchmark: the same calling convention
and the same work per call, with weights that ``bench/medigan.py`` makes at random.

What it keeps from the template, because that is what the benchmark measures:
- ``generate(model_file, num_samples, output_path, save_images)``;
- a 128x128 one-channel DCGAN generator (latent 100, ngf 64: transposed convolutions
  1 -> 4 -> 8 -> 16 -> 32 -> 64 -> 128 with batch norms, ReLU, tanh);
- every call builds the network and loads the checkpoint (``{"generator": state_dict}``)
  again, draws ``torch.randn(num_samples, 100, 1, 1)`` from torch's global generator and
  runs the whole batch in one forward pass (autograd on, as the template);
- values in [-1, 0] are mapped linearly onto 0..255 (the template's interval mapping),
  arrays are (128, 128, 1) uint8; ``save_images=True`` writes ``{output_path}/{i}.png``
  with OpenCV and returns None, ``save_images=False`` returns the list.
Two changes: OpenCV is imported where images are written, so the module also loads
where OpenCV is not installed (synthmed calls it with save_images=False); and the width
``ngf`` is read from the checkpoint, so tests can use a small copy (the benchmark uses 64).
"""

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

NZ, NGF = 100, 64
log = logging.getLogger(__name__)


def _up(cin, cout, first=False):
    stride, pad = (1, 0) if first else (2, 1)
    return [nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


class Generator(nn.Module):
    def __init__(self, nz=NZ, ngf=NGF):
        super().__init__()
        widths = [ngf * 16, ngf * 8, ngf * 4, ngf * 2, ngf]
        layers = _up(nz, widths[0], first=True)
        for cin, cout in zip(widths, widths[1:]):
            layers += _up(cin, cout)
        layers += [nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z):
        return self.main(z)


def _to_uint8(img):
    """(1, H, W) float in [-1, 0] -> (H, W, 1) uint8, as the template's interval mapping."""
    scaled = (np.transpose(img, (1, 2, 0)) - (-1.0)) / 1.0 * 255.0
    return scaled.astype("uint8")


def image_generator(model_file, device, num_samples):
    state = torch.load(model_file, map_location=device)["generator"]
    net = Generator(ngf=state["main.0.weight"].shape[1] // 16)
    net.load_state_dict(state)
    net.to(device).eval()
    z = torch.randn(num_samples, NZ, 1, 1, device=device)
    return list(net(z).detach().cpu().numpy())


def generate(model_file, num_samples, output_path, save_images: bool):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images = [_to_uint8(x) for x in image_generator(model_file, device, num_samples)]
    if not save_images:
        return images
    import cv2

    Path(output_path).mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        cv2.imwrite(f"{output_path}/{i}.png", img)
    return None
