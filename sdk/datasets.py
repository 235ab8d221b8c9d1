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
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from synthmed.registry.errors import ConfigError
from synthmed.registry.outputs import (OutputSpec, display_range, label_plane, parse_window, record_specs,
                                       preview_plane, save_grid, to_uint8, upscale, upscale_factor)
from synthmed.registry.outputs import GRID_BACKGROUND, GRID_MIN_TILE, TILE_MIN, grid
from synthmed.registry.outputs import overlay as overlay_masks
from synthmed.registry.array_inputs import check_inputs, plan
from synthmed.registry.runner import CheckedParams, Runner, check_params

from .medigan_compat import medigan_item
from .seeds import fresh_seed
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


ITEM_FORMATS = ("synthmed", "medigan")


def _item(outputs: Mapping[str, np.ndarray], j: int, index: int, seed: int,
          transform: Transform | None, first: str, item_format: str = "synthmed",
          kinds: Mapping[str, str] | None = None) -> dict[str, Any]:
    if item_format == "medigan":
        return medigan_item({name: arr[j] for name, arr in outputs.items()}, kinds or {}, transform)
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

    item_format: str
    kinds: dict[str, str]
    #: the first seed of each epoch so far (a stream made without a seed draws one per epoch)
    epoch_seeds: list[int]
    fixed_seed: bool

    def _setup(self, spec: ModelSpec, num_samples: int, seed: int | None, params: Mapping[str, Any] | None,
               transform: Transform | None, *, batch_size: int, item_format: str = "synthmed") -> None:
        if item_format not in ITEM_FORMATS:
            raise ConfigError(f"unknown item format {item_format!r}", hint=f"use one of {', '.join(ITEM_FORMATS)}")
        self.holder = _RunnerHolder(spec, {"batch_size": batch_size})
        self.num_samples = sample_count(num_samples)
        self.fixed_seed = seed is not None
        self.seed = seed_value(seed) if seed is not None else fresh_seed()
        self.epoch_seeds = []
        self.item_format = item_format
        self.kinds = {str(o["name"]): str(o.get("kind") or "image") for o in spec.record.outputs}
        self.transform = transform
        self.first = str(spec.record.outputs[0]["name"])
        self.params = check_params(spec.record, params)


class SyntheticDataset(_Synthetic, Dataset):  # type: ignore[type-arg]
    """Map-style: ``dataset[i]`` is the sample of seed ``seed + i`` (one model call per item;
    for throughput prefer :class:`SyntheticIterableDataset`)."""

    def __init__(self, spec: ModelSpec, num_samples: int, *, seed: int | None = 0,
                 params: Mapping[str, Any] | None = None, transform: Transform | None = None,
                 item_format: str = "synthmed") -> None:
        self._setup(spec, num_samples, seed, params, transform, batch_size=1, item_format=item_format)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < 0:
            i += self.num_samples
        if not 0 <= i < self.num_samples:
            raise IndexError(f"index {i} out of range for {self.num_samples} samples")
        seed = self.seed + i
        outputs = self.holder.runner().sample([seed], self.params)
        return _item(outputs, 0, i, seed, self.transform, self.first, self.item_format, self.kinds)


def shard(num_samples: int, worker: int, workers: int) -> range:
    """The contiguous share of ``range(num_samples)`` that worker ``worker`` of ``workers`` makes."""
    per = math.ceil(num_samples / workers) if workers else num_samples
    start = min(num_samples, worker * per)
    return range(start, min(num_samples, start + per))


class SyntheticIterableDataset(_Synthetic, IterableDataset):  # type: ignore[type-arg]
    """Streams samples ``0 .. num_samples-1`` (seed ``seed + i``), generated in batches of
    ``batch_size``; DataLoader workers split the indices between them."""

    def __init__(self, spec: ModelSpec, num_samples: int, *, seed: int | None = 0, batch_size: int = 32,
                 params: Mapping[str, Any] | None = None, transform: Transform | None = None,
                 item_format: str = "synthmed") -> None:
        self._setup(spec, num_samples, seed, params, transform, batch_size=batch_size, item_format=item_format)

    def new_epoch(self) -> int:
        """Start an epoch: a stream made without a seed draws a fresh first seed (kept in
        :attr:`epoch_seeds`); one made with a seed keeps it."""
        if not self.fixed_seed and self.epoch_seeds:
            self.seed = fresh_seed()
        self.epoch_seeds.append(self.seed)
        return self.seed

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
                yield _item(outputs, j, seed - self.seed, seed, self.transform, self.first, self.item_format,
                            self.kinds)


class EpochLoader(DataLoader):  # type: ignore[type-arg]
    """A DataLoader whose every epoch (each ``iter()``) starts with
    :meth:`SyntheticIterableDataset.new_epoch`, before workers take their copy of the dataset."""

    def __iter__(self) -> Any:
        ds = self.dataset
        if isinstance(ds, SyntheticIterableDataset):
            if not ds.fixed_seed and self.persistent_workers and ds.epoch_seeds:
                log.warning("persistent workers keep their first epoch's seeds: pass a seed, or no persistent_workers")
            ds.new_epoch()
        return super().__iter__()


def make_dataloader(spec: ModelSpec, num_samples: int, *, seed: int | None = 0, batch_size: int = 32,
                    num_workers: int = 0, params: Mapping[str, Any] | None = None,
                    transform: Transform | None = None, model_batch_size: int | None = None,
                    item_format: str = "synthmed", **loader_kwargs: Any) -> DataLoader:  # type: ignore[type-arg]
    """A DataLoader over :class:`SyntheticIterableDataset`; workers shard the seeds.
    ``seed=None``: every epoch draws a fresh first seed (``loader.dataset.epoch_seeds``)."""
    ds = SyntheticIterableDataset(spec, num_samples, seed=seed, batch_size=model_batch_size or max(batch_size, 32),
                                  params=params, transform=transform, item_format=item_format)
    loader_kwargs.pop("shuffle", None)  # a stream has no order to shuffle; seeds fix the content
    return EpochLoader(ds, batch_size=batch_size, num_workers=num_workers, **loader_kwargs)


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
              outputs: Sequence[str] | str | None = None, side_by_side: bool = False, overlay: bool = True,
              window: Any = None, progress: Callable[[int, int], None] | None = None,
              inputs: Mapping[str, Any] | None = None) -> Path:
    """Write a grid of ``num_samples`` samples to a PNG and return its path.

    Shown: ``outputs`` (names, or "a,b"), else ``output``, else the first output. Each
    shown output is a column, a sample's columns side by side, as many samples a row as
    keep the grid about square (:func:`groups_per_row`), each column named above it; one
    output alone fills a square-ish grid. A volume shows its middle slice along the slice axis (as the test reports'
    grids). One-channel images go through their window (``window=(C, W)`` or "C,W", else
    the record's, else CT's default, see :func:`synthmed.registry.outputs.default_window`).
    Masks and label maps with the same dims and shape as a shown image are overlaid on it
    in colour with outlines (``overlay=False`` to not); ``side_by_side=True`` shows them
    as their own column beside the image instead. Small samples are enlarged (nearest
    neighbour, a whole factor) to at least :data:`synthmed.registry.outputs.TILE_MIN`
    pixels. A model with array inputs takes them in ``inputs`` (by name: folders, files or
    arrays; sample i takes input i); each input is shown as a column of its own, left of
    the outputs made from it. ``progress(done, total)`` is called after each batch.
    """
    num_samples, seed = sample_count(num_samples, minimum=1), seed_value(seed)
    _check_png_path(Path(path))  # before any model runs
    record = spec.record
    specs = {s.name: s for s in record_specs(record)}
    if outputs is not None:
        names = [n.strip() for n in outputs.split(",")] if isinstance(outputs, str) else [str(n) for n in outputs]
        names = list(dict.fromkeys(n for n in names if n))
    else:
        names = [output or next(iter(specs))]
    unknown = [n for n in names if n not in specs]
    if unknown or not names:
        raise ConfigError(f"{record.ref} has no output {', '.join(map(repr, unknown)) or '(none given)'}",
                          hint=f"its outputs are: {', '.join(specs)}")
    win = parse_window(window) if window is not None else None
    columns = _columns([specs[n] for n in names], list(specs.values()), side_by_side=side_by_side, overlay=overlay)
    checked_inputs = (check_inputs(record, inputs, max_decoded_bytes=spec.options.max_decoded_bytes)
                      if (inputs or record.array_inputs) else None)
    in_arrays: dict[str, np.ndarray] = {}
    if checked_inputs is not None:
        plan(record, checked_inputs, num_samples)
        in_cols: list[tuple[OutputSpec, list[OutputSpec]]] = []
        for a in record.array_inputs:
            key = f"input {a['name']}"
            in_cols.append((OutputSpec.from_record({**a, "name": key, "kind": a.get("kind")}), []))
            in_arrays[key] = checked_inputs.for_samples(range(num_samples))[str(a["name"])]
        columns = in_cols + columns
    runner = spec.open()
    try:
        checked = check_params(record, params)
        parts: list[dict[str, np.ndarray]] = []
        done = 0
        seeds_all = list(range(seed, seed + num_samples))
        batches = (runner.iter_batches(seeds_all, checked) if checked_inputs is None else
                   runner.iter_input_batches(seeds_all, checked, checked_inputs.for_samples(range(num_samples))))
        for seeds, batch in batches:
            parts.append(batch)
            done += len(seeds)
            if progress is not None:
                progress(done, num_samples)
        samples = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        samples.update(in_arrays)
    finally:
        runner.close()
    # every tile enlarged by a whole factor to about the same size, at least TILE_MIN
    side = max([TILE_MIN] + [max(c[0].plane().shape[:2], default=1) for c in columns])
    rows = [[_tile(samples, i, shown, masks, win, side) for shown, masks in columns] for i in range(num_samples)]
    if len(columns) == 1:
        return save_grid([r[0] for r in rows], path)
    labels = [shown.name + "".join(f" + {m.name}" for m in masks) for shown, masks in columns]
    return _save_labelled_grid(rows, labels, Path(path))


def groups_per_row(n: int, k: int) -> int:
    """How many samples (each ``k`` tiles side by side) a row of a grid holds so that the
    grid is about square: ``n`` samples of 2 columns -> 3 a row (6 x 6 tiles for 16)."""
    return min(range(1, n + 1), key=lambda g: (max(g * k, math.ceil(n / g)) / min(g * k, math.ceil(n / g)),
                                               g * k * math.ceil(n / g) - n * k))


def _save_labelled_grid(rows: list[list[np.ndarray]], labels: list[str], path: Path) -> Path:
    """Samples of several columns (an image and its mask, an input and the output made from
    it) as an about square grid of samples, each sample its columns side by side, with the
    columns' names above them; written as a PNG."""
    from PIL import Image, ImageDraw, ImageFont

    k, n = len(labels), len(rows)
    g = groups_per_row(n, k)
    blank = np.full_like(rows[0][0], GRID_BACKGROUND)
    # row-major with g * k columns: sample i is group i % g of grid row i // g
    tiles = [rows[i][j] if i < n else blank for i in range(math.ceil(n / g) * g) for j in range(k)]
    body = grid(tiles, cols=g * k)
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    scale, pad = max(1, GRID_MIN_TILE // max(h, w, 1)), 2  # as registry.outputs.grid lays them out
    size = max(11, min(18, w * scale // 8))
    font = ImageFont.load_default(size=size)
    head = 8 + size
    canvas = Image.new("RGB", (body.shape[1], body.shape[0] + head), (GRID_BACKGROUND,) * 3)
    canvas.paste(Image.fromarray(body).convert("RGB"), (0, head))
    draw = ImageDraw.Draw(canvas)
    for c in range(g * k):
        x0, width = (pad + c * (w + pad)) * scale, w * scale
        text = labels[c % k]
        while len(text) > 1 and draw.textlength(text, font=font) > width - 4:
            text = text[:-2] + "…"
        draw.text((x0 + (width - draw.textlength(text, font=font)) / 2, 4), text, fill=(255, 255, 255), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path


def _columns(shown: list[OutputSpec], every: list[OutputSpec], *, side_by_side: bool,
             overlay: bool) -> list[tuple[OutputSpec, list[OutputSpec]]]:
    """The columns of a visualize grid: each shown output with the masks drawn over it."""
    def belongs(m: OutputSpec, img: OutputSpec) -> bool:
        return m.is_mask and not img.is_mask and m.dims == img.dims and m.shape[:img.dims] == img.shape[:img.dims]

    columns: list[tuple[OutputSpec, list[OutputSpec]]] = []
    drawn: set[str] = set()
    for s in shown:
        if s.is_mask:
            continue
        masks = [m for m in every if belongs(m, s)] if overlay and not side_by_side else []
        drawn |= {m.name for m in masks}
        columns.append((s, masks))
        if side_by_side:
            # the masks of this image in their own columns beside it
            for m in every:
                if belongs(m, s) and m.name not in drawn:
                    drawn.add(m.name)
                    columns.append((m, []))
    for s in shown:
        if s.is_mask and s.name not in drawn:
            columns.append((s, []))
    return columns


def _tile(samples: Mapping[str, np.ndarray], i: int, shown: OutputSpec, masks: list[OutputSpec],
          window: tuple[float, float] | None, side: int) -> np.ndarray:
    """One picture of one output of sample ``i``: windowed, enlarged to the common tile
    size, masks overlaid (a mask alone shows its labels in colour on black)."""
    plane = preview_plane(samples[shown.name][i], shown)
    factor = upscale_factor(plane.shape, side)
    if shown.is_mask:
        labels = upscale(label_plane(samples[shown.name][i], shown), factor)
        return overlay_masks(np.zeros(labels.shape, dtype=np.uint8), labels, alpha=1.0)
    picture = upscale(to_uint8(plane, display_range(shown, window)), factor)
    for m in masks:
        picture = overlay_masks(picture, upscale(label_plane(samples[m.name][i], m), factor))
    return picture
