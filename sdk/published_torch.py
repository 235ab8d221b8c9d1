"""A map-style torch Dataset over a published dataset's verified files (#24).

Item ``i`` has the format of :class:`synthmed.datasets.SyntheticDataset`'s: a dict of one
tensor per output (masks included), plus ``index`` and ``seed`` (``first_seed + i``, the
seed it was made from), so training code switches from generating on the fly to the
published dataset by one argument (``Generators.get_as_torch_dataloader(published=...)``,
or ``Site.dataset(ref).torch_dataset()``). The values are the published files decoded
(:func:`synthmed.registry.array_inputs.read_file`): a PNG gives its 8- or 16-bit pixels
(rows, columns[, channels]), a ``.npy`` file the array the model made, a NIfTI or DICOM
file its voxels; a DICOM series folder is stacked along the slice axis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from synthmed.registry.array_inputs import read_file
from synthmed.registry.artefacts.dataset_archive import item_files, read_manifest
from synthmed.registry.dataset_records import DatasetRecord
from synthmed.registry.errors import ConfigError


class PublishedTorchDataset(Dataset):  # type: ignore[type-arg]
    """``dataset[i]``: item ``i`` of the published dataset, read from its verified copy ``root``
    (``PublishedDataset.torch_dataset()`` makes one, from the folder it checked)."""

    def __init__(self, root: Path, record: DatasetRecord, ref: str, max_decoded_bytes: int, *, outputs: Any = None,
                 transform: Callable[[Any], Any] | None = None) -> None:
        gen = record.generation
        names = [str(o) for o in gen["outputs"]]
        wanted = names if outputs is None else [o.strip() for o in (outputs.split(",") if isinstance(outputs, str)
                                                                    else outputs)]
        unknown = [o for o in wanted if o not in names]
        if unknown or not wanted:
            raise ConfigError(f"{ref} has no output(s) {', '.join(unknown) or '(none given)'}",
                              hint=f"its outputs: {', '.join(names)}")
        self.ref = ref
        self.root = root
        self.count = int(gen["count"])
        self.first_seed = int(gen["first_seed"])
        self.outputs = wanted
        self.transform = transform
        self.max_bytes = max_decoded_bytes
        self.files = item_files(read_manifest(self.root), wanted, self.count, str(self.root))

    def __len__(self) -> int:
        return self.count

    def _array(self, rels: list[str]) -> np.ndarray:
        arrays = [read_file(self.root / rel, self.max_bytes) for rel in rels]
        arr = arrays[0] if len(arrays) == 1 else np.stack(arrays)
        return arr if arr.flags.writeable and arr.flags.c_contiguous else np.array(arr, order="C")

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < 0:
            i += self.count
        if not 0 <= i < self.count:
            raise IndexError(f"index {i} out of range for the {self.count} items of {self.ref}")
        item: dict[str, Any] = {name: torch.from_numpy(self._array(self.files[name][i]))
                                for name in self.outputs}
        if self.transform is not None:
            item[self.outputs[0]] = self.transform(item[self.outputs[0]])
        item["index"] = i
        item["seed"] = self.first_seed + i
        return item
