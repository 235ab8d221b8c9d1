"""Bounded decoding of image and array files: the one owner of the rule that a file is
decoded only when its header declares no more than a limit.

Array inputs (:mod:`.array_inputs`: PNG, NPY, NIfTI, DICOM) and reference sets
(:mod:`.measuring.reference_sets`: PNG, JPEG, TIFF, BMP through Pillow) read images
through here. Each reader looks at the header first (PNG's IHDR through Pillow, the NPY
header, the NIfTI header's shape and dtype, DICOM's Rows, Columns, NumberOfFrames,
SamplesPerPixel and BitsAllocated), computes the bytes the decoded array will take, and
refuses with a :class:`~.errors.DecodeError` before decompressing or allocating when that
is above ``max_bytes``. A small compressed file cannot make a large array:

- a gzip'd NIfTI is read through a stream that refuses to decompress past the header's
  data size (plus :data:`HEADER_ALLOWANCE` for header and extensions), so a bomb hidden
  in an extension or after the data is never inflated;
- a deflated DICOM (transfer syntax 1.2.840.10008.1.2.1.99) is inflated here, bounded
  the same way, instead of by pydicom's unbounded ``zlib.decompress``;
- Pillow's own decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) is a refusal,
  never a warning.

The limit is the site's ``[inputs] max_decoded_bytes`` (:data:`DEFAULT_MAX_DECODED_BYTES`
when none is given); a caller may pass a smaller one (an array input's declared size).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import struct
import warnings
import zlib
from pathlib import Path
from typing import IO, Any, BinaryIO, Iterator, cast

import numpy as np

from .errors import DecodeError
from .settings import InputSettings

#: the default of the site setting ``[inputs] max_decoded_bytes``: 2 GiB (a 512x512x2048
#: float32 volume)
DEFAULT_MAX_DECODED_BYTES = InputSettings.max_decoded_bytes  # one owner of the default: the settings
#: bytes a NIfTI or a deflated DICOM may hold besides its pixel data (header, extensions,
#: other elements)
HEADER_ALLOWANCE = 16 << 20
_HINT = ("if the file is what you meant, raise the limit: [inputs] max_decoded_bytes in site.toml "
         f"(default {DEFAULT_MAX_DECODED_BYTES})")
_NIFTI1, _NIFTI2 = 348, 540
_DEFLATED = "1.2.840.10008.1.2.1.99"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def check_size(path: Path | str, what: str, nbytes: int, max_bytes: int) -> None:
    """Refuse a file whose header declares ``nbytes`` decoded bytes above ``max_bytes``."""
    if nbytes > max_bytes:
        raise DecodeError(f"{path}: declares {what}, {nbytes} bytes ({_mib(nbytes)}) once decoded, more than the "
                          f"limit of {max_bytes} bytes ({_mib(max_bytes)}); refused before decoding",
                          hint=_HINT, path=str(path))


def _nbytes(shape: tuple[int, ...], itemsize: int) -> int:
    n = itemsize
    for s in shape:
        n *= max(int(s), 0)
    return n


def _shape_text(shape: tuple[int, ...], dtype: Any) -> str:
    return f"an array of {'x'.join(map(str, shape)) or 'one value'} {dtype}"


# -- Pillow: PNG (array inputs), PNG/JPEG/TIFF/BMP (reference sets) -----------------------

_MODE_ITEMSIZE = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}


@contextlib.contextmanager
def pillow_image(path: Path | str, max_bytes: int) -> Iterator[Any]:
    """A Pillow image, opened lazily, its size checked against ``max_bytes`` and Pillow's
    own ``MAX_IMAGE_PIXELS``, then loaded; closed on exit."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with the file named
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise DecodeError(f"{path}: {exc}; refused before decoding", hint=_HINT, path=str(path)) from None
    with im:
        w, h = im.size
        bands = len(im.getbands())
        nbytes = _nbytes((h, w, bands), _MODE_ITEMSIZE.get(im.mode, 1))
        check_size(path, f"a {w}x{h} {im.mode} image", nbytes, max_bytes)
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and w * h > limit:
            raise DecodeError(f"{path}: a {w}x{h} image has {w * h} pixels, more than Pillow's decompression-bomb "
                              f"limit of {limit}; refused before decoding",
                              hint="a picture this large is not an input synthmed reads; scale it down",
                              path=str(path))
        im.load()
        yield im


def _pillow_array(path: Path, max_bytes: int) -> np.ndarray:
    with pillow_image(path, max_bytes) as im:
        if im.mode == "P":
            return np.asarray(im)  # palette indices: a label map
        if im.mode in ("I;16", "I;16B", "I;16L"):
            return np.asarray(im).astype(np.uint16)
        return np.asarray(im)


# -- NPY ----------------------------------------------------------------------------------


def _npy_array(path: Path, max_bytes: int) -> np.ndarray:
    fmt = np.lib.format
    with open(path, "rb") as fh:
        try:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(fh)
            else:
                raise ValueError(f"NPY format version {version[0]}.{version[1]} is not read (1.0 and 2.0 are)")
        except ValueError as exc:
            raise DecodeError(f"{path}: not a readable NPY file ({exc})", hint="write it with numpy.save",
                              path=str(path)) from None
        check_size(path, _shape_text(shape, dtype), _nbytes(tuple(shape), dtype.itemsize), max_bytes)
        fh.seek(0)
        return np.load(fh, allow_pickle=False)


# -- NIfTI --------------------------------------------------------------------------------


class _BoundedStream(io.RawIOBase):
    """A read-only view of ``inner`` that refuses to read or seek past ``cap`` bytes of
    it (for a gzip stream: past ``cap`` decompressed bytes)."""

    def __init__(self, inner: IO[bytes], cap: int, path: Path) -> None:
        self._inner, self._cap, self._path = inner, cap, path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._inner.tell()

    def _refuse(self) -> DecodeError:
        return DecodeError(f"{self._path}: holds more than {self._cap} bytes of header and data once "
                           f"decompressed ({_mib(self._cap)}); refused", hint=_HINT, path=str(self._path))

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else (self._inner.tell() + offset if whence == 1 else None)
        if target is not None and target > self._cap:
            raise self._refuse()
        return self._inner.seek(offset, whence)

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        room = max(self._cap - self._inner.tell(), 0)
        if len(view) > room:
            if len(view) > (1 << 20):  # one large read past the cap: the header asked for more than allowed
                raise self._refuse()
            view = view[:room]
            if not len(view):
                if self._inner.read(1):
                    raise self._refuse()
                return 0
        data = self._inner.read(len(view))
        view[:len(data)] = data
        return len(data)


def _nifti_array(path: Path, max_bytes: int, gz: bool) -> np.ndarray:
    import nibabel as nib

    with open(path, "rb") as raw:
        inner: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw  # type: ignore[assignment]
        stream = _BoundedStream(inner, max_bytes + HEADER_ALLOWANCE, path)
        try:
            head = stream.read(4)
            if len(head) < 4:
                raise ValueError("too short for a NIfTI header")
            sizes = {struct.unpack("<i", head)[0], struct.unpack(">i", head)[0]}
            klass = nib.Nifti1Image if _NIFTI1 in sizes else nib.Nifti2Image if _NIFTI2 in sizes else None
            if klass is None:
                raise ValueError("its header does not start as NIfTI-1 or NIfTI-2 (sizeof_hdr 348 or 540)")
            stream.seek(0)
            holder = nib.FileHolder(fileobj=stream)
            img = klass.from_file_map({"image": holder, "header": holder})
            shape = tuple(int(s) for s in img.header.get_data_shape())
            dtype = np.dtype(img.header.get_data_dtype())
            slope, inter = img.header.get_slope_inter()
            scaled = (slope is not None and slope != 1) or (inter is not None and inter != 0)
            itemsize = max(dtype.itemsize, 8) if scaled else dtype.itemsize  # scaling reads as float64
            check_size(path, _shape_text(shape, dtype), _nbytes(shape, itemsize), max_bytes)
            return np.asanyarray(img.dataobj)
        except (gzip.BadGzipFile, zlib.error, EOFError, struct.error) as exc:
            raise DecodeError(f"{path}: damaged compressed data ({exc})", hint="write the file again",
                              path=str(path)) from None


# -- DICOM --------------------------------------------------------------------------------


def _dicom_itemsize(bits: int) -> int:
    return 1 if bits <= 8 else 2 if bits <= 16 else 4 if bits <= 32 else 8


def _inflate(fh: IO[bytes], cap: int, path: Path) -> Any:
    """The deflated dataset after a DICOM file's meta group, inflated to at most ``cap``
    bytes, as a DicomBytesIO at its start."""
    from pydicom.filebase import DicomBytesIO

    d = zlib.decompressobj(-zlib.MAX_WBITS)
    out = DicomBytesIO()
    size = 0
    while True:
        chunk = d.unconsumed_tail or fh.read(1 << 16)
        if not chunk:
            break
        part = d.decompress(chunk, cap + 1 - size)
        size += len(part)
        if size > cap:
            raise DecodeError(f"{path}: its deflated dataset inflates to more than {cap} bytes "
                              f"({_mib(cap)}); refused", hint=_HINT, path=str(path))
        out.write(part)
        if d.eof:
            break
    out.seek(0)
    return out


def _dicom_dataset(path: Path, max_bytes: int) -> Any:
    import pydicom
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble

    with open(path, "rb") as fh:
        read_preamble(fh, False)
        meta = _read_file_meta_info(fh)
        if str(meta.get("TransferSyntaxUID", "")) != _DEFLATED:
            fh.seek(0)
            return pydicom.dcmread(fh, defer_size=None)
        inflated = _inflate(fh, max_bytes + HEADER_ALLOWANCE, path)
    ds = read_dataset(cast(BinaryIO, inflated), is_implicit_VR=False, is_little_endian=True)
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian  # what the inflated bytes are
    ds.file_meta = meta
    return ds


def _dicom_array(path: Path, max_bytes: int) -> np.ndarray:
    ds = _dicom_dataset(path, max_bytes)
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError) as exc:
        raise DecodeError(f"{path}: no readable image header (Rows, Columns, BitsAllocated: {exc})",
                          hint="give a DICOM image file", path=str(path)) from None
    shape = (frames, rows, cols, samples)
    check_size(path, f"{frames} frame(s) of {rows}x{cols}, {samples} sample(s) of {bits} bits", 
               _nbytes(shape, _dicom_itemsize(bits)), max_bytes)
    return np.asarray(ds.pixel_array)


# -- one entry --------------------------------------------------------------------------------


def read_array(path: Path, suffix: str, max_bytes: int) -> np.ndarray:
    """One file as an array, ``suffix`` (``.png``, ``.npy``, ``.nii``, ``.nii.gz``,
    ``.dcm``) saying how to read it; DecodeError before decoding when its header declares
    more than ``max_bytes``."""
    if suffix == ".png":
        return _pillow_array(path, max_bytes)
    if suffix == ".npy":
        return _npy_array(path, max_bytes)
    if suffix in (".nii", ".nii.gz"):
        return _nifti_array(path, max_bytes, gz=suffix == ".nii.gz")
    if suffix == ".dcm":
        return _dicom_array(path, max_bytes)
    raise ValueError(f"not an input file: {path}")
