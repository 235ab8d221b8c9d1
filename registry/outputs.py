"""Model outputs as arrays: the layout of each output kind, the output spec a record
declares, conversion to 8- or 16-bit pixels, the preview of one sample and grids of
previews. Pure numpy (PIL only to save a grid as PNG); no files other than that PNG.

This module is the one owner of those rules: the file encoders
(``synthmed.output_formats``), the output folder (``synthmed.output_folder``), the model
test checks and report grids (``modeltest_checks``, ``report``) and ``visualize``
(``synthmed.datasets``) all use it, so a volume is cut through the same plane everywhere.

Array layout
------------
A model returns one array per output, the batch axis first. One sample (the batch axis
removed) in its *canonical* layout (:func:`canonical`) has ``dims`` spatial axes, then a
channel axis when the output has more than one channel:

=======  ====  ===================================  ==============================================
kind     dims  axes of one sample                   values
=======  ====  ===================================  ==============================================
image    2     ``(rows, cols)``                     intensities within ``value_range``
               ``(rows, cols, channels)``           colour: 3 (RGB) or 4 (RGBA) channels
mask     2, 3  as an image or a volume, 1 channel   0/1 (bool or integer): in or out of the region
label    2, 3  as mask                              an integer class per pixel / voxel
volume   3     ``(slices, rows, cols)``             intensities (e.g. HU), channels last if > 1
other    2, 3  as an image or a volume              anything; written as is, shown in its range
=======  ====  ===================================  ==============================================

The layout is fixed by ``dims``; ``kind`` (optional in a record; ``volume`` for 3D
outputs and ``image`` for 2D ones when absent) says what the values mean. Axis 0 of a
volume is the slice axis (:data:`SLICE_AXIS`): slice ``k`` is ``sample[k]``, a
``(rows, cols)`` plane. ``spacing_mm[i]`` is the spacing along spatial axis ``i``
(``[slice, row, col]`` for a volume, ``[row, col]`` for an image). Models may also return
the channel axis first, or a trailing channel axis of 1 for a one-channel output;
:func:`canonical` moves such arrays into the layout above (:func:`accepted_shapes` lists
what a model may return per sample).

Pixels
------
:func:`to_bits` turns a sample into 8- or 16-bit integers for the file formats: integers
that already fit are kept as they are; anything else is scaled linearly from
``value_range`` onto ``0..255`` or ``0..65535`` (and the scaling is returned so a writer
can record it).

Previews
--------
:func:`preview_plane` is the plane of one sample that is shown: an image itself, a
volume's middle slice along :data:`SLICE_AXIS` (``sample[slices // 2]``); colour stays
colour (RGB; alpha dropped), any other channel count shows its first channel.
:func:`preview` maps that plane to 8 bits for display through :func:`display_range`: the
output's window for one-channel images with one (the record's ``window``, else
:func:`default_window`: CT in HU gets a brain or soft-tissue window), else ``value_range``
(the data's min..max when the range is empty; NaN and infinities show as the low end).
:func:`overlay` tints and outlines masks and label maps in :data:`PALETTE` colours;
:func:`upscale` enlarges by a whole factor (nearest neighbour) for ``visualize``. :func:`grid` tiles previews (tiny ones enlarged) and :func:`save_grid` writes
the grid as a PNG: the report's sample grids and ``visualize`` are both made this way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import ConfigError

#: the spatial axes of one sample, by ``dims`` (channels follow when more than one)
AXES: dict[int, tuple[str, ...]] = {2: ("rows", "cols"), 3: ("slices", "rows", "cols")}
#: the axis of a volume (canonical layout, one sample) along which it is sliced
SLICE_AXIS = 0
#: previews smaller than this (pixels, the larger side) are enlarged in a grid
GRID_MIN_TILE = 64
#: the grey between tiles of a grid
GRID_BACKGROUND = 32

# bytes per value of each record dtype
_ITEMSIZE = {"uint8": 1, "bool": 1, "uint16": 2, "int16": 2, "float16": 2, "int32": 4, "float32": 4, "float64": 8}


# --- the spec ------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputSpec:
    """What the record says about one output (an entry of its ``outputs``)."""

    name: str
    dims: int
    shape: tuple[int, ...]
    dtype: str
    channels: int
    value_range: tuple[float, float]
    spacing_mm: tuple[float, ...] | None = None
    kind: str = ""
    #: the display window ``(center, width)``: the record's ``window``, else
    #: :data:`DEFAULT_CT_WINDOW` for a CT intensity output (see :func:`default_window`)
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", "volume" if self.dims == 3 else "image")

    @classmethod
    def from_record(cls, out: Mapping[str, Any], modality: Iterable[str] | None = None,
                    anatomy: Iterable[str] | None = None) -> "OutputSpec":
        """The spec of one ``outputs`` entry; ``modality`` and ``anatomy`` (the record's)
        decide the default window of CT outputs that declare none (:func:`default_window`)."""
        vr = out.get("value_range") or [0, 1]
        sp = out.get("spacing_mm")
        spec = cls(name=str(out["name"]), dims=int(out.get("dims", 2)), shape=tuple(int(x) for x in out.get("shape", [])),
                   dtype=str(out.get("dtype", "float32")), channels=int(out.get("channels", 1)),
                   value_range=(float(vr[0]), float(vr[1])), spacing_mm=tuple(float(x) for x in sp) if sp else None,
                   kind=str(out.get("kind") or ""))
        w = out.get("window")
        window = parse_window(w) if w is not None else default_window(spec, modality, anatomy)
        return replace(spec, window=window) if window else spec

    @property
    def is_intensity(self) -> bool:
        """An image or volume of one channel: the outputs a window applies to."""
        return self.kind in ("image", "volume") and self.channels == 1

    @property
    def is_mask(self) -> bool:
        return self.kind in ("mask", "label")

    @property
    def axes(self) -> tuple[str, ...]:
        """The names of the axes of one sample in canonical layout."""
        spatial = AXES.get(self.dims, tuple(f"axis{i}" for i in range(self.dims)))
        return spatial + (("channels",) if self.channels > 1 else ())

    def plane(self) -> "OutputSpec":
        """The spec of one slice (a 2D plane) of this output; itself for a 2D output."""
        if self.dims != 3:
            return self
        spacing = self.spacing_mm[1:] if self.spacing_mm and len(self.spacing_mm) == 3 else None
        return OutputSpec(self.name, 2, self.shape[1:], self.dtype, self.channels, self.value_range, spacing,
                          kind=self.kind, window=self.window)


def output_specs(outputs: Iterable[Mapping[str, Any]], modality: Iterable[str] | None = None,
                 anatomy: Iterable[str] | None = None) -> list[OutputSpec]:
    """The specs of a record's ``outputs``, in order (``modality`` and ``anatomy``: the
    record's, for default windows)."""
    mod, ana = list(modality or []), list(anatomy or [])
    return [OutputSpec.from_record(o, mod, ana) for o in outputs]


def record_specs(record: Any) -> list[OutputSpec]:
    """The specs of a record's outputs, with its modality and anatomy for default windows."""
    return output_specs(record.outputs, record.get("modality"), record.get("anatomy"))


# --- windows ---------------------------------------------------------------------------

#: the window ``(center, width)`` of CT outputs whose record gives none: soft tissue,
#: -160..240 HU (bone C400 W1800 and lung C-600 W1500 are the other usual ones)
DEFAULT_CT_WINDOW = (40.0, 400.0)
#: the brain window, 0..80 HU: the default of CT outputs whose record's anatomy is the head or brain
BRAIN_CT_WINDOW = (40.0, 80.0)
_HEAD = {"HEAD", "BRAIN", "NEURO", "SKULL", "CRANIUM"}


def is_hu_range(value_range: Sequence[float]) -> bool:
    """A value range that looks like Hounsfield units: from air (about -1000) to at
    least bone (about +1000)."""
    lo, hi = float(value_range[0]), float(value_range[1])
    return -1100.0 <= lo <= -900.0 and hi >= 1000.0


def is_ct(spec: OutputSpec, modality: Iterable[str] | None = None) -> bool:
    """A CT intensity output in Hounsfield units: its value range looks like HU
    (:func:`is_hu_range`), or the record's modality says CT and the range reaches down
    to air (below -500). A CT output stored as 0..255 or -1..1 is not windowed."""
    if not spec.is_intensity:
        return False
    mods = {str(m).strip().upper() for m in modality or []}
    ct = bool(mods & {"CT", "COMPUTED TOMOGRAPHY"})
    return is_hu_range(spec.value_range) or (ct and spec.value_range[0] <= -500.0)


def default_window(spec: OutputSpec, modality: Iterable[str] | None = None,
                   anatomy: Iterable[str] | None = None) -> tuple[float, float] | None:
    """The window of an output whose record declares none: for CT (:func:`is_ct`)
    :data:`BRAIN_CT_WINDOW` when the anatomy is the head or brain, else
    :data:`DEFAULT_CT_WINDOW` (soft tissue); None for anything else (shown and written
    through ``value_range``)."""
    if not is_ct(spec, modality):
        return None
    if {str(a).strip().upper() for a in anatomy or []} & _HEAD:
        return BRAIN_CT_WINDOW
    return DEFAULT_CT_WINDOW


def parse_window(value: Any) -> tuple[float, float]:
    """A window ``(center, width)`` from ``(C, W)``, ``{"center": C, "width": W}`` or
    the text ``"C,W"``; the width must be above 0."""
    try:
        if isinstance(value, str):
            parts = [p for p in value.replace(" ", "").split(",")]
            if len(parts) != 2:
                raise ValueError
            c, w = float(parts[0]), float(parts[1])
        elif isinstance(value, Mapping):
            c, w = float(value["center"]), float(value["width"])
        else:
            c, w = (float(x) for x in value)
    except (ValueError, TypeError, KeyError):
        raise ConfigError(f"not a window: {value!r}", hint="give the centre and width, e.g. 40,400 "
                          "(soft tissue, HU) or window=(40, 400)") from None
    if not (math.isfinite(c) and math.isfinite(w) and w > 0):
        raise ConfigError(f"window {value!r}: the width must be above 0 and both numbers finite",
                          hint="e.g. 40,400 for soft tissue or 40,80 for brain")
    return (c, w)


def window_range(window: tuple[float, float]) -> tuple[float, float]:
    """The values ``(low, high)`` a window ``(center, width)`` maps onto black..white."""
    c, w = window
    return (c - w / 2.0, c + w / 2.0)


def accepted_shapes(output: Mapping[str, Any]) -> list[tuple[int, ...]]:
    """The per-sample shapes an output may have: ``shape``, with the channels last or
    first when there is more than one (or a singleton channel axis when there is one)."""
    shape = tuple(int(x) for x in output.get("shape", []))
    channels = int(output.get("channels", 1))
    shapes = [shape, shape + (channels,), (channels,) + shape]
    return list(dict.fromkeys(shapes))


def working_nbytes(outputs: Iterable[Mapping[str, Any]]) -> int:
    """Bytes one sample's outputs take while a model computes them, from the declared
    shapes and dtypes (at least 4 bytes a value: models usually compute in float32 even
    when the output is uint8)."""
    total = 0
    for out in outputs:
        n = math.prod(int(x) for x in out.get("shape", [1]))
        channels = int(out.get("channels", 1))
        shape = [int(x) for x in out.get("shape", [])]
        if channels > 1 and channels not in shape[-1:] + shape[:1]:
            n *= channels
        total += n * max(4, _ITEMSIZE.get(str(out.get("dtype")), 4))
    return max(total, 1)


# --- one sample's array --------------------------------------------------------------


def canonical(arr: np.ndarray, spec: OutputSpec) -> np.ndarray:
    """One sample in canonical layout: ``dims`` spatial axes, then channels when > 1
    (a channel axis given first is moved last; a trailing channel axis of 1 is dropped)."""
    a = np.asarray(arr)
    d = spec.dims
    if a.ndim == d + 1:
        if a.shape[-1] == 1 and spec.channels == 1:
            a = a[..., 0]
        elif a.shape[0] in (1, spec.channels) and a.shape[-1] not in (1, 3, 4):
            a = np.moveaxis(a, 0, -1)
            if a.shape[-1] == 1:
                a = a[..., 0]
        elif a.shape[0] == 1:
            a = a[0]
    if a.ndim not in (d, d + 1):
        raise ConfigError(f"output {spec.name!r}: a sample has shape {a.shape}, which does not fit a {d}D output "
                          f"with {spec.channels} channel(s)")
    return a


def _scale(a: np.ndarray, lo: float, hi: float, top: int, dtype: Any) -> np.ndarray:
    span = hi - lo if hi > lo else 1.0
    x = (a.astype(np.float64) - lo) / span
    return np.clip(np.round(x * top), 0, top).astype(dtype)


def to_bits(a: np.ndarray, spec: OutputSpec, bits: int | None) -> tuple[np.ndarray, int, dict[str, Any] | None]:
    """Integer pixels of 8 or 16 bits (``bits``, or the natural depth when None); scaling
    from ``value_range`` only when needed. Returns (pixels, bits, scaling or None), the
    scaling as ``{"from": [lo, hi], "to": [0, top]}``."""
    if a.dtype == np.bool_:
        return a.astype(np.uint8), 8, None
    natural = 8 if a.dtype == np.uint8 else 16 if a.dtype == np.uint16 else None
    if natural is None and np.issubdtype(a.dtype, np.integer) and a.size:
        lo_v, hi_v = int(a.min()), int(a.max())
        if lo_v >= 0 and hi_v <= 255 and bits != 16:
            return a.astype(np.uint8), 8, None
        if lo_v >= 0 and hi_v <= 65535 and bits != 8:
            return a.astype(np.uint16), 16, None
    target = bits or natural or (8 if spec.dtype == "uint8" else 16 if np.issubdtype(a.dtype, np.integer) else 8)
    if natural == target:
        return a, target, None
    top = 255 if target == 8 else 65535
    lo, hi = spec.value_range
    out = _scale(a, lo, hi, top, np.uint8 if target == 8 else np.uint16)
    return out, target, {"from": [lo, hi], "to": [0, top]}


# --- previews and grids --------------------------------------------------------------


def preview_plane(sample: np.ndarray, spec: OutputSpec) -> np.ndarray:
    """The plane of one sample that is shown, in the sample's own values: ``(rows, cols)``
    or ``(rows, cols, 3)``. A volume shows its middle slice along :data:`SLICE_AXIS`."""
    a = canonical(sample, spec)
    if spec.dims == 3:
        a = np.take(a, a.shape[SLICE_AXIS] // 2, axis=SLICE_AXIS)
    if a.ndim == 3:  # channels last
        a = a[..., :3] if a.shape[-1] in (3, 4) else a[..., 0]
    return a


def to_uint8(plane: np.ndarray, value_range: Sequence[float] | None) -> np.ndarray:
    """8-bit display values: ``value_range`` mapped onto 0..255 (the data's min..max when
    the range is missing or empty); NaN and infinities show as 0."""
    a = plane.astype(np.float64)
    a = np.where(np.isfinite(a), a, 0.0)
    if value_range and float(value_range[1]) > float(value_range[0]):
        lo, hi = float(value_range[0]), float(value_range[1])
    else:
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((a - lo) / (hi - lo) * 255.0, 0, 255).round().astype(np.uint8)


def display_range(spec: OutputSpec, window: tuple[float, float] | None = None) -> tuple[float, float]:
    """The values shown black..white: ``window`` (or the spec's) for a one-channel image
    or volume, else ``value_range``."""
    w = window or spec.window
    if w is not None and spec.is_intensity:
        return window_range(w)
    return spec.value_range


def preview(sample: np.ndarray, spec: OutputSpec, window: tuple[float, float] | None = None) -> np.ndarray:
    """One sample as an 8-bit grayscale ``(rows, cols)`` or RGB ``(rows, cols, 3)`` picture,
    through :func:`display_range` (CT through its window)."""
    return to_uint8(preview_plane(sample, spec), display_range(spec, window))


#: the colours of mask overlays and label palettes: label k (k >= 1) gets PALETTE[(k - 1) % len]
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 48, 48), (48, 220, 72), (64, 128, 255), (255, 210, 0), (230, 64, 230), (0, 220, 220),
    (255, 140, 0), (160, 96, 255), (160, 255, 96), (255, 128, 160),
)
#: how much of a mask's colour fills its region in an overlay (its outline is drawn solid)
OVERLAY_ALPHA = 0.25
#: previews are enlarged (nearest neighbour, a whole factor) until the larger side is at least this
TILE_MIN = 256


def palette_bytes(n: int = 256) -> list[int]:
    """A PNG palette (flat RGB list) for label maps: 0 black, k >= 1 :data:`PALETTE` colours."""
    out = [0, 0, 0]
    for k in range(1, n):
        out.extend(PALETTE[(k - 1) % len(PALETTE)])
    return out


def upscale(picture: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor (pixels stay square and sharp)."""
    if factor <= 1:
        return picture
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def upscale_factor(shape: Sequence[int], target: int = TILE_MIN) -> int:
    """The whole factor that brings the larger side of ``shape`` to at least ``target``."""
    side = max(int(shape[0]), int(shape[1]), 1)
    return max(1, int(math.ceil(target / side)))


def outline(mask: np.ndarray) -> np.ndarray:
    """The boundary of a boolean region: its pixels with a 4-neighbour outside it."""
    m = np.asarray(mask, dtype=bool)
    p = np.pad(m, 1, mode="constant", constant_values=False)
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def overlay(picture: np.ndarray, labels: np.ndarray, *, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """An RGB picture with each label (> 0) of ``labels`` (same rows and cols) tinted in its
    :data:`PALETTE` colour and outlined in it. A 0/1 mask is label 1 (red)."""
    rgb = picture if picture.ndim == 3 else np.repeat(picture[:, :, None], 3, axis=2)
    out = rgb.astype(np.float64)
    lab = np.asarray(labels)
    if lab.dtype == np.bool_:
        lab = lab.astype(np.uint8)
    lab = np.where(np.isfinite(lab), lab, 0).astype(np.int64) if lab.dtype.kind == "f" else lab.astype(np.int64)
    for k in np.unique(lab):
        if k <= 0:
            continue
        region = lab == k
        colour = np.array(PALETTE[(int(k) - 1) % len(PALETTE)], dtype=np.float64)
        out[region] = (1 - alpha) * out[region] + alpha * colour
        out[outline(region)] = colour
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def label_plane(sample: np.ndarray, spec: OutputSpec) -> np.ndarray:
    """The shown plane of a mask or label output as integer labels (0 outside)."""
    a = preview_plane(sample, spec)
    if a.ndim == 3:
        a = a[..., 0]
    if a.dtype.kind == "f":
        a = np.where(np.isfinite(a), a, 0)
        return (a > 0.5).astype(np.int64) if spec.kind == "mask" else np.round(a).astype(np.int64)
    return a.astype(np.int64) if spec.kind == "label" else (a > 0).astype(np.int64)


def grid(tiles: Sequence[np.ndarray], *, pad: int = 2, cols: int | None = None) -> np.ndarray:
    """Tile 8-bit pictures into one: ``cols`` a row, or up to 4 a row for 8 or fewer,
    else a square-ish grid; grey between tiles; enlarged by a whole factor when the
    tiles are smaller than :data:`GRID_MIN_TILE`. Grayscale tiles become RGB when any
    tile is colour."""
    if not tiles:
        raise ValueError("no pictures to put in a grid")
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    colour = any(t.ndim == 3 for t in tiles)
    n = len(tiles)
    if cols is None:
        cols = min(n, 4 if n <= 8 else int(math.ceil(math.sqrt(n))))
    cols = max(1, min(n, cols))
    rows = int(math.ceil(n / cols))
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad) + ((3,) if colour else ()), GRID_BACKGROUND,
                     dtype=np.uint8)
    for k, t in enumerate(tiles):
        if colour and t.ndim == 2:
            t = np.repeat(t[:, :, None], 3, axis=2)
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y:y + t.shape[0], x:x + t.shape[1]] = t
    scale = max(1, GRID_MIN_TILE // max(h, w, 1))
    if scale > 1:
        canvas = np.repeat(np.repeat(canvas, scale, axis=0), scale, axis=1)
    return canvas


def save_grid(tiles: Sequence[np.ndarray], path: Path | str, *, cols: int | None = None) -> Path:
    """Write :func:`grid` of ``tiles`` to ``path`` as a PNG (missing folders are created)."""
    from PIL import Image

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(tiles, cols=cols)).save(p, format="PNG")
    return p
