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
from typing import Any, Generic, Iterable, Mapping, Protocol, Sequence, TypeVar

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
    """One image is extracted on one thread; parallelism is across images (worker processes).
    SimpleITK's filters default to a thread per core: on 64x64 patches their thread hand-offs
    cost more than they save (0.18 s per patch on one thread, 0.23-0.31 s on two, measured on
    the 2-core machine), and two workers with two threads each oversubscribe the cores.
    pyradiomics' own log is kept to errors (it logs per image and feature class)."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
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


def image_features(item: tuple[np.ndarray, Sequence[float], Sequence[float] | None, Sequence[float] | None]
                   ) -> tuple[list[str], np.ndarray]:
    """(feature names, values) of one grey image or volume ``(array, spacing, origin, direction)``,
    as frd-score v1 computes them without a mask (see the module's rule for a flat image)."""
    import SimpleITK as sitk

    arr, spacing, origin, direction = item
    a = np.asarray(arr, dtype=np.float32)
    image_dim = a.ndim
    flat = bool(a.size) and float(a.max()) == float(a.min())
    vol = a[np.newaxis] if image_dim == 2 else a
    mask = np.ones(vol.shape, dtype=np.uint8)
    mask[0, 0, 0] = 0
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


def _worker(item: Any) -> tuple[list[str], np.ndarray]:
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


def features_of_items(items: list[Any], *, workers: int | None = None, where: str = "images") -> np.ndarray:
    """Features of ``(array, spacing, origin, direction)`` items, in order, over ``workers``
    processes (default: every core; 1: in this process). Every row has the same names."""
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
    names = results[0][0]
    for i, (n, _) in enumerate(results):
        if n != names:
            raise EvaluationError(f"{where}: image {i} gave other radiomic features than image 0 "
                                  f"({len(n)} vs {len(names)})", hint="all images of a set must have the same dimensionality")
    return np.stack([v for _, v in results])


def image_items(images: np.ndarray | Sequence[np.ndarray], image_dim: int = 2) -> list[Any]:
    """Arrays (N, H, W[, C]) -> items of spacing 1 for :func:`features_of_items`."""
    return [(grey(a, image_dim), (1.0,) * image_dim, None, None) for a in images]


def read_file(path: Path) -> tuple[np.ndarray, Sequence[float], Sequence[float] | None, Sequence[float] | None]:
    """An image or volume file read as frd-score reads it (SimpleITK, float32)."""
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path), outputPixelType=sitk.sitkFloat32)
    except RuntimeError as exc:
        raise EvaluationError(f"cannot read {path}: {str(exc).strip().splitlines()[-1]}",
                              hint="FRD reads PNG, JPEG, BMP, TIFF and NIfTI (.nii.gz) files") from None
    a = sitk.GetArrayFromImage(img)
    if a.ndim == 3 and a.shape[0] == 1:  # a 2-D picture SimpleITK read as one slice
        return a[0], img.GetSpacing()[:2], None, None
    if a.ndim == 2:
        return a, img.GetSpacing(), None, None
    return a, img.GetSpacing(), img.GetOrigin(), img.GetDirection()


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


def frd_between_folders(a: Path, b: Path, *, workers: int | None = None) -> float:
    """FRD v1 of two folders of images (PNG, NIfTI), as ``python -m frd_score A B``."""
    fa = features_of_items([read_file(p) for p in folder_files(a)], workers=workers, where=str(a))
    fb = features_of_items([read_file(p) for p in folder_files(b)], workers=workers, where=str(b))
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
