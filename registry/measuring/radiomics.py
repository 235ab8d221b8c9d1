"""The Fréchet Radiomics Distance (FRD; Konz, Osuala et al., Medical Image Analysis 2026) as
a pinned, offline extractor: ``frd-radiomics`` records in an index (``network``
``frd-radiomics-v1``), computed through the pinned ``frd-score`` and pyradiomics
(``pyradiomics-bhklab``) packages, with no network and no weights file.

Per image, the features are exactly those ``python -m frd_score A B`` (v1, the package's
default) computes: pyradiomics with the package's own YAML configuration (first-order,
GLCM, GLRLM, GLSZM, NGTDM on the original, LoG sigma 2..5 and wavelet images; pyradiomics'
intensity normalisation; 2 px resampling), on the whole image but its first pixel (the
package's mask, a workaround of a pyradiomics bug), with the numeric diagnostics the paper's
vectors held; a 2-D image is read as a 1-slice volume of spacing 1, an RGB image as its
ITU-R BT.709 luminance (what SimpleITK's float reader makes of it). The set-level part
(:func:`frd_v1`) is the package's too: rows with a NaN dropped, float32, z-scores w.r.t. the
reference set's mean and population std, columns with NaN/inf dropped, the Fréchet distance
of ``frd_score.calculate_frechet_distance``, then its natural log.

**Constant images.** A flat image (every pixel equal) has no contrast: pyradiomics'
normalisation divides by its standard deviation 0 and ``frd-score`` crashes ("arange:
cannot compute length"). synthmed measures a flat image as the image that normalisation
tends to, every pixel at the mean: the all-zero image, extracted with normalisation off
(the original-image diagnostics keep the image's own value). Its features are finite, so
a model that draws flat images gets a (large) FRD instead of a traceback.

Extraction runs over worker processes (``workers``; pyradiomics takes about 0.2 s per
64x64 patch on one core); the features of a reference set are cached with the set
(:mod:`.reference_sets`), the generated set's under ``<site>/cache/features/``.
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import logging
import multiprocessing
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, Iterable, Mapping, NamedTuple, Protocol, Sequence, TypeVar

import numpy as np

from ..errors import EvaluationError, NotPinned



class ExtractorRecord(Protocol):
    """What this module reads of an extractor record (:class:`.extractors.ExtractorRecord`,
    which imports this module)."""

    @property
    def ref(self) -> str: ...

    @property
    def data(self) -> Mapping[str, Any]: ...


Rec = TypeVar("Rec", bound=ExtractorRecord)

log = logging.getLogger(__name__)

#: the networks this module implements (an extractor record's ``network``)
NETWORKS = ("frd-radiomics-v1",)
#: the optional dependencies that compute FRD (``pip install 'synthmed[frd]'``)
INSTALL_HINT = "install the FRD extra: pip install 'synthmed[frd]' (frd-score and pyradiomics-bhklab, pinned)"
#: the 2-D image and 3-D volume file suffixes FRD reads (as frd-score does)
FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii.gz")
#: ITU-R BT.709 luminance, the weights SimpleITK's float reader applies to an RGB(A) picture
_LUMA = (2125.0, 7154.0, 721.0)
_FLAT_DIAGNOSTICS = ("diagnostics_Image-original_Mean", "diagnostics_Image-original_Minimum",
                     "diagnostics_Image-original_Maximum")


# -- what is installed --------------------------------------------------------------------------


def installed_versions(packages: Iterable[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def check_software(record: "ExtractorRecord") -> None:
    """Refuse unless the packages the record pins are installed at exactly those versions
    and the pyradiomics configurations are the files the record pins by sha256."""
    soft = record.data["software"]
    pinned = dict(soft["packages"])
    have = installed_versions(pinned)
    wrong = [f"{n} {have[n] or 'not installed'} (the record pins {v})" for n, v in pinned.items() if have[n] != v]
    if wrong:
        raise NotPinned(f"extractor {record.ref} cannot run here: " + "; ".join(wrong), hint=INSTALL_HINT)
    for dims, want in soft["config_sha256"].items():
        got = hashlib.sha256(Path(config_path(int(dims[0]))).read_bytes()).hexdigest()
        if got != want:
            raise NotPinned(f"extractor {record.ref}: frd-score's {dims} configuration has sha256 {got}, "
                            f"the record pins {want}", hint=INSTALL_HINT)


def config_path(image_dim: int) -> str:
    from frd_score import frd

    return str(frd.V1_CONFIG_2D if image_dim == 2 else frd.V1_CONFIG_3D)


# -- one image -----------------------------------------------------------------------------------


class _Extractors:
    """pyradiomics extractors of one process, made on first use (2-D and 3-D, with and
    without normalisation)."""

    def __init__(self) -> None:
        self._made: dict[tuple[int, bool], Any] = {}

    def get(self, image_dim: int, normalise: bool) -> Any:
        key = (image_dim, normalise)
        if key not in self._made:
            from frd_score import frd

            frd._ensure_radiomics()
            single_threaded()
            base = self._made.get((image_dim, True)) or frd.get_feature_extractor(frd.FRD_VERSION_V1, image_dim=image_dim)
            self._made[(image_dim, True)] = base
            if not normalise:
                flat = copy.deepcopy(base)
                flat.settings["normalize"] = False
                self._made[key] = flat
        return self._made[key]


_EXTRACTORS = _Extractors()


def single_threaded() -> None:
    """pyradiomics' own log kept to errors (it logs per image and feature class). SimpleITK's
    filters keep their default thread count (one per core, as in ``python -m frd_score``): one
    thread per image would be faster on patches (0.18 s against 0.23-0.31 s per 64x64 patch on
    the 2-core machine), but it changes the round-off of features that are zero but for it
    (wavelet sub-band means, ~1e-16), which FRD's z-scores blow up to whole features: the FRD
    of a set of RGB pictures then moved by 1.5e-4 relative and lost its parity with frd-score."""
    logging.getLogger("radiomics").setLevel(logging.ERROR)


def grey(a: np.ndarray, image_dim: int) -> np.ndarray:
    """A picture -> float32 grey values as SimpleITK's float reader gives them (RGB(A): BT.709
    luminance; anything else: the values as stored)."""
    a = np.asarray(a)
    if a.ndim == image_dim + 1 and a.shape[-1] in (3, 4):
        rgb = a[..., :3].astype(np.float64)
        a = (rgb[..., 0] * _LUMA[0] + rgb[..., 1] * _LUMA[1] + rgb[..., 2] * _LUMA[2]) / 10000.0
    if a.ndim != image_dim:
        raise EvaluationError(f"FRD takes {image_dim}-D images (grey or RGB), got an array of shape {a.shape}")
    return a.astype(np.float32)


class Item(NamedTuple):
    """One image or volume to extract: grey values (2-D ``(rows, cols)`` or 3-D ``(slices, rows,
    cols)``), its spacing in SimpleITK's order (x = cols first), origin and direction of a volume,
    and the region of interest: a mask of the same shape (0/1, or 0/255 as frd-score rescales
    it), or None for the whole image but its first pixel (frd-score's mask without one)."""

    array: np.ndarray
    spacing: Sequence[float]
    origin: Sequence[float] | None = None
    direction: Sequence[float] | None = None
    mask: np.ndarray | None = None


def roi_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The region frd-score extracts from: the whole image but its first pixel (no mask), or the
    mask as given, a 0/255 one scaled to 0/1 (float32, as frd-score does); None when the mask
    holds at most one voxel (frd-score skips such an image)."""
    if mask is None:
        whole = np.ones(shape, dtype=np.uint8)
        whole.flat[0] = 0
        return whole
    m = np.asarray(mask)
    if m.shape != shape:
        raise EvaluationError(f"a mask of shape {m.shape} for an image of shape {shape}",
                              hint="each mask must have its image's size")
    if m.dtype == np.bool_:
        m = m.astype(np.uint8)
    if m.size and float(m.max()) == 255:
        m = m.astype(np.float32) / np.float32(255.0)
    if float(np.sum(m)) <= 1:
        return None
    return m


def image_features(item: Item | tuple[Any, ...]) -> tuple[list[str], np.ndarray] | None:
    """(feature names, values) of one grey image or volume (an :class:`Item`), as frd-score v1
    computes them (see the module's rule for a flat image); None when its mask holds at most
    one voxel (frd-score skips the image)."""
    import SimpleITK as sitk

    it = Item(*item)
    a = np.asarray(it.array, dtype=np.float32)
    spacing, origin, direction = it.spacing, it.origin, it.direction
    image_dim = a.ndim
    flat = bool(a.size) and float(a.max()) == float(a.min())
    vol = a[np.newaxis] if image_dim == 2 else a
    roi = roi_mask(it.mask, a.shape)
    if roi is None:
        return None
    mask = roi[np.newaxis] if image_dim == 2 else roi
    img = sitk.GetImageFromArray(np.zeros_like(vol) if flat else vol)
    spc = (*[float(s) for s in spacing], 1.0) if image_dim == 2 else tuple(float(s) for s in spacing)
    img.SetSpacing(spc)
    if image_dim == 3:
        if origin is not None:
            img.SetOrigin(tuple(float(v) for v in origin))
        if direction is not None:
            img.SetDirection(tuple(float(v) for v in direction))
    m = sitk.GetImageFromArray(mask)
    m.CopyInformation(img)
    out = _EXTRACTORS.get(image_dim, not flat).execute(img, m)
    names: list[str] = []
    values: list[float] = []
    for k, v in out.items():
        if "diagnostics" not in k:
            names.append(k.replace("original_", ""))
            values.append(float(v))
            continue
        try:
            val = float(v)
        except (TypeError, ValueError):
            continue  # a string diagnostic (versions, settings, hashes)
        if flat and k in _FLAT_DIAGNOSTICS:
            val = float(a.flat[0])
        names.append(k)
        values.append(val)
    return names, np.array(values, dtype=np.float64)


def _worker(item: Any) -> tuple[list[str], np.ndarray] | None:
    return image_features(item)


def _warm() -> None:
    """A worker's start: import pyradiomics and read the configuration once, not per task."""
    _EXTRACTORS.get(2, True)


_POOLS: dict[int, Any] = {}


def _pool(workers: int) -> Any:
    """A pool of ``workers`` spawned processes, kept for the life of this process (a reference
    set and a generated set, or many sets in a sanity run, share its start-up: each worker
    imports pyradiomics, SimpleITK and OpenCV once). Spawned, not forked: the parent may hold
    torch's threads."""
    if workers not in _POOLS:
        ctx = multiprocessing.get_context("spawn")
        _POOLS[workers] = ctx.Pool(workers, initializer=_warm)
        atexit.register(_close_pool, workers)
    return _POOLS[workers]


def _close_pool(workers: int) -> None:
    pool = _POOLS.pop(workers, None)
    if pool is not None:
        pool.close()
        pool.join()


def features_of_items(items: Sequence[Item | tuple[Any, ...]], *, workers: int | None = None,
                      where: str = "images") -> np.ndarray:
    """Features of :class:`Item` s, in order, over ``workers`` processes (default: every core; 1:
    in this process). Every row has the same names; an image whose mask holds at most one voxel
    gets a row of NaN (dropped by :func:`standardise`, as frd-score drops it)."""
    if not items:
        raise EvaluationError(f"{where}: no images to extract FRD features from")
    workers = max(1, min(int(workers or os.cpu_count() or 1), len(items)))
    if workers == 1:
        results = [image_features(it) for it in items]
    else:
        # one image per task: an image costs ~0.2 s and pickles in microseconds, so fine tasks cost
        # nothing and keep both workers busy to the end (chunks of n/8 left one worker idle for a
        # whole chunk at the tail of a set)
        results = _pool(workers).map(_worker, items, chunksize=1)
    done = [r for r in results if r is not None]
    if not done:
        raise EvaluationError(f"{where}: every mask holds at most one voxel; FRD has no region to measure",
                              hint="masks mark the region with 1 (or 255); an empty mask leaves an image out")
    if len(done) < len(results):
        log.info("%s: %d image(s) left out: their mask holds at most one voxel (as frd-score)",
                 where, len(results) - len(done))
    names = done[0][0]
    for i, r in enumerate(results):
        if r is not None and r[0] != names:
            raise EvaluationError(f"{where}: image {i} gave other radiomic features than the first "
                                  f"({len(r[0])} vs {len(names)})", hint="all images of a set must have the same dimensionality")
    return np.stack([np.full(len(names), np.nan) if r is None else r[1] for r in results])


def image_items(images: np.ndarray | Sequence[np.ndarray], image_dim: int = 2,
                masks: np.ndarray | Sequence[np.ndarray] | None = None) -> list[Item]:
    """Arrays (N, H, W[, C]) -> items of spacing 1 for :func:`features_of_items` (with their masks)."""
    if masks is not None and len(masks) != len(images):
        raise EvaluationError(f"{len(images)} images and {len(masks)} masks", hint="one mask per image")
    return [Item(grey(a, image_dim), (1.0,) * image_dim, None, None, None if masks is None else np.asarray(masks[i]))
            for i, a in enumerate(images)]


def read_file(path: Path, max_decoded_bytes: int | None = None, pixel: str = "float32") -> Item:
    """An image or volume file read as frd-score reads it (SimpleITK; an image as float32, a mask
    (``pixel="as stored"``) in its own type), refused before it is decoded when it would take
    more than ``max_decoded_bytes``."""
    import SimpleITK as sitk

    try:
        if max_decoded_bytes is not None:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            size = int(np.prod(reader.GetSize())) * max(1, reader.GetNumberOfComponents()) * 8
            if size > max_decoded_bytes:
                raise EvaluationError(f"{path}: {'x'.join(map(str, reader.GetSize()))} voxels would take {size >> 20} MiB "
                                      f"decoded, over the site's limit of {max_decoded_bytes >> 20} MiB",
                                      hint="raise [inputs] max_decoded_bytes in site.toml, or use smaller images")
        img = (sitk.ReadImage(str(path), outputPixelType=sitk.sitkFloat32) if pixel == "float32"
               else sitk.ReadImage(str(path)))
    except RuntimeError as exc:
        raise EvaluationError(f"cannot read {path}: {str(exc).strip().splitlines()[-1]}",
                              hint="FRD reads PNG, JPEG, BMP, TIFF and NIfTI (.nii.gz) files") from None
    a = sitk.GetArrayFromImage(img)
    if a.ndim == 3 and a.shape[0] == 1:  # a 2-D picture SimpleITK read as one slice
        return Item(a[0], img.GetSpacing()[:2])
    if a.ndim == 2:
        return Item(a, img.GetSpacing())
    return Item(a, img.GetSpacing(), img.GetOrigin(), img.GetDirection())


def folder_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` that frd-score would read, sorted as it sorts them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder} is not a folder", hint="give a folder of PNG or NIfTI images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(FILE_SUFFIXES))
    if len(files) < 2:
        raise EvaluationError(f"{folder} holds {len(files)} image file(s); FRD needs at least 2")
    return files


# -- the set-level distance ----------------------------------------------------------------------


def standardise(ref: np.ndarray, gen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """frd-score v1's normalisation: rows with a NaN dropped, float32, z-scores w.r.t. the
    reference set (``nanmean``, ``nanstd``), then columns with NaN or inf in either set dropped."""
    sets = []
    for what, f in (("reference", ref), ("generated", gen)):
        f = np.asarray(f, dtype=np.float64)
        keep = ~np.isnan(f).any(axis=1)
        if keep.sum() < 2:
            raise EvaluationError(f"FRD: {int(keep.sum())} {what} image(s) have finite radiomic features; at least 2 needed")
        if not keep.all():
            log.info("FRD: %d %s image(s) with NaN features dropped (as frd-score v1)", int((~keep).sum()), what)
        sets.append(f[keep].astype(np.float32))
    mean, std = np.nanmean(sets[0], axis=0), np.nanstd(sets[0], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = [(s - mean) / std for s in sets]
    bad = np.zeros(z[0].shape[1], dtype=bool)
    for s in z:
        bad |= ~np.isfinite(s).all(axis=0)
    if bad.all():
        raise EvaluationError("FRD: no radiomic feature varies within the reference set",
                              hint="a reference set of identical (or flat) images cannot standardise features")
    return z[0][:, ~bad], z[1][:, ~bad]


def frd_v1(ref: np.ndarray, gen: np.ndarray) -> float:
    """FRD v1 of raw per-image radiomic features: ``log`` of the Fréchet distance of the
    standardised features, computed by frd-score's own ``calculate_frechet_distance``."""
    from frd_score import frd

    a, b = standardise(ref, gen)
    d = float(frd.calculate_frechet_distance(np.mean(a, axis=0), np.cov(a, rowvar=False),
                                             np.mean(b, axis=0), np.cov(b, rowvar=False)))
    if not d > 0:
        raise EvaluationError(f"FRD is undefined: the Fréchet distance of the standardised features is {d:.3g}",
                              hint="the two sets have the same radiomic statistics (the same images?)")
    return float(np.log(d))


def folder_items(folder: Path, masks: Path | None = None) -> list[Item]:
    """The images of a folder (and their masks, paired by sorted order as frd-score pairs them)."""
    files = folder_files(folder)
    mask_files = folder_files(masks) if masks is not None else None
    if mask_files is not None and len(mask_files) != len(files):
        raise EvaluationError(f"{folder} holds {len(files)} images and {masks} {len(mask_files)} masks",
                              hint="one mask per image, in the same sorted order")
    items = [read_file(p) for p in files]
    if mask_files is None:
        return items
    return [it._replace(mask=read_file(m, pixel="as stored").array) for it, m in zip(items, mask_files)]


def frd_between_folders(a: Path, b: Path, *, workers: int | None = None,
                        masks: tuple[Path, Path] | None = None) -> float:
    """FRD v1 of two folders of images (PNG, NIfTI), as ``python -m frd_score A B [-m MA MB]``."""
    fa = features_of_items(folder_items(a, masks[0] if masks else None), workers=workers, where=str(a))
    fb = features_of_items(folder_items(b, masks[1] if masks else None), workers=workers, where=str(b))
    return frd_v1(fa, fb)


# -- the extractor evaluate uses ----------------------------------------------------------------


class RadiomicsExtractor(Generic[Rec]):
    """A radiomics extractor record made runnable: ``features(images, value_range)`` -> the
    raw per-image radiomic features (N, dims) float64 (the value range is not used:
    pyradiomics normalises each image itself, as frd-score reads files as stored)."""

    def __init__(self, record: Rec, workers: int | None = None) -> None:
        self.record = record
        self.workers = workers

    @classmethod
    def open(cls, record: Rec, workers: int | None = None) -> "RadiomicsExtractor[Rec]":
        if record.data["network"] not in NETWORKS:
            raise EvaluationError(f"{record.ref}: unknown radiomics network {record.data['network']!r}",
                                  hint=f"known: {', '.join(NETWORKS)}")
        check_software(record)
        return cls(record, workers)

    def features(self, images: np.ndarray | Sequence[np.ndarray], value_range: tuple[float, float]) -> np.ndarray:
        f = features_of_items(image_items(images, 2), workers=self.workers, where=self.record.ref)
        if f.shape[1] != int(self.record.data["dims"]):
            raise EvaluationError(f"extractor {self.record.ref} gave {f.shape[1]} features, its record says "
                                  f"{self.record.data['dims']}")
        return f

    def item_features(self, items: Sequence[Item]) -> np.ndarray:
        """Features of images or volumes with their spacing and region (:class:`Item`): a row of
        NaN for an image whose mask holds at most one voxel. The record's ``dims`` is the count
        of a 2-D image without a mask; a mask adds its own diagnostics, a volume its 3-D features."""
        return features_of_items(items, workers=self.workers, where=self.record.ref)
