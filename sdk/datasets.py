"""Samples as torch datasets, and a grid picture of a few samples.

- :class:`SyntheticDataset` (map-style): item ``i`` is the sample of seed ``seed + i``,
  whichever process or worker asks for it.
- :class:`SyntheticIterableDataset`: streams ``num_samples`` samples in model batches;
  with DataLoader workers, each worker makes a contiguous share of the indices
  (``torch.utils.data.get_worker_info``), so the union is the same set of samples as
  in one process.

Items are dicts: one tensor per record output, plus ``index`` and ``seed``. Each
process opens its own runner lazily (a loaded model or a worker pipe never crosses a
fork or a pickle).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from synthmed.registry.errors import ConfigError
from synthmed.registry.outputs import OutputSpec, preview, save_grid
from synthmed.registry.runner import CheckedParams, Runner, check_params

from .site import ModelSpec, sample_count, seed_value

log = logging.getLogger(__name__)

Transform = Callable[[Any], Any]


class _RunnerHolder:
    """A runner per process, opened on first use, dropped when pickled."""

    def __init__(self, spec: ModelSpec, runner_options: Mapping[str, Any] | None = None) -> None:
        self.spec = spec
        self.runner_options = dict(runner_options or {})
        self._runner: Runner | None = None
        self._pid = -1

    def runner(self) -> Runner:
        if self._runner is None or self._pid != os.getpid():
            self._runner = self.spec.open(**self.runner_options)
            self._pid = os.getpid()
        return self._runner

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_runner"] = None
        state["_pid"] = -1
        return state

    def close(self) -> None:
        if self._runner is not None and self._pid == os.getpid():
            self._runner.close()
        self._runner = None


def _item(outputs: Mapping[str, np.ndarray], j: int, index: int, seed: int,
          transform: Transform | None, first: str) -> dict[str, Any]:
    item: dict[str, Any] = {name: torch.from_numpy(np.ascontiguousarray(arr[j])) for name, arr in outputs.items()}
    if transform is not None:
        item[first] = transform(item[first])
    item["index"] = index
    item["seed"] = seed
    return item


class _Synthetic:
    """What both datasets hold; parameters are checked at construction, before any model code runs."""

    holder: _RunnerHolder
    num_samples: int
    seed: int
    transform: Transform | None
    first: str
    params: CheckedParams

    def _setup(self, spec: ModelSpec, num_samples: int, seed: int, params: Mapping[str, Any] | None,
               transform: Transform | None, *, batch_size: int) -> None:
        self.holder = _RunnerHolder(spec, {"batch_size": batch_size})
        self.num_samples = sample_count(num_samples)
        self.seed = seed_value(seed)
        self.transform = transform
        self.first = str(spec.record.outputs[0]["name"])
        self.params = check_params(spec.record, params)


class SyntheticDataset(_Synthetic, Dataset):  # type: ignore[type-arg]
    """Map-style: ``dataset[i]`` is the sample of seed ``seed + i`` (one model call per item;
    for throughput prefer :class:`SyntheticIterableDataset`)."""

    def __init__(self, spec: ModelSpec, num_samples: int, *, seed: int = 0, params: Mapping[str, Any] | None = None,
                 transform: Transform | None = None) -> None:
        self._setup(spec, num_samples, seed, params, transform, batch_size=1)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < 0:
            i += self.num_samples
        if not 0 <= i < self.num_samples:
            raise IndexError(f"index {i} out of range for {self.num_samples} samples")
        seed = self.seed + i
        outputs = self.holder.runner().sample([seed], self.params)
        return _item(outputs, 0, i, seed, self.transform, self.first)


def shard(num_samples: int, worker: int, workers: int) -> range:
    """The contiguous share of ``range(num_samples)`` that worker ``worker`` of ``workers`` makes."""
    per = math.ceil(num_samples / workers) if workers else num_samples
    start = min(num_samples, worker * per)
    return range(start, min(num_samples, start + per))


class SyntheticIterableDataset(_Synthetic, IterableDataset):  # type: ignore[type-arg]
    """Streams samples ``0 .. num_samples-1`` (seed ``seed + i``), generated in batches of
    ``batch_size``; DataLoader workers split the indices between them."""

    def __init__(self, spec: ModelSpec, num_samples: int, *, seed: int = 0, batch_size: int = 32,
                 params: Mapping[str, Any] | None = None, transform: Transform | None = None) -> None:
        self._setup(spec, num_samples, seed, params, transform, batch_size=batch_size)

    def __len__(self) -> int:
        return self.num_samples

    def indices(self) -> range:
        info = get_worker_info()
        if info is None:
            return range(self.num_samples)
        return shard(self.num_samples, info.id, info.num_workers)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        idx = self.indices()
        if not len(idx):
            return
        runner = self.holder.runner()
        for seeds, outputs in runner.iter_batches([self.seed + i for i in idx], self.params):
            for j, seed in enumerate(seeds):
                yield _item(outputs, j, seed - self.seed, seed, self.transform, self.first)


def make_dataloader(spec: ModelSpec, num_samples: int, *, seed: int = 0, batch_size: int = 32,
                    num_workers: int = 0, params: Mapping[str, Any] | None = None,
                    transform: Transform | None = None, model_batch_size: int | None = None,
                    **loader_kwargs: Any) -> DataLoader:  # type: ignore[type-arg]
    """A DataLoader over :class:`SyntheticIterableDataset`; workers shard the seeds."""
    ds = SyntheticIterableDataset(spec, num_samples, seed=seed, batch_size=model_batch_size or batch_size,
                                  params=params, transform=transform)
    loader_kwargs.pop("shuffle", None)  # a stream has no order to shuffle; seeds fix the content
    return DataLoader(ds, batch_size=batch_size, num_workers=num_workers, **loader_kwargs)


# --- a picture of a few samples ----------------------------------------------------


def _check_png_path(path: Path) -> None:
    if path.is_dir():
        raise ConfigError(f"cannot write the grid to {path}: it is a folder",
                          hint=f"give a file name, e.g. {path / 'grid.png'}")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"cannot write the grid to {path}: {blocker} is a file, not a folder",
                          hint="give a PNG file name in a folder (missing folders are created)")


def visualize(spec: ModelSpec, path: Path | str, num_samples: int = 16, *, seed: int = 0,
              params: Mapping[str, Any] | None = None, output: str | None = None,
              progress: Callable[[int, int], None] | None = None) -> Path:
    """Write a grid of ``num_samples`` samples of one output (the first by default) to a PNG:
    :func:`synthmed.registry.outputs.preview` of each (a volume shows its middle slice
    along the slice axis, as in the test reports' grids), tiled by
    :func:`synthmed.registry.outputs.save_grid`."""
    num_samples, seed = sample_count(num_samples, minimum=1), seed_value(seed)
    _check_png_path(Path(path))  # before any model runs
    record = spec.record
    outs = {str(o["name"]): o for o in record.outputs}
    name = output or next(iter(outs))
    if name not in outs:
        raise KeyError(f"{record.ref} has no output {name!r} (it has {', '.join(outs)})")
    runner = spec.open()
    try:
        checked = check_params(record, params)
        parts: list[dict[str, np.ndarray]] = []
        done = 0
        for seeds, batch in runner.iter_batches(list(range(seed, seed + num_samples)), checked):
            parts.append(batch)
            done += len(seeds)
            if progress is not None:
                progress(done, num_samples)
        samples = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    finally:
        runner.close()
    shown = OutputSpec.from_record(outs[name])
    return save_grid([preview(samples[name][i], shown) for i in range(num_samples)], path)
