"""A fast PNG encoder for generated samples: numpy filters rows, zlib compresses them.

Generated samples are written by the thousand, so the PNG encoder is on the hot path of
:meth:`synthmed.site.Model.generate_to`. Pillow's encoder tries every PNG filter on every
row and has a per-image overhead of its own; for the sizes models make (64x64 RGB to
512x512 grey) it is several times slower than this one, which applies PNG's "Up" filter to
the whole image in one numpy operation and hands the filtered bytes to :func:`zlib.compress`
in one call (zlib releases the GIL, so a pool of writer threads encodes in parallel). The
files are ordinary PNGs (one IHDR, an optional PLTE, one IDAT, IEND; no timestamps, so the
same pixels and level always give the same bytes). At the same zlib level they are 4-6 %
larger than Pillow's (one filter for every row instead of the best one per row); at the
default level 1, 9-29 % larger than Pillow's default level 6, for 2.7-7 times the speed. ``bench/scale.py`` measures both on this machine
(figures in docs/sdk.md#performance).

Supported: 8-bit grey, RGB and RGBA; 16-bit grey; 8-bit palette images. Anything else (a
1-bit image from a boolean array) is written by Pillow.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from synthmed.registry.errors import ConfigError

#: the zlib level used when none is given: on the bench images level 1 makes files 3-23 %
#: larger than level 6 and encodes 1.4-6 times faster (bench/scale.py)
DEFAULT_LEVEL = 1
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour types by channel count (grey, -, RGB, RGBA)
_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}


def check_level(level: object, where: str = "png_compress_level") -> int:
    """A zlib level 0..9 as an int, or a ConfigError naming ``where``."""
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= int(level) <= 9:
        raise ConfigError(f"{where} must be a whole number from 0 (no compression, fastest) to 9 (smallest), "
                          f"got {level!r}", hint=f"e.g. {DEFAULT_LEVEL} (the default) or 6 (Pillow's default)")
    return int(level)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray, level: int = DEFAULT_LEVEL, palette: "bytes | list[int] | None" = None) -> bytes:
    """The PNG file of ``pixels``: ``(rows, cols)`` uint8 or uint16 grey, ``(rows, cols, 3|4)``
    uint8 RGB(A), or with ``palette`` (768 bytes of RGB, or fewer) a ``(rows, cols)`` uint8
    palette image. ``level`` is zlib's, 0..9."""
    a = np.asarray(pixels)
    if a.ndim not in (2, 3) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"PNG needs a (rows, cols[, channels]) array, got shape {a.shape}")
    channels = 1 if a.ndim == 2 else a.shape[2]
    if channels not in _COLOUR_TYPES:
        raise ValueError(f"PNG takes 1, 3 or 4 channels, got {channels}")
    if a.dtype == np.uint8:
        depth, raw = 8, a
    elif a.dtype == np.uint16 and channels == 1 and palette is None:
        depth, raw = 16, a.astype(">u2", copy=False)
    else:
        raise ValueError(f"PNG pixels must be uint8 (or uint16 grey), got {a.dtype} with {channels} channel(s)")
    rows, cols = a.shape[0], a.shape[1]
    lines = np.ascontiguousarray(raw).view(np.uint8).reshape(rows, -1)
    # filter type 2 ("Up") on every row: each byte minus the byte above it (mod 256);
    # the first row has no row above, so it is its own difference from zeros
    filtered = np.empty((rows, lines.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 2
    filtered[0, 1:] = lines[0]
    np.subtract(lines[1:], lines[:-1], out=filtered[1:, 1:])
    colour = 3 if palette is not None else _COLOUR_TYPES[channels]
    parts = [_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", cols, rows, depth, colour, 0, 0, 0))]
    if palette is not None:
        if channels != 1 or len(palette) % 3 or not 3 <= len(palette) <= 768:
            raise ValueError("a palette PNG needs one channel and 1..256 RGB palette entries")
        parts.append(_chunk(b"PLTE", bytes(palette)))
    parts += [_chunk(b"IDAT", zlib.compress(filtered.data, level)), _chunk(b"IEND", b"")]
    return b"".join(parts)


def write_png_file(path: str, pixels: np.ndarray, level: int = DEFAULT_LEVEL,
                   palette: "bytes | list[int] | None" = None) -> bytes:
    """:func:`encode_png` into a new file at ``path``; returns the bytes written."""
    data = encode_png(pixels, level, palette)
    with open(path, "wb") as fh:
        fh.write(data)
    return data
