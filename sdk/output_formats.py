"""File formats of generated samples: PNG (8 or 16 bit), NumPy ``.npy``, NIfTI and DICOM.

Each encoder is ``write_<format>(path, sample, ctx)``: it writes one sample of one output
(an array without the batch axis, in any layout :func:`synthmed.registry.outputs.canonical`
accepts) to ``path``, a new file (a new folder for a DICOM volume); :class:`synthmed.output_folder.OutputFolder` picks the
path, the temporary name and the rename. Pixels are made by
:func:`synthmed.registry.outputs.to_bits`; when a sample is scaled from its value range the
encoder records the scaling in ``ctx.run["scaling"][output]`` (DICOM also stores it as a
rescale slope and intercept).

A volume (canonical ``(slices, rows, cols)``, ``spacing_mm`` ``[slice, row, col]``) is
written in NIfTI's index order, voxel ``(i, j, k)`` = (column, row, slice), with an affine
to RAS+ mm along the output's ``orientation`` (:data:`DEFAULT_ORIENTATION`); in DICOM it is
a folder of per-slice images with the same geometry (:func:`write_dicom_series`), and a mask
is a DICOM SEG referencing the image of the same sample (:func:`write_dicom_seg`).

Every file says it is synthetic: NIfTI in ``descrip`` and ``intent_name``, DICOM in its
description, comments, conversion type and a private ``SYNTHMED`` block. The DICOM encoders are
in :mod:`synthmed.dicom_formats`; what every encoder takes (:class:`WriteContext`, the
window, a volume's geometry) in :mod:`synthmed.write_context`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from synthmed.registry.errors import ConfigError
from synthmed.registry.outputs import OutputSpec, canonical, palette_bytes, to_bits, window_range

from .dicom_formats import dicom_is_series, write_dicom, write_dicom_seg, write_dicom_series
from .png_encoder import DEFAULT_LEVEL, write_png_file
from .write_context import (DEFAULT_ORIENTATION, SYNTHETIC_NOTE, WriteContext, chosen_window, orientation_of,
                            record_output, volume_affine)

__all__ = ["AUTO_FORMATS", "DEFAULT_ORIENTATION", "ENCODERS", "EXTENSIONS", "FORMATS", "SYNTHETIC_NOTE",
           "WriteContext", "chosen_window", "dicom_is_series", "orientation_of", "png_window", "volume_affine",
           "write_dicom", "write_dicom_seg", "write_dicom_series", "write_nifti", "write_npy", "write_png"]

FORMATS = ("auto", "png", "npy", "nifti", "dicom")
#: what "auto" writes: PNG for 2D outputs, NIfTI for volumes
AUTO_FORMATS = {2: "png", 3: "nifti"}
EXTENSIONS = {"png": ".png", "npy": ".npy", "nifti": ".nii.gz", "dicom": ".dcm"}


def png_window(spec: OutputSpec, options: Mapping[str, Any]) -> tuple[float, float] | None:
    """The window an output's PNG is written through, or None for the plain mapping:
    :func:`chosen_window`, unless ``bit_depth`` is 16 (the full range, for quantitative use)."""
    return None if options.get("bit_depth") == 16 else chosen_window(spec, options)


def write_png(path: str, arr: np.ndarray, ctx: WriteContext) -> bytes | None:
    """One 2D sample as a PNG:

    - a CT image (or any one-channel image with a window): 8 bits through the window
      (``options["window"]``, else the record's, else :data:`DEFAULT_CT_WINDOW`); the
      window used is recorded in ``ctx.run["window"][output]``. ``bit_depth=16`` writes
      the full value range instead (quantitative use; scaling recorded);
    - a mask (``kind: mask``): 0 outside, 255 inside;
    - a label map (``kind: label``): a palette PNG whose pixel values are the labels
      (colours from :data:`synthmed.registry.outputs.PALETTE`); labels above 255 as 16-bit grey;
    - anything else: 8 or 16 bits by :func:`synthmed.registry.outputs.to_bits`.

    Returns the file's bytes (None for a 1-bit PNG, which Pillow writes).
    """
    spec = ctx.spec
    level = ctx.options.get("png_compress_level", DEFAULT_LEVEL)
    a = canonical(arr, spec)
    if spec.dims != 2:
        raise ConfigError(f"{ctx.record.ref}: output {spec.name!r} is a {spec.dims}D volume; PNG holds 2D images",
                          hint="use --format nifti, dicom or npy for volumes")
    bits = ctx.options.get("bit_depth")
    if spec.kind == "mask" and a.ndim == 2 and bits != 16:
        m = a if a.dtype == np.bool_ else (np.where(np.isfinite(a), a, 0) > (0.5 if a.dtype.kind == "f" else 0))
        data = write_png_file(path, np.where(m, 255, 0).astype(np.uint8), level)
        ctx.run.setdefault("png", {})[spec.name] = {"mask": {"outside": 0, "inside": 255}}
        return data
    if spec.kind == "label" and a.ndim == 2 and a.size and a.dtype.kind in "biu" and int(a.min()) >= 0 \
            and int(a.max()) <= 255:
        data = write_png_file(path, a.astype(np.uint8), level, palette=palette_bytes())
        ctx.run.setdefault("png", {})[spec.name] = {"palette": "pixel value = label"}
        return data
    if a.dtype == np.bool_ and a.ndim == 2 and bits is None:
        from PIL import Image

        Image.fromarray(a).save(path, format="PNG", compress_level=level)  # a 1-bit PNG
        return None
    window = png_window(spec, ctx.options)
    if window is not None and a.ndim == 2:
        lo, hi = window_range(window)
        pixels = np.clip(np.round((np.where(np.isfinite(a), a, lo).astype(np.float64) - lo) / (hi - lo) * 255),
                         0, 255).astype(np.uint8)
        data = write_png_file(path, pixels, level)
        ctx.run.setdefault("window", {})[spec.name] = {"center": window[0], "width": window[1],
                                                        "from": [lo, hi], "to": [0, 255]}
        return data
    pixels, got_bits, scaling = to_bits(a, spec, bits)
    if scaling:
        ctx.run.setdefault("scaling", {})[spec.name] = scaling
    if pixels.ndim == 3:
        channels = pixels.shape[-1]
        if got_bits == 16 and channels != 1:
            raise ConfigError(f"{ctx.record.ref}: output {spec.name!r}: PNG writing here supports 16 bit only "
                              "for grayscale", hint="use --format npy, or 8-bit PNG (bit_depth=8)")
        if channels not in (1, 3, 4):
            raise ConfigError(f"{ctx.record.ref}: output {spec.name!r} has {channels} channels; PNG takes 1, 3 or 4",
                              hint="use --format npy")
        if channels == 1:
            pixels = pixels[..., 0]
    return write_png_file(path, pixels.astype(np.uint8 if got_bits == 8 else np.uint16, copy=False), level)


def write_npy(path: str, arr: np.ndarray, ctx: WriteContext) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.asarray(arr), allow_pickle=False)


def write_nifti(path: str, arr: np.ndarray, ctx: WriteContext) -> None:
    """NIfTI-1 with NIfTI's index order: voxel (i, j, k) is (column, row, slice) of the
    canonical ``(slices, rows, cols)`` sample, so an axial slice ``sample[k]`` is
    ``data[:, :, k].T``; the affine (qform and sform, scanner code 1) maps the indices
    to RAS+ millimetres along the output's declared ``orientation`` (default
    :data:`DEFAULT_ORIENTATION`) with its ``spacing_mm``. Channels go to NIfTI's fifth axis."""
    import nibabel as nib

    spec = ctx.spec
    a = canonical(arr, spec)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    elif a.dtype == np.float16:
        a = a.astype(np.float32)
    orientation = orientation_of(record_output(ctx))
    affine = volume_affine(spec, orientation, a.shape)
    spatial = list(range(spec.dims))[::-1]  # (col, row[, slice])
    data = np.transpose(a, spatial + list(range(spec.dims, a.ndim)))
    if spec.dims == 2:
        data = data[:, :, None]
    if a.ndim > spec.dims:  # channels: NIfTI keeps the 4th axis for time, vectors go 5th
        data = data[:, :, :, None, :]
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    hdr = img.header
    hdr.set_xyzt_units("mm")
    hdr["descrip"] = f"SYNTHETIC synthmed {ctx.record.ref} {orientation}"[:79].encode()
    hdr["intent_name"] = b"SYNTHETIC"
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)



#: the encoder of each format (``auto`` is resolved per output by the output folder)
#: (each returns the bytes it wrote when it had them at hand, else None: the output folder
#: hashes those bytes for the run's manifest, or the file just written)
ENCODERS: dict[str, Callable[[str, np.ndarray, WriteContext], bytes | None]] = {
    "png": write_png, "npy": write_npy, "nifti": write_nifti, "dicom": write_dicom,
}
