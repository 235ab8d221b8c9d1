"""The fast PNG encoder (read back by Pillow, pixel for pixel) and the writer pool
(bounded, errors reach the caller, the same files whatever the thread count)."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthmed.png_encoder import encode_png
from synthmed.registry.errors import ConfigError
from synthmed.registry.outputs import palette_bytes
from synthmed.registry.runner import RunnerOptions
from synthmed.site import Model
from synthmed.writer_pool import WriterOptions, WriterPool


def _read(data: bytes, tmp: Path) -> Image.Image:
    p = tmp / "x.png"
    p.write_bytes(data)
    img = Image.open(p)
    img.load()
    return img


@pytest.mark.parametrize("level", [0, 1, 9])
def test_png_encoder_reads_back_equal_in_pillow(tmp_path: Path, level: int) -> None:
    rng = np.random.default_rng(level)
    cases = [
        ("L", rng.integers(0, 256, (37, 53), dtype=np.uint8)),
        ("RGB", rng.integers(0, 256, (16, 9, 3), dtype=np.uint8)),
        ("RGBA", rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)),
        ("I;16", rng.integers(0, 65536, (11, 13), dtype=np.uint16)),
        ("L", np.zeros((1, 1), dtype=np.uint8)),
    ]
    for mode, a in cases:
        img = _read(encode_png(a, level), tmp_path)
        got = np.asarray(img)
        assert img.mode.startswith(mode.split(";")[0]) and np.array_equal(got.astype(a.dtype), a), (mode, a.shape)
    labels = rng.integers(0, 6, (20, 20), dtype=np.uint8)
    img = _read(encode_png(labels, level, palette=palette_bytes()), tmp_path)
    assert img.mode == "P" and np.array_equal(np.asarray(img), labels)
    assert bytes(img.getpalette() or [])[:18] == bytes(palette_bytes())[:18]
    # same pixels, same level: the same bytes
    assert encode_png(cases[0][1], level) == encode_png(cases[0][1].copy(), level)


def test_png_encoder_refuses_what_png_cannot_hold() -> None:
    for bad in (np.zeros((4, 4, 2), np.uint8), np.zeros((4,), np.uint8), np.zeros((4, 4), np.float32),
                np.zeros((4, 4, 3), np.uint16), np.zeros((0, 4), np.uint8)):
        with pytest.raises(ValueError):
            encode_png(bad)
    for level in (-1, 10, 1.5, "1", True):
        with pytest.raises(ConfigError, match="png_compress_level"):
            WriterOptions(png_compress_level=level)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="writers"):
        WriterOptions(writers=-1)


def test_pool_is_bounded_and_raises_the_first_writer_error() -> None:
    live = []
    peak = [0]
    lock = threading.Lock()

    def slow(index: int, sample: object) -> None:
        with lock:
            live.append(index)
            peak[0] = max(peak[0], len(live))
        time.sleep(0.002)
        with lock:
            live.remove(index)

    seen = []
    pool = WriterPool(slow, workers=3, max_pending=5)
    for i in range(60):
        pool.submit(i, {})
        # queued or running never exceeds max_pending: count the slots in use
        seen.append(pool.pending)
    pool.drain()
    pool.close()
    assert pool.done == 60 and max(seen) <= 5 and peak[0] <= 3

    def failing(index: int, sample: object) -> None:
        if index == 7:
            raise OSError(28, "No space left on device")

    pool = WriterPool(failing, workers=2, max_pending=4)
    with pytest.raises(OSError, match="No space"):
        for i in range(1000):
            pool.submit(i, {})
        pool.drain()
    pool.close(cancel=True)
    assert pool.done < 1000


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.png"))}


def test_generate_to_writes_the_same_files_with_any_number_of_writers(tmp_path: Path, toy_gan) -> None:
    record, pkg, _ = toy_gan
    m = Model(pkg, RunnerOptions(batch_size=4))
    sync = m.generate_to(tmp_path / "w0", 11, format="png", seed=3, writers=0, label="benign")
    pooled = m.generate_to(tmp_path / "w3", 11, format="png", seed=3, writers=3, label="benign")
    assert sync.written == pooled.written == 11
    assert _digests(tmp_path / "w0") == _digests(tmp_path / "w3") and len(_digests(tmp_path / "w0")) == 11
    # another level: the same pixels, other bytes, and not mixed into a folder of level 1
    m.generate_to(tmp_path / "l9", 11, format="png", seed=3, png_compress_level=9, label="benign")
    a = np.asarray(Image.open(tmp_path / "l9" / "image" / "000004.png"))
    b = np.asarray(Image.open(tmp_path / "w0" / "image" / "000004.png"))
    assert np.array_equal(a, b)
    with pytest.raises(ConfigError, match="different options"):
        m.generate_to(tmp_path / "w0", 12, format="png", seed=3, png_compress_level=9, label="benign")
    with pytest.raises(ConfigError, match="png_compress_level"):
        m.generate_to(tmp_path / "x", 1, format="png", png_compress_level=11, label="benign")
    m.close()


def test_site_toml_output_section_sets_the_defaults_and_bad_values_are_refused(tmp_path: Path) -> None:
    from helpers.sites import write_site
    from synthmed.site import Site

    settings = write_site(tmp_path / "a", [], output={"png_compress_level": 6, "writers": 0})
    assert Site(settings=settings).writer_options == WriterOptions(png_compress_level=6, writers=0)
    for bad in ({"png_compress_level": 10}, {"writers": -2}, {"threads": 2}):
        with pytest.raises(ConfigError, match="output"):
            write_site(tmp_path / "b", [], output=bad)
