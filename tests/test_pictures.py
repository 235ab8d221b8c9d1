"""Pictures (issue 17 item 3) and output selection (item 4): CT PNGs through a window,
masks as 0/255, label maps as palette PNGs; ``visualize`` windows CT, overlays masks with
outlines, enlarges small samples, shows outputs side by side; ``--outputs`` / ``outputs=``
write only the chosen outputs and nothing blank; ``--format png`` writes the 2D outputs
and names the volumes that need another format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from helpers.packages import build_package
from synthmed.registry.errors import ConfigError
from synthmed.registry.outputs import (
    BRAIN_CT_WINDOW,
    DEFAULT_CT_WINDOW,
    PALETTE,
    OutputSpec,
    outline,
    overlay,
    parse_window,
    record_specs,
    upscale_factor,
)
from synthmed.registry.packages import prepare_archive
from synthmed.registry.records import load_record
from synthmed.registry.runner import RunnerOptions
from synthmed.site import Model

REPO = Path(__file__).resolve().parents[1]
INLINE = RunnerOptions(device="cpu", mode="inline")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Model:
    """The index's phantom-lesion (CT head phantom: 2D image+mask, 3D volume+volume_mask)."""
    rec = load_record(REPO / "index" / "models" / "phantom-lesion" / "1.0.0.json")
    pkg = prepare_archive(rec, REPO / "index" / "artefacts" / "phantom-lesion" / "1.0.0.zip",
                          tmp_path_factory.mktemp("phantom") / "packages")
    return Model(pkg, INLINE)


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


# --- windows ---------------------------------------------------------------------------


def test_default_windows_from_modality_anatomy_and_value_range(phantom: Model) -> None:
    specs = {s.name: s for s in record_specs(phantom.record)}
    assert specs["image"].window == BRAIN_CT_WINDOW == (40.0, 80.0)  # CT of the head: the brain window
    assert specs["volume"].window == BRAIN_CT_WINDOW
    assert specs["mask"].window is None and specs["volume_mask"].window is None
    ct = {"name": "ct", "dims": 2, "shape": [4, 4], "dtype": "int16", "channels": 1, "value_range": [-1024, 3071]}
    assert OutputSpec.from_record(ct, ["CT"], ["chest"]).window == DEFAULT_CT_WINDOW  # soft tissue
    assert OutputSpec.from_record(ct).window == DEFAULT_CT_WINDOW  # HU-like range, no modality given
    assert OutputSpec.from_record({**ct, "window": {"center": -600, "width": 1500}}, ["CT"]).window == (-600, 1500)
    # a CT stored as 0..255 or -1..1 is not in HU: no window
    assert OutputSpec.from_record({**ct, "value_range": [0, 255]}, ["CT"]).window is None
    assert OutputSpec.from_record({**ct, "value_range": [-1, 1]}, ["CT"]).window is None
    assert OutputSpec.from_record({**ct, "value_range": [0, 255]}, ["MR"]).window is None
    assert parse_window("40,400") == (40.0, 400.0) and parse_window((40, 80)) == (40.0, 80.0)
    for bad in ("40", "a,b", (40, 0), (40, -1), "1,2,3"):
        with pytest.raises(ConfigError):
            parse_window(bad)


# --- PNG writing ---------------------------------------------------------------------


def test_ct_png_is_windowed_and_mask_png_is_0_255(phantom: Model, tmp_path: Path) -> None:
    raw = phantom.sample(2, seed=3)
    res = phantom.generate_to(tmp_path / "o", 2, format="png", seed=3)
    side = json.loads(res.sidecar.read_text())
    lo, hi = 0.0, 80.0  # the brain window 40,80
    for i in range(2):
        img = _png(tmp_path / "o" / "image" / f"{i:06d}.png")
        assert img.dtype == np.uint8 and img.ndim == 2
        hu = raw["image"][i].astype(np.float64)
        expected = np.clip(np.round((hu - lo) / (hi - lo) * 255), 0, 255)
        assert np.array_equal(img, expected)
        assert img.std() > 40  # not flat grey: tissue, ventricles, skull and lesions differ
        mask = _png(tmp_path / "o" / "mask" / f"{i:06d}.png")
        assert set(np.unique(mask)) <= {0, 255} and (mask == 255).sum() == raw["mask"][i].astype(bool).sum() > 0
    assert side["run"]["window"]["image"] == {"center": 40.0, "width": 80.0, "from": [0.0, 80.0], "to": [0, 255]}
    assert side["run"]["png"]["mask"] == {"mask": {"outside": 0, "inside": 255}}
    assert [o["window"] for o in side["outputs"] if o["name"] == "image"] == [{"center": 40.0, "width": 80.0}]


def test_window_option_and_16_bit_full_range(phantom: Model, tmp_path: Path) -> None:
    raw = phantom.sample(1, seed=0)["image"][0].astype(np.float64)
    res = phantom.generate_to(tmp_path / "w", 1, format="png", outputs="image", window="40,400")
    img = _png(tmp_path / "w" / "image" / "000000.png")
    assert np.array_equal(img, np.clip(np.round((raw + 160) / 400 * 255), 0, 255))
    side = json.loads(res.sidecar.read_text())
    assert side["options"]["window"] == {"center": 40.0, "width": 400.0}
    assert side["run"]["window"]["image"]["from"] == [-160.0, 240.0]
    # 16 bits: the full value range, as before (quantitative use), no window
    res16 = phantom.generate_to(tmp_path / "q", 1, format="png", outputs=["image"], bit_depth=16)
    with Image.open(tmp_path / "q" / "image" / "000000.png") as im:
        assert im.mode.startswith("I")
        q = np.asarray(im).astype(np.float64)
    assert np.allclose(q, np.round((raw + 1024) / 4095 * 65535), atol=1)
    side16 = json.loads(res16.sidecar.read_text())
    assert "window" not in side16["run"] and side16["run"]["scaling"]["image"]["from"] == [-1024.0, 3071.0]
    with pytest.raises(ConfigError, match="bit depth 16"):
        phantom.generate_to(tmp_path / "x", 1, format="png", outputs="image", window=(40, 80), bit_depth=16)
    with pytest.raises(ConfigError, match="not a window"):
        phantom.generate_to(tmp_path / "y", 1, format="png", outputs="image", window="wide")


LABELS_MODEL = '''
import numpy as np


class Labels:
    def sample(self, seeds):
        out = []
        for s in seeds:
            a = np.zeros((8, 8), dtype=np.uint8)
            a[:4, :4] = 1
            a[4:, 4:] = 2 + s % 2
            out.append(a)
        return {"labels": np.stack(out)}


def build(package_dir, device):
    return Labels()
'''
LABELS = {"name": "labels", "kind": "label", "dims": 2, "shape": [8, 8], "dtype": "uint8", "channels": 1,
          "value_range": [0, 3]}


def test_label_map_png_is_a_palette_png_keeping_the_labels(tmp_path: Path) -> None:
    _, pkg, _ = build_package(tmp_path, "labels", {"labels.py": LABELS_MODEL}, package_entry_point="labels:build",
                              outputs=[LABELS])
    model = Model(pkg, INLINE)
    model.generate_to(tmp_path / "o", 2, format="png")
    with Image.open(tmp_path / "o" / "labels" / "000001.png") as im:
        assert im.mode == "P"
        pal = im.getpalette()
        assert pal is not None and tuple(pal[3:6]) == PALETTE[0]
        got = np.asarray(im)
    assert got[0, 0] == 1 and got[7, 7] == 3 and got[0, 7] == 0
    # visualize: a label map alone is shown in colour on black, enlarged
    from synthmed.datasets import visualize

    png = _png(visualize(model.spec(), tmp_path / "l.png", 1))
    assert png.ndim == 3 and png.shape[0] >= 256
    assert tuple(png[10, 10]) == PALETTE[0]


# --- overlays, outlines, enlargement ---------------------------------------------------


def test_outline_and_overlay() -> None:
    m = np.zeros((7, 7), dtype=bool)
    m[2:5, 2:5] = True
    ring = outline(m)
    assert ring.sum() == 8 and not ring[3, 3] and ring[2, 2]
    pic = overlay(np.full((7, 7), 100, dtype=np.uint8), m)
    assert pic.shape == (7, 7, 3)
    assert tuple(pic[2, 2]) == PALETTE[0]  # the outline is solid
    assert tuple(pic[0, 0]) == (100, 100, 100)  # outside untouched
    assert pic[3, 3, 0] > 100 and tuple(pic[3, 3]) != PALETTE[0]  # inside tinted
    assert upscale_factor((32, 32)) == 8 and upscale_factor((64, 64)) == 4 and upscale_factor((300, 200)) == 1


def test_a_grid_of_several_columns_is_about_square_and_labelled(phantom: Model, tmp_path: Path) -> None:
    """16 samples of image | mask side by side: 3 samples a row (6 x 6 tiles), not a strip of
    16 rows; each column named above it (issue #26: the dual-GAN's 518 x 4130 strip)."""
    from PIL import Image

    from synthmed.datasets import groups_per_row, visualize

    assert [groups_per_row(16, 2), groups_per_row(3, 2), groups_per_row(16, 3), groups_per_row(1, 2)] == [3, 1, 2, 1]
    path = visualize(phantom.spec(), tmp_path / "pairs.png", 16, seed=0, side_by_side=True,
                     params={"dims": 2})
    w, h = Image.open(path).size
    assert w == 6 * 256 + 14 and h == 26 + 6 * 256 + 14 and 0.9 < w / h < 1.1
    png = _png(path)
    band = png[:26].max(axis=-1)
    for c in range(6):  # a label above every column
        x0 = 2 + c * 258
        assert (band[:, x0:x0 + 256] > 200).sum() > 20, c


def test_visualize_overlays_outlines_on_the_windowed_ct(phantom: Model, tmp_path: Path) -> None:
    from synthmed.datasets import visualize

    png = _png(visualize(phantom.spec(), tmp_path / "g.png", 2, seed=0))
    assert png.ndim == 3  # colour: the mask overlay
    red = (png[..., 0] == PALETTE[0][0]) & (png[..., 1] == PALETTE[0][1]) & (png[..., 2] == PALETTE[0][2])
    assert red.sum() > 20  # lesion outlines
    # tiles are 128x128 enlarged 2x: two tiles and the padding, doubled by nothing else
    assert png.shape[:2] == (256 + 4, 2 * 256 + 6)
    plain = _png(visualize(phantom.spec(), tmp_path / "p.png", 2, seed=0, overlay=False))
    assert plain.ndim == 2 and plain.std() > 40  # windowed: not flat grey
    # side by side: image | mask columns under a row of labels (26 pixels), a sample per row
    # while that is the squarest layout
    sbs = _png(visualize(phantom.spec(), tmp_path / "s.png", 3, seed=0, side_by_side=True))
    assert sbs.shape[:2] == (26 + 3 * 256 + 8, 2 * 256 + 6)
    # outputs as columns: the 2D slice and the volume's middle slice, both 256 pixels
    cols = _png(visualize(phantom.spec(), tmp_path / "c.png", 1, seed=0, outputs="image,volume"))
    assert cols.shape[:2] == (26 + 256 + 4, 2 * 256 + 6)
    assert (cols[:26].max(axis=-1) > 200).sum() > 50  # the labels, white on the grey band
    with pytest.raises(ConfigError, match="its outputs are: image, mask, volume, volume_mask"):
        visualize(phantom.spec(), tmp_path / "n.png", 1, outputs="image,nope")


# --- output selection ----------------------------------------------------------------


def _files(folder: Path) -> dict[str, list[str]]:
    return {p.name: sorted(f.name for f in p.iterdir()) for p in sorted(folder.iterdir()) if p.is_dir()}


def test_selection_writes_only_the_chosen_outputs(phantom: Model, tmp_path: Path) -> None:
    res = phantom.generate_to(tmp_path / "o", 2, outputs=["volume", "volume_mask"], dims=3)
    assert _files(tmp_path / "o") == {"volume": ["000000.nii.gz", "000001.nii.gz"],
                                      "volume_mask": ["000000.nii.gz", "000001.nii.gz"]}
    side = json.loads(res.sidecar.read_text())
    assert side["selection"] == {"outputs": ["volume", "volume_mask"],
                                 "left_out": {"image": "not selected", "mask": "not selected"}}
    assert [o["name"] for o in side["outputs"]] == ["volume", "volume_mask"]
    assert res.outputs == ["volume", "volume_mask"] and side["complete"] is True
    # resuming: complete when the selected outputs exist
    again = phantom.generate_to(tmp_path / "o", 2, outputs="volume,volume_mask", dims=3)
    assert (again.written, again.skipped) == (0, 2)
    # another selection into the same folder would mix runs
    with pytest.raises(ConfigError, match="different outputs"):
        phantom.generate_to(tmp_path / "o", 2, outputs="image", dims=3)


def test_no_blank_file_anywhere(phantom: Model, tmp_path: Path) -> None:
    """dims=2 makes the phantom return a blank volume; selecting the 2D outputs writes no
    file for it, and every file written holds the model's (non-blank) pixels."""
    raw = phantom.sample(3, seed=0, dims=2)
    assert not raw["volume_mask"].any()  # what the model returns for the pair not asked for
    phantom.generate_to(tmp_path / "o", 3, outputs="image,mask", dims=2)
    files = _files(tmp_path / "o")
    assert set(files) == {"image", "mask"}
    for name, names in files.items():
        for f in names:
            px = _png(tmp_path / "o" / name / f)
            assert px.any(), f"{name}/{f} is blank"


def test_format_png_writes_the_2d_outputs_and_names_the_volumes(phantom: Model, tmp_path: Path) -> None:
    res = phantom.generate_to(tmp_path / "o", 2, format="png")
    assert _files(tmp_path / "o") == {"image": ["000000.png", "000001.png"], "mask": ["000000.png", "000001.png"]}
    assert res.outputs == ["image", "mask"]
    assert set(res.left_out) == {"volume", "volume_mask"}
    assert all("nifti, dicom or npy" in why for why in res.left_out.values())
    # a volume asked for by name as PNG is refused, before any model code runs
    with pytest.raises(ConfigError, match="3D volumes; PNG holds 2D images"):
        phantom.generate_to(tmp_path / "v", 1, format="png", outputs="image,volume")
    assert not (tmp_path / "v").exists()


def test_unknown_output_name_lists_the_outputs(phantom: Model, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        phantom.generate_to(tmp_path / "o", 1, outputs="image,lesions")
    text = str(err.value) + " " + str(getattr(err.value, "hint", ""))
    assert "'lesions'" in text and "image (2D, image)" in text and "volume_mask (3D, mask)" in text
    assert not (tmp_path / "o").exists()


def test_cli_generate_outputs_and_png_volumes(phantom: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI passes --outputs/--window through and prints which volumes need another format."""
    from synthmed.cli import run_cmds

    class FakeSite:
        def __init__(self, **kw: Any) -> None:
            pass

        def resolve(self, ref: str) -> Any:
            return type("E", (), {"record": phantom.record})()

        def model(self, entry: Any, **options: Any) -> Model:
            return Model(phantom.package, INLINE)

        def close(self) -> None:
            pass

    import synthmed.site

    monkeypatch.setattr(synthmed.site, "Site", FakeSite)
    from synthmed.registry.settings import Settings

    monkeypatch.setattr(run_cmds, "settings_from_args", lambda *a, **k: Settings(home=tmp_path / "site"))
    from synthmed.cli import main

    assert main(["generate", "phantom-lesion", "-n", "1", "-o", str(tmp_path / "p"), "--format", "png",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "not written: volume, volume_mask" in out and "--format nifti" in out
    assert main(["generate", "phantom-lesion", "-n", "1", "-o", str(tmp_path / "m"), "--outputs", "mask",
                 "--no-progress"]) == 0
    assert _files(tmp_path / "m") == {"mask": ["000000.png"]}
    assert main(["generate", "phantom-lesion", "-n", "1", "-o", str(tmp_path / "x"), "--outputs", "nope",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "no output 'nope'" in err and "volume_mask" in err


def test_generators_generate_passes_outputs_and_window(phantom: Model, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from synthmed.generators import Generators

    g = Generators.__new__(Generators)
    g.progress = False  # no site was opened, so no progress setting came with it
    monkeypatch.setattr(Generators, "get_model_executor", lambda self, model_id, install_dependencies=False:
                        Model(phantom.package, INLINE), raising=False)
    g.generate("phantom-lesion", num_samples=1, output_path=tmp_path / "g", outputs="image",
               window=(40, 400), dims=2, layout="synthmed", seed=0)
    folder = tmp_path / "g"
    assert _files(Path(folder)) == {"image": ["000000.png"]}
    side = json.loads((Path(folder) / "synthmed.json").read_text())
    assert side["options"]["window"] == {"center": 40.0, "width": 400.0} and side["params"]["dims"] == 2
