"""registry/outputs.py: the layout of each output kind, specs, conversion to bits, the
preview plane and grids; a test report's grid and ``visualize`` show the same plane of a
volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.packages import build_package
from synthmed.registry.checks import modeltest as mt
from synthmed.registry.outputs import (
    SLICE_AXIS,
    OutputSpec,
    accepted_shapes,
    canonical,
    grid,
    output_specs,
    preview,
    preview_plane,
    save_grid,
    to_bits,
    to_uint8,
    working_nbytes,
)
from synthmed.registry.checks.report import write_report
from synthmed.registry.runner import RunnerOptions
from synthmed.site import Model

VOLUME = {"name": "volume", "kind": "volume", "dims": 3, "shape": [5, 6, 7], "dtype": "float32", "channels": 1,
          "value_range": [0, 4], "spacing_mm": [3.0, 1.0, 0.5]}
RGB = {"name": "image", "dims": 2, "shape": [10, 12], "dtype": "uint8", "channels": 3, "value_range": [0, 255]}
MASK = {"name": "mask", "kind": "mask", "dims": 2, "shape": [8, 8], "dtype": "uint8", "channels": 1,
        "value_range": [0, 1]}


# --- layouts and specs ---------------------------------------------------------------


def test_specs_name_the_axes_of_each_kind() -> None:
    vol, rgb, mask = output_specs([VOLUME, RGB, MASK])
    assert (vol.kind, vol.axes) == ("volume", ("slices", "rows", "cols"))
    assert (rgb.kind, rgb.axes) == ("image", ("rows", "cols", "channels"))  # kind defaults by dims
    assert (mask.kind, mask.axes) == ("mask", ("rows", "cols"))
    assert vol.spacing_mm == (3.0, 1.0, 0.5) and vol.value_range == (0.0, 4.0)
    plane = vol.plane()
    assert (plane.dims, plane.shape, plane.spacing_mm, plane.kind) == (2, (6, 7), (1.0, 0.5), "volume")
    assert rgb.plane() is rgb
    assert OutputSpec.from_record({"name": "v", "dims": 3, "shape": [2, 3, 4]}).kind == "volume"
    assert SLICE_AXIS == 0


def test_canonical_layout_of_images_masks_and_volumes() -> None:
    vol, rgb, mask = output_specs([VOLUME, RGB, MASK])
    assert canonical(np.zeros((5, 6, 7)), vol).shape == (5, 6, 7)
    assert canonical(np.zeros((1, 5, 6, 7)), vol).shape == (5, 6, 7)  # a channel axis first
    assert canonical(np.zeros((5, 6, 7, 1)), vol).shape == (5, 6, 7)  # a trailing channel of 1
    assert canonical(np.zeros((3, 10, 12)), rgb).shape == (10, 12, 3)  # channels first -> last
    assert canonical(np.zeros((10, 12, 3)), rgb).shape == (10, 12, 3)
    assert canonical(np.zeros((8, 8, 1), dtype=bool), mask).shape == (8, 8)
    with pytest.raises(Exception, match="does not fit a 3D output"):
        canonical(np.zeros((6, 7)), vol)
    assert accepted_shapes(VOLUME) == [(5, 6, 7), (5, 6, 7, 1), (1, 5, 6, 7)]
    # float32-sized while computed: 5*6*7 values of 4 bytes, and 10*12*3 of at least 4
    assert working_nbytes([VOLUME]) == 5 * 6 * 7 * 4
    assert working_nbytes([RGB]) == 10 * 12 * 3 * 4


# --- bits ----------------------------------------------------------------------------


def test_to_bits_keeps_fitting_integers_and_scales_the_rest() -> None:
    spec = OutputSpec("x", 2, (2, 2), "float32", 1, (-1.0, 1.0))
    u8 = np.array([[0, 7], [200, 255]], dtype=np.uint8)
    px, bits, scaling = to_bits(u8, spec, None)
    assert px is u8 and bits == 8 and scaling is None
    small = np.array([[0, 1], [2, 3]], dtype=np.int32)
    px, bits, scaling = to_bits(small, spec, None)
    assert px.dtype == np.uint8 and bits == 8 and scaling is None and np.array_equal(px, small)
    big = np.array([[0, 1000], [2, 60000]], dtype=np.int32)
    px, bits, scaling = to_bits(big, spec, None)
    assert px.dtype == np.uint16 and bits == 16 and scaling is None and np.array_equal(px, big)
    floats = np.array([[-1.0, 0.0], [1.0, 5.0]], dtype=np.float32)
    px, bits, scaling = to_bits(floats, spec, None)
    assert px.dtype == np.uint8 and px.tolist() == [[0, 128], [255, 255]]
    assert scaling == {"from": [-1.0, 1.0], "to": [0, 255]}
    px, bits, scaling = to_bits(floats, spec, 16)
    assert px.dtype == np.uint16 and bits == 16 and px.tolist() == [[0, 32768], [65535, 65535]]
    px, bits, _ = to_bits(np.array([[True, False]]), spec, None)
    assert px.dtype == np.uint8 and bits == 8 and px.tolist() == [[1, 0]]


def test_to_uint8_windows_by_the_value_range() -> None:
    assert to_uint8(np.array([[0.0, 0.5, 1.0, 2.0]]), (0, 1)).tolist() == [[0, 128, 255, 255]]
    assert to_uint8(np.array([[np.nan, np.inf, 1.0]]), (0, 1)).tolist() == [[0, 0, 255]]
    # an empty range falls back to the data's min..max
    assert to_uint8(np.array([[10, 20]]), (5, 5)).tolist() == [[0, 255]]
    # a 0/1 mask is shown black and white, not as two shades of black
    mask = OutputSpec.from_record(MASK)
    assert preview(np.eye(8, dtype=np.uint8), mask).max() == 255


# --- previews and grids --------------------------------------------------------------


def slices(shape: tuple[int, ...] = (5, 6, 7)) -> np.ndarray:
    """A volume whose slice k (along the slice axis) is the constant k."""
    return np.broadcast_to(np.arange(shape[0], dtype=np.float32)[:, None, None], shape).copy()


def test_preview_plane_is_the_middle_slice_along_the_slice_axis() -> None:
    vol, rgb, _ = output_specs([VOLUME, RGB, MASK])
    plane = preview_plane(slices(), vol)
    assert plane.shape == (6, 7) and np.all(plane == 2)
    assert np.all(preview(slices(), vol) == 128)  # 2 of [0, 4]
    # channels first or last, the same plane; RGBA loses its alpha
    assert preview_plane(slices()[None], vol).shape == (6, 7)
    four = OutputSpec("c", 2, (10, 12), "uint8", 4, (0, 255))
    assert preview_plane(np.zeros((10, 12, 4), dtype=np.uint8), four).shape == (10, 12, 3)
    assert preview(np.zeros((3, 10, 12), dtype=np.uint8), rgb).shape == (10, 12, 3)


def test_grid_tiles_enlarges_and_mixes_colour(tmp_path: Path) -> None:
    tiles = [np.full((8, 8), 10 * k, dtype=np.uint8) for k in range(6)]
    g = grid(tiles)
    # 6 tiles of 8x8: 4 a row, 2 rows, 2 pixels between, enlarged 8 times (64 // 8)
    assert g.shape == ((2 * 10 + 2) * 8, (4 * 10 + 2) * 8) and g.dtype == np.uint8
    assert g[2 * 8, 2 * 8] == 0 and g[2 * 8, (2 + 10) * 8] == 10 and g[0, 0] == 32
    big = grid([np.zeros((100, 80), dtype=np.uint8)] * 16)
    assert big.shape == (4 * 102 + 2, 4 * 82 + 2)  # 16 tiles: 4 x 4, not enlarged
    mixed = grid([np.zeros((4, 4), dtype=np.uint8), np.zeros((4, 4, 3), dtype=np.uint8)])
    assert mixed.ndim == 3 and mixed.shape[-1] == 3
    with pytest.raises(ValueError):
        grid([])
    png = save_grid(tiles, tmp_path / "sub" / "g.png")
    with Image.open(png) as img:
        assert img.mode == "L" and np.array_equal(np.asarray(img), g)


# --- the report grid and visualize show the same plane ---------------------------------

SLICES_MODEL = '''
import numpy as np


class Slices:
    def sample(self, seeds):
        one = np.broadcast_to(np.arange(5, dtype=np.float32)[:, None, None], (5, 6, 7))
        return {"volume": np.stack([one + 0 * s for s in seeds])}


def build(package_dir, device):
    return Slices()
'''


def test_report_grid_and_visualize_show_the_same_plane_of_a_volume(tmp_path: Path) -> None:
    from synthmed.datasets import visualize

    record, pkg, _ = build_package(tmp_path, "slices", {"slices.py": SLICES_MODEL}, package_entry_point="slices:build",
                                   outputs=[VOLUME], modality=["CT"])
    options = RunnerOptions(mode="inline", device="cpu")
    result = mt.test_model(pkg, options)
    assert result.passed, result.reason
    report = write_report(tmp_path / "report", [result])
    assert result.samples_png is not None
    report_png = report.parent / result.samples_png
    model = Model(pkg, options)
    n = int(result.test["num_samples"])
    vis_png = visualize(model.spec(), tmp_path / "vis.png", n, seed=int(result.test["seed"]))
    with Image.open(report_png) as a, Image.open(vis_png) as b:
        got_report, got_vis = np.asarray(a), np.asarray(b)
    assert np.array_equal(got_report, got_vis)
    # and the plane is the middle slice along the slice axis: slice 2 of 0..4 (value_range
    # [0, 4]) is 128 everywhere; the grey between tiles is 32; nothing else is drawn
    assert set(np.unique(got_vis).tolist()) == {32, 128}
