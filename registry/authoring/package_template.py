"""``synthmed package init``: a working synthmed-1 package to start a contribution from.

:func:`write_template` writes into an empty (or new) folder:

- ``model.py``: ``build(package_dir, device)`` returning a model whose
  ``sample(seeds, contrast=1.0)`` draws each sample's latent from its own
  ``torch.Generator().manual_seed(seed)`` and runs each sample through a tiny torch network
  on its own, so sample i depends only on ``seeds[i]`` (batch invariance by construction);
- ``weights.safetensors``: that network's weights, deterministic (numpy's
  ``default_rng(0)``), so two folders made alike are byte-identical; safetensors holds
  tensors only (no pickle);
- ``metadata.json``: the model id and the record's descriptive fields, with the inputs schema, the outputs
  and the ``test`` block, as ``synthmed contribute --metadata`` and ``synthmed package test``
  read them;
- ``README.md``: what to edit, and the commands from here to a pull request.

The package passes ``synthmed package test`` as written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ContributeError
from ..records import is_valid_id

KINDS = ("image", "volume")
METADATA_NAME = "metadata.json"
WEIGHTS_NAME = "weights.safetensors"
LATENT = 16
HIDDEN = 32
#: sample shape per kind: image (rows, cols); volume (slices, rows, cols)
SHAPES: dict[str, tuple[int, ...]] = {"image": (32, 32), "volume": (8, 16, 16)}

MODEL_PY = '''"""{model_id}: a synthmed-1 model package (made by `synthmed package init`).

Replace the network and the weights with yours; keep the contract:

    build(package_dir, device) -> model
    model.sample(seeds, **params) -> {{"{output}": array with the batch first}}

and sample i must depend only on seeds[i] and the params (the seed contract): draw every
random number of a sample from its own torch.Generator().manual_seed(seed), never from the
global RNG, and keep the network in eval() mode (no dropout, no batch statistics).
`synthmed package test .` checks this (determinism, batch_invariance).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

KIND = "{kind}"
SHAPE = {shape!r}  # one sample: {shape_doc}
LATENT = {latent}
HIDDEN = {hidden}


class Net(nn.Module):
    """A tiny generator: latent -> hidden -> one value per voxel/pixel in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        size = 1
        for s in SHAPE:
            size *= s
        self.fc1 = nn.Linear(LATENT, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(torch.tanh(self.fc1(z))))


class Model:
    def __init__(self, package_dir: Path, device: str) -> None:
        self.device = torch.device(device)
        self.net = Net()
        # safetensors holds tensors only; for a .pt file use torch.load(..., weights_only=True)
        self.net.load_state_dict(load_file(str(Path(package_dir) / "{weights}")))
        self.net.to(self.device).eval()

    @torch.no_grad()
    def sample(self, seeds: list[int], contrast: float = 1.0) -> dict[str, object]:
        outs = []
        for seed in seeds:
            # each sample from its own generator, seeded with its own seed
            g = torch.Generator().manual_seed(int(seed))
            z = torch.randn(1, LATENT, generator=g).to(self.device)
            # one sample per forward call: some kernels give other bits for other batch sizes
            outs.append(self.net(z))
        x = torch.cat(outs).reshape(len(seeds), *SHAPE)
        x = (0.5 + float(contrast) * (x - 0.5)).clamp(0.0, 1.0)
        if KIND == "image":
            return {{"{output}": (x * 255.0).round().to(torch.uint8).cpu().numpy()}}
        return {{"{output}": x.to(torch.float32).cpu().numpy()}}


def build(package_dir: Path, device: str) -> Model:
    return Model(Path(package_dir), device)
'''

README_MD = '''# {model_id}

A synthmed-1 model package made by `synthmed package init`. It works as it is (a tiny
network with random weights making {what}); make it yours, then test and contribute it.

## What to edit

- `model.py`: your network and how `sample(seeds, **params)` turns seeds into samples.
  Keep one `torch.Generator().manual_seed(seed)` per sample and `eval()` mode: sample i
  must depend only on `seeds[i]`.
- `{weights}`: your weights (safetensors; or a `.pt` state dict loaded with
  `torch.load(path, weights_only=True)`). Everything in this folder goes into the package.
- `metadata.json`: the record's descriptive fields: `title`, `summary`, `description`,
  `modality`, `anatomy`, `generates`, `architecture`, `task`, `license` (an SPDX id),
  `authors`; `inputs` (a JSON Schema of `sample`'s parameters), `outputs` (name, kind,
  dims, shape, dtype, channels, value_range of what `sample` returns), `package`
  (entry point, requirements, devices) and `test` (samples, seed and params of the model
  test). `id` must match `contribute --id` (or leave it out); leave out `version` and
  `package.artefact`: synthmed sets them.

## Test, then contribute

```console
$ synthmed package test {folder}
$ synthmed contribute {folder} --id {model_id} --version 1.0.0 --metadata {folder}/metadata.json \\
    --index PATH/TO/INDEX-CLONE --store index      # or --store zenodo / --store dvc
```

`package test` runs the checks a site runs (shapes, dtypes, value_range, finite,
determinism, batch_invariance, params) and says how to fix each one that fails. See
docs/contributing.md of synthmed.
'''


def template_metadata(model_id: str, kind: str) -> dict[str, Any]:
    shape = list(SHAPES[kind])
    if kind == "image":
        output: dict[str, Any] = {"name": "image", "kind": "image", "dims": 2, "shape": shape, "dtype": "uint8",
                                  "channels": 1, "value_range": [0, 255],
                                  "description": "grayscale image, rows x columns"}
    else:
        output = {"name": "volume", "kind": "volume", "dims": 3, "shape": shape, "dtype": "float32",
                  "channels": 1, "value_range": [0.0, 1.0], "spacing_mm": [2.0, 1.0, 1.0],
                  "description": "intensity volume, slices x rows x columns"}
    return {
        "id": model_id,
        "title": f"{model_id} (template: replace with your model's title)",
        "summary": "A tiny seeded network made by synthmed package init; replace with one sentence about your model.",
        "description": "Describe the model, its training data and its intended use here.",
        "modality": ["other"],
        "anatomy": ["other"],
        "generates": [kind],
        "architecture": {"family": "other", "name": "tiny MLP (template)"},
        "task": "unconditional",
        "inputs": {"type": "object",
                   "properties": {"contrast": {"type": "number", "minimum": 0, "maximum": 2, "default": 1.0,
                                               "description": "contrast around mid-grey"}},
                   "additionalProperties": False},
        "outputs": [output],
        "license": "MIT",
        "authors": [{"name": "Your Name", "affiliation": "Your Institution"}],
        "package": {"entry_point": "model:build", "requirements": ["torch>=2.1", "numpy>=1.24", "safetensors>=0.4"],
                    "python": ">=3.10", "devices": ["cpu", "cuda"]},
        "test": {"num_samples": 4, "seed": 0, "params": {"contrast": 1.0}, "timeout_s": 120},
    }


def template_weights(kind: str) -> dict[str, np.ndarray]:
    """The network's weights, the same every time (numpy's default_rng(0))."""
    rng = np.random.default_rng(0)
    size = int(np.prod(SHAPES[kind]))

    def w(*shape: int, fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

    return {"fc1.weight": w(HIDDEN, LATENT, fan_in=LATENT), "fc1.bias": w(HIDDEN, fan_in=LATENT),
            "fc2.weight": w(size, HIDDEN, fan_in=HIDDEN), "fc2.bias": w(size, fan_in=HIDDEN)}


def write_template(folder: Path | str, *, model_id: str | None = None, kind: str = "image") -> list[Path]:
    """Write the template package into ``folder`` (new or empty); the files written."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    if kind not in KINDS:
        raise ContributeError(f"unknown kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    if folder.is_symlink() and not folder.exists():
        raise ContributeError(f"{folder}: is a symbolic link to {os.readlink(folder)}, which does not exist",
                              hint="pick a new folder for the package, or remove the dangling link")
    if folder.exists() and not folder.is_dir():
        raise ContributeError(f"{folder}: exists and is not a folder", hint="pick a new folder for the package")
    if folder.is_dir() and any(folder.iterdir()):
        raise ContributeError(f"{folder}: the folder is not empty; package init writes only into a new or empty "
                              "folder and never overwrites files",
                              hint="pick a new folder (e.g. `synthmed package init my-model`)")
    model_id = model_id or folder.resolve().name.lower()
    if not is_valid_id(model_id):
        raise ContributeError(f"{model_id!r} is not a valid model id",
                              hint="pass --id: 3 to 64 characters of a-z, 0-9, '.', '_', '-', starting with a letter "
                                   "or digit")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ContributeError(f"{folder}: cannot create the folder ({exc.strerror or exc})",
                              hint="pick a folder you can write to (a new or empty one)") from None
    output = "image" if kind == "image" else "volume"
    shape = SHAPES[kind]
    shape_doc = "rows x columns" if kind == "image" else "slices x rows x columns"
    files = {
        "model.py": MODEL_PY.format(model_id=model_id, output=output, kind=kind, shape=shape, shape_doc=shape_doc,
                                    latent=LATENT, hidden=HIDDEN, weights=WEIGHTS_NAME),
        METADATA_NAME: json.dumps(template_metadata(model_id, kind), indent=2) + "\n",
        "README.md": README_MD.format(model_id=model_id, weights=WEIGHTS_NAME, folder=folder.as_posix(),
                                      what=f"{'x'.join(map(str, shape))} {'grayscale images' if kind == 'image' else 'volumes'}"),
    }
    written = []
    for name, text in files.items():
        (folder / name).write_text(text, "utf-8")
        written.append(folder / name)
    save_file(template_weights(kind), str(folder / WEIGHTS_NAME))
    written.append(folder / WEIGHTS_NAME)
    return sorted(written)
