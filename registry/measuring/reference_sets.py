"""Site-local reference sets: folders of real images a site measures models against.

``synthmed reference add NAME DIR`` hashes every image file under DIR into a manifest
(relative path, sha256, size) stored at ``<site>/references/NAME/manifest.json``, and
computes the features of the images with an extractor (stored next to it, one ``.npz``
per extractor and input rule). The set's identity is the sha256 of its file manifest
(paths and hashes), so two sites holding the same images have the same identity without
sharing them, and a changed image is a different set. The images stay where they are;
their features are recomputed from them for another extractor, after each file is
checked against the manifest. A folder given directly (``--reference DIR``) keeps its
features under ``<site>/cache/features/references/<identity>/``, so it is not extracted again
while its files stay the same.

Nothing under ``references/`` is ever exported: ``synthmed export`` carries index
bundles and model blobs only (tested in tests/test_evaluate.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .. import atomic
from ..decoding import DEFAULT_MAX_DECODED_BYTES, pillow_image
from ..errors import DecodeError, EvaluationError
from ..hashing import hash_path
from ..stamps import utcnow

from .radiomics import Item, RadiomicsExtractor, grey, read_file

if TYPE_CHECKING:  # pragma: no cover
    from .extractors import Extractor
    from ..settings import Settings

log = logging.getLogger(__name__)

FORMAT = "synthmed-reference/1"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: volumes a reference set may hold (measured by the frd-radiomics extractor only, read as frd-score reads them)
VOLUME_SUFFIXES = (".nii.gz",)


def _is_volume(path: str) -> bool:
    return path.lower().endswith(VOLUME_SUFFIXES)


def _wanted(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES or _is_volume(p.name)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
MAX_FILES = 200_000


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise EvaluationError(f"{name!r} is not a valid reference-set name",
                              hint="1 to 64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
    return name


def scan(src: Path, masks: Path | None = None) -> list[dict[str, Any]]:
    """Every image file under ``src`` (regular files only; links and other suffixes are
    skipped and counted in the log), sorted by relative path, with sha256 and size; with
    ``masks``, each image's mask (the file at the same relative path under ``masks``) too."""
    src = Path(src)
    if not src.is_dir():
        raise EvaluationError(f"{src} is not a folder", hint="give a folder of PNG or JPEG images")
    files: list[dict[str, Any]] = []
    skipped = 0
    for root, dirs, names in os.walk(src, followlinks=False):
        dirs.sort()
        for n in sorted(names):
            p = Path(root) / n
            if p.is_symlink() or not p.is_file() or not _wanted(p):
                skipped += 1
                continue
            digest, size = hash_path(p)
            files.append({"path": p.relative_to(src).as_posix(), "sha256": digest, "size": size})
            if len(files) > MAX_FILES:
                raise EvaluationError(f"{src} holds more than {MAX_FILES} images", hint="use a smaller reference set")
    if skipped:
        log.info("reference %s: %d entries skipped (links, folders or not %s)", src, skipped, "/".join(IMAGE_SUFFIXES))
    if len(files) < 2:
        raise EvaluationError(f"{src} holds {len(files)} image file(s); at least 2 are needed",
                              hint=f"a reference set is a folder of images ({', '.join(IMAGE_SUFFIXES)})")
    files.sort(key=lambda f: f["path"])
    kinds = {_is_volume(f["path"]) for f in files}
    if len(kinds) > 1:
        raise EvaluationError(f"{src} holds both 2-D images and NIfTI volumes",
                              hint="a reference set is all pictures or all volumes: make two sets")
    if masks is not None:
        _add_masks(files, Path(masks))
    return files


def _add_masks(files: list[dict[str, Any]], masks: Path) -> None:
    """Each image's mask: the regular file at the same relative path under ``masks``."""
    if not masks.is_dir():
        raise EvaluationError(f"--masks {masks} is not a folder", hint="give the folder of the images' masks")
    for f in files:
        m = masks / f["path"]
        if m.is_symlink() or not m.is_file():
            raise EvaluationError(f"no mask for {f['path']}: {m} is missing",
                                  hint="each image needs its mask at the same relative path under the masks folder")
        digest, size = hash_path(m)
        f["mask"] = {"sha256": digest, "size": size}


def manifest_identity(files: list[dict[str, Any]]) -> str:
    """sha256 of the paths and hashes (and the masks' hashes, in a set with masks)."""
    rows = [[f["path"], f["sha256"]] + ([f["mask"]["sha256"]] if "mask" in f else []) for f in files]
    body = json.dumps(rows, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def read_image(path: Path, max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> tuple[np.ndarray, tuple[float, float]]:
    """An image file -> (array (H, W) or (H, W, C), its value range); refused before it
    is decoded when its header declares more than ``max_decoded_bytes`` or more pixels
    than Pillow's decompression-bomb limit (:mod:`..decoding`)."""
    from PIL import UnidentifiedImageError

    try:
        with pillow_image(path, max_decoded_bytes) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.int64)
                return a.astype(np.float64), (0.0, 65535.0)
            return np.asarray(im if im.mode in ("L", "RGB", "RGBA") else im.convert("RGB")), (0.0, 255.0)
    except DecodeError as exc:
        raise EvaluationError(f"cannot read image {exc.message}",
                              hint=f"remove or replace the file; {exc.hint}" if exc.hint else None) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise EvaluationError(f"cannot read image {path}: {exc}", hint="remove or replace the file") from None


@dataclass(frozen=True)
class ReferenceSet:
    name: str | None        # None: a folder given directly, not stored on the site
    source: Path
    files: tuple[dict[str, Any], ...]
    identity: str           # sha256 of the manifest (paths and file hashes)
    folder: Path | None     # <site>/references/NAME, where features are kept
    #: the most bytes an image may declare once decoded (site.toml ``[inputs]``)
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
    #: where a folder given directly keeps its features (``<site>/cache/features/references/<identity>``)
    cache_dir: Path | None = None
    #: the folder of the images' masks (same relative paths), in a set made with ``--masks``
    masks_source: Path | None = None

    @property
    def has_masks(self) -> bool:
        return bool(self.files) and "mask" in self.files[0]

    @property
    def has_volumes(self) -> bool:
        return bool(self.files) and _is_volume(self.files[0]["path"])

    @property
    def label(self) -> str:
        return self.name or f"dir:{self.identity[:12]}"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "identity": self.identity, "n": len(self.files)}
        if self.has_volumes:
            out["volumes"] = True
        if self.has_masks:
            out["masks"] = True  # FRD on each image's mask region (the identity holds the masks' hashes)
        return out

    def _checked(self, p: Path, sha256: str) -> Path:
        if not p.is_file() or p.is_symlink():
            raise EvaluationError(f"reference {self.label}: {p} is missing",
                                  hint=f"restore it, or add the set again: synthmed reference add {self.name or 'NAME'} DIR --replace")
        if hash_path(p)[0] != sha256:
            raise EvaluationError(f"reference {self.label}: {p} changed since the set was added",
                                  hint="a reference set is fixed by its files' hashes; add it again "
                                       "(--replace) to measure against the new images")
        return p

    def load_images(self, indices: Sequence[int] | None = None) -> list[tuple[np.ndarray, tuple[float, float]]]:
        """Every image (or those at ``indices`` of the manifest, in that order), each checked
        against the manifest first."""
        if self.has_volumes:
            raise EvaluationError(f"reference {self.label} holds NIfTI volumes; only the frd-radiomics extractor "
                                  "measures volumes", hint="--extractor frd-radiomics (audits compare 2-D images)")
        return [read_image(self._checked(self.source / f["path"], f["sha256"]), self.max_decoded_bytes)
                for f in (self.files if indices is None else [self.files[int(i)] for i in indices])]

    def load_items(self) -> list[Item]:
        """Every image or volume with its spacing (and mask), read as frd-score reads files,
        each file checked against the manifest first."""
        out = []
        for f in self.files:
            p = self._checked(self.source / f["path"], f["sha256"])
            if self.has_volumes:
                it = read_file(p, self.max_decoded_bytes)
            else:  # a picture through the decoder's size guard, grey as SimpleITK's float reader makes it
                a, _ = read_image(p, self.max_decoded_bytes)
                it = Item(grey(a, 2), (1.0, 1.0))
            if "mask" in f:
                if self.masks_source is None:
                    raise EvaluationError(f"reference {self.label}: its manifest lists masks but no masks folder",
                                          hint="add the set again with --masks DIR --replace")
                m = self._checked(self.masks_source / f["path"], f["mask"]["sha256"])
                mask = (read_file(m, self.max_decoded_bytes, pixel="as stored").array if self.has_volumes
                        else read_image(m, self.max_decoded_bytes)[0])
                it = it._replace(mask=np.asarray(mask))
            out.append(it)
        return out

    def features(self, extractor: "Extractor", config_key: str) -> np.ndarray:
        """Features of every image (cached per extractor configuration ``config_key``)."""
        features_dir = self.folder / "features" if self.folder else self.cache_dir
        cache = features_dir / f"{config_key}.npz" if features_dir else None
        if cache is not None and cache.is_file():
            cached = _cached_features(cache, self.identity, len(self.files))
            if cached is not None:
                return cached
        if self.has_masks or self.has_volumes:  # FRD on volumes or on mask regions
            if not isinstance(extractor, RadiomicsExtractor):
                raise EvaluationError(f"reference {self.label} holds {'volumes' if self.has_volumes else 'masks'}; "
                                      f"only a radiomics extractor measures them, not {extractor.record.ref}",
                                      hint="--extractor frd-radiomics")
            feats = extractor.item_features(self.load_items())
        else:
            feats = features_of_images(self.load_images(), extractor)
        if cache is not None:
            with atomic.atomic_file(cache, parents=True) as fh:
                np.savez(fh, features=feats, identity=np.array(self.identity),
                         mean=feats.mean(0), cov=np.cov(feats, rowvar=False))
        return feats


def _cached_features(cache: Path, identity: str, n: int) -> np.ndarray | None:
    """The features cached in ``cache`` for the set ``identity`` of ``n`` images; None
    (computed again, and the file replaced) when it is for another set, or damaged."""
    try:
        with np.load(cache, allow_pickle=False) as z:
            if str(z["identity"]) != identity:
                return None
            feats = np.asarray(z["features"])
        # a row of NaN is an image FRD left out (its mask holds at most one voxel); nothing else may be NaN
        ok = np.isfinite(feats) | np.isnan(feats).all(axis=1, keepdims=True) if feats.ndim == 2 else None
        if feats.ndim != 2 or len(feats) != n or feats.dtype.kind != "f" or ok is None or not ok.all():
            raise ValueError(f"features of shape {feats.shape}, dtype {feats.dtype}, for {n} images")
        return feats
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("reference features %s are damaged (%s); computing them again", cache, exc)
        return None


def features_of_images(images: list[tuple[np.ndarray, tuple[float, float]]], extractor: "Extractor") -> np.ndarray:
    """Features of images of any sizes: batched by (shape, value range), returned in order."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, (a, vr) in enumerate(images):
        groups.setdefault((a.shape, vr), []).append(i)
    out: np.ndarray | None = None
    for (_, vr), idx in groups.items():
        f = extractor.features(np.stack([images[i][0] for i in idx]), vr)
        if out is None:
            out = np.zeros((len(images), f.shape[1]))
        out[idx] = f
    assert out is not None
    return out


def _manifest_path(settings: "Settings", name: str) -> Path:
    return settings.references_dir / check_name(name) / "manifest.json"


def check_new_reference(settings: "Settings", name: str, src: Path, *, replace: bool = False) -> Path:
    """Refuse a bad set name, a set that exists (unless ``replace``) or a source that is
    not a folder; cheap (no image read, no extractor loaded), so the CLI runs it first.
    Returns ``src`` resolved."""
    check_name(name)
    folder = settings.references_dir / name
    if (folder.exists() or folder.is_symlink()) and not replace:
        raise EvaluationError(f"reference set {name!r} exists already ({folder})",
                              hint="pick another name, or pass --replace to make it again from the folder")
    src = Path(src).expanduser().resolve()
    if not src.is_dir():
        raise EvaluationError(f"{src} is not a folder", hint="give a folder of PNG or JPEG images")
    return src


def add_reference(settings: "Settings", name: str, src: Path, *, replace: bool = False,
                  extractor: "Extractor | None" = None, config_key: str | None = None,
                  progress: Callable[[str], None] = lambda m: None, masks: Path | None = None) -> ReferenceSet:
    """Hash ``src`` (and each image's mask under ``masks``) into a stored reference set
    ``name``; with an extractor, compute and store its features now (else on first use)."""
    src = check_new_reference(settings, name, src, replace=replace)
    masks = Path(masks).expanduser().resolve() if masks is not None else None
    folder = settings.references_dir / name
    files = scan(src, masks)
    progress(f"reference {name}: {len(files)} images hashed")
    tmp = settings.references_dir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    identity = manifest_identity(files)
    manifest = {"format": FORMAT, "name": name, "source": str(src), "created": utcnow(),
                "identity": identity, "files": files, **({"masks_source": str(masks)} if masks else {})}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    limit = settings.inputs.max_decoded_bytes
    ref = ReferenceSet(name, src, tuple(files), identity, tmp, limit, masks_source=masks)
    try:
        if extractor is not None and config_key is not None:
            ref.features(extractor, config_key)
            progress(f"reference {name}: features computed with {extractor.record.ref}")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a set that failed leaves nothing (an old one stays)
        raise
    return ReferenceSet(name, src, tuple(files), identity, folder, limit, masks_source=masks)


def open_reference(settings: "Settings", name_or_dir: str) -> ReferenceSet:
    """A stored set by name, or a folder given directly (hashed now, nothing stored)."""
    p = settings.references_dir / name_or_dir / "manifest.json" if NAME_RE.match(name_or_dir) else None
    if p is not None and p.is_file():
        try:
            m = json.loads(p.read_text())
            stored: list[dict[str, Any]] = list(m["files"])
            identity = str(m["identity"])
            if manifest_identity(stored) != identity:
                raise ValueError("identity does not match the file list")
            return ReferenceSet(str(m["name"]), Path(m["source"]), tuple(stored), identity, p.parent,
                                settings.inputs.max_decoded_bytes,
                                masks_source=Path(m["masks_source"]) if m.get("masks_source") else None)
        except (ValueError, KeyError, TypeError) as exc:
            raise EvaluationError(f"reference set {name_or_dir!r}: {p} is damaged ({exc})",
                                  hint=f"add it again: synthmed reference add {name_or_dir} DIR --replace") from None
    d = Path(name_or_dir).expanduser()
    if d.is_dir():
        found = scan(d.resolve())
        identity = manifest_identity(found)
        return ReferenceSet(None, d.resolve(), tuple(found), identity, None, settings.inputs.max_decoded_bytes,
                            settings.features_cache_dir / "references" / identity[:40])
    known = ", ".join(list_references(settings)) or "none"
    raise EvaluationError(f"no reference set or folder {name_or_dir!r} (this site's sets: {known})",
                          hint="add one with `synthmed reference add NAME DIR`, or pass a folder of images")


def list_references(settings: "Settings") -> list[str]:
    d = settings.references_dir
    if not d.is_dir():
        return []
    return sorted(p.parent.name for p in d.glob("*/manifest.json"))


def reference_summaries(settings: "Settings") -> list[dict[str, Any]]:
    out = []
    for name in list_references(settings):
        r = open_reference(settings, name)
        out.append({"name": name, "n": len(r.files), "identity": r.identity, "source": str(r.source),
                    "features": sorted(p.stem for p in (r.folder / "features").glob("*.npz")) if r.folder else []})
    return out
