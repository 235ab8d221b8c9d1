"""Write the feature-extractor records of this repository's index (and the weights of the
small offline one).

    python recipes/extractors/build.py

- ``index/extractors/randconv-224/1.0.0.json`` + ``index/artefacts/extractors/randconv-224/1.0.0.safetensors``:
  synthmed's RandConv network with He-normal random weights from seed 0 (nothing trained).
  The weights are made by ``RandConv.seeded(0)`` and written with safetensors; the
  record pins their sha256.
- ``index/extractors/inception-v3-fid/1.0.0.json``: the standard FID InceptionV3 weights
  (pytorch-fid's release file ``pt_inception-2015-12-05-6726825d.pth``), UNVERIFIED: no
  sha256, because nothing here can download it; whoever pins it downloads and hashes it
  (``weights.sha256`` and ``weights.size``) in a reviewed pull request.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INDEX = REPO / "index"


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def randconv() -> None:
    import torch
    from safetensors.torch import save_file

    from synthmed.registry.measuring.extractor_nets import RandConv

    torch.set_num_threads(1)
    net = RandConv.seeded(0)
    w = INDEX / "artefacts" / "extractors" / "randconv-224" / "1.0.0.safetensors"
    w.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(w), metadata={"seed": "0"})
    data = w.read_bytes()
    write(INDEX / "extractors" / "randconv-224" / "1.0.0.json", {
        "format": "synthmed-extractor/1", "id": "randconv-224", "version": "1.0.0",
        "title": "Random-weight convolutional features (224-d), small and offline",
        "description": (
            "Three 3x3 convolution + ReLU stages (32, 64 and 128 channels, 2x2 average pooling between them) "
            "whose weights are RANDOM: He-normal from torch.Generator().manual_seed(0), zero biases, never "
            "trained (recipes/extractors/build.py). The features are the global mean of each stage's "
            "activations, concatenated (224 values). Such random-network features respond to colour, "
            "contrast and local texture statistics at three scales; they know nothing of anatomy or object "
            "shape, so distances on them are much weaker evidence than FID on Inception features and are "
            "not comparable with any published FID. It exists so that every site can measure every model "
            "the same way offline (its 0.4 MB of weights live in the index) and so that the tests have a "
            "real extractor. Images are scaled to [0, 1] from their value range, grey repeated to RGB, "
            "resized to 64x64 (bilinear, antialiased) and mapped to [-1, 1]."),
        "license": "MIT", "status": "active", "network": "synthmed-randconv-1", "family": "random-conv",
        "training": {"trained": False, "data": "nothing: He-normal random weights from seed 0"}, "layer": "stage-means",
        "dims": 224,
        "input": {"size": [64, 64],
                  "resize": {"library": "torch.nn.functional.interpolate", "filter": "bilinear", "antialias": True,
                             "align_corners": False},
                  "channels": "rgb", "intensity": {"to": [-1.0, 1.0]}},
        "weights": {"format": "safetensors", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                    "sources": ["index:artefacts/extractors/randconv-224/1.0.0.safetensors"]},
        "provenance": {"source": "recipes/extractors/build.py (RandConv.seeded(0))"},
    })


def inception() -> None:
    write(INDEX / "extractors" / "inception-v3-fid" / "1.0.0.json", {
        "format": "synthmed-extractor/1", "id": "inception-v3-fid", "version": "1.0.0",
        "title": "InceptionV3 pool3 features of the standard FID (TensorFlow 2015-12-05 weights)",
        "description": (
            "The network and weights of the standard Fréchet Inception Distance (Heusel et al. 2017): "
            "TensorFlow's InceptionV3 graph of 2015-12-05 as ported to PyTorch by pytorch-fid "
            "(pt_inception-2015-12-05-6726825d.pth). synthmed implements the network in plain torch "
            "(registry/extractor_nets.py: FIDInceptionV3, torchvision's module names, so the file's state dict "
            "loads key for key, shape for shape). Features: the 2048-d global average pool after Mixed_7c "
            "(pool3). Images are scaled to [0, 1], grey repeated to RGB, resized to 299x299 with "
            "torch bilinear interpolation (align_corners False, no antialias, as pytorch-fid) and mapped to "
            "[-1, 1]. UNVERIFIED: the weights file has not been downloaded and hashed here (no network); "
            "a site refuses to use it until a reviewed change pins weights.sha256 and weights.size. The weights "
            "were trained on ImageNet photographs: their features are a convention for comparison, not a "
            "measure of medical realism."),
        "license": "Apache-2.0", "status": "active", "network": "inception-v3-fid", "family": "inception",
        "training": {"trained": True, "data": "ImageNet photographs (ILSVRC 2012 classification; TensorFlow's 2015-12-05 graph)"},
        "layer": "pool3", "dims": 2048,
        "input": {"size": [299, 299],
                  "resize": {"library": "torch.nn.functional.interpolate", "filter": "bilinear", "antialias": False,
                             "align_corners": False},
                  "channels": "rgb", "intensity": {"to": [-1.0, 1.0]}},
        "weights": {"format": "torch-state-dict",
                    "sources": ["https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                                "pt_inception-2015-12-05-6726825d.pth"],
                    "note": "the file's name carries the first 8 hex digits of its sha256 (6726825d), which is not a pin"},
        "provenance": {"source": "pytorch-fid release fid_weights; TensorFlow inception-2015-12-05"},
    })


if __name__ == "__main__":
    randconv()
    inception()
