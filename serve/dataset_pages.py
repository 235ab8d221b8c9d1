"""The pages of published datasets (#24): the data of ``/dataset/<upstream>/<id>[/<version>]``
and its thumbnails (``.../item/<index>.png``), rendered from the mirrored artefact.

A thumbnail is read from the store's verified blob (``Store.open_verified``: hashed on its
first open and whenever it changed), one tar member by name and never unpacked to disk; a
PNG member is served as it is, any other file (``.npy``, NIfTI, DICOM) is decoded with
the site's bound on decoded bytes and drawn as the model's own previews draw it
(``outputs.preview``, CT through its window; min..max when this site does not have the
model); a volume shows the slice where the item's 3-D mask is largest (its middle slice
without one), the same slice for the volume and its mask. Only the members the run manifest lists as items of the record's
outputs are served, and only while the blob is in the store (a dataset this site does not
mirror shows no thumbnails, and says so).
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from synthmed.registry.array_inputs import read_file
from synthmed.registry.artefacts.dataset_archive import MANIFEST, item_files
from synthmed.registry.artefacts.store import Store
from synthmed.registry.catalog import Catalog, CatalogEntry, DatasetEntry
from synthmed.registry.errors import ArtefactError, DatasetNotFound, SynthmedError
from synthmed.registry.outputs import SLICE_AXIS, OutputSpec, preview, record_specs
from synthmed.registry.settings import Settings

#: thumbnails on a dataset page
THUMBNAILS = 12
#: the largest tar member a thumbnail is drawn from
MAX_MEMBER_BYTES = 64 << 20


def _entry(cat: Catalog, upstream: str, dataset_id: str, version: str | None) -> DatasetEntry:
    ref = f"{upstream}/{dataset_id}" + (f"@{version}" if version else "")
    entry = cat.datasets.resolve(ref, allow_yanked=True)
    if entry.upstream != upstream:
        raise DatasetNotFound(f"no dataset {dataset_id!r} in upstream {upstream!r}")
    return entry


def dataset_page(settings: Settings, cat: Catalog, upstream: str, dataset_id: str,
                 version: str | None) -> dict[str, Any]:
    """What ``dataset.html`` shows: the entry, its model (linked when this site has it),
    the thumbnails and the other versions."""
    e = _entry(cat, upstream, dataset_id, version)
    rec = e.record
    gen = rec.generation
    model: CatalogEntry | None
    try:
        model = cat.models.resolve(e.model_ref, allow_yanked=True)
    except SynthmedError:  # the page still shows the dataset, without a link
        model = None
    held = Store(settings.store_dir).has(rec.sha256)
    shown = min(THUMBNAILS, int(gen["count"])) if held else 0
    # URLs are built in the template from their parts: a printed value that looks like an
    # absolute path is cut to its last part (serve/public.py)
    return {"entry": e, "rec": rec.data, "gen": gen, "model": model, "held": held,
            "card_metrics": card_metrics(rec.data.get("card", {}).get("metrics", [])),
            "thumbs": [{"index": i, "seed": int(gen["first_seed"]) + i} for i in range(shown)],
            "versions": [v.version for v in cat.datasets.versions(e.upstream, e.id)]}


def _decimals(v: float) -> int:
    text = repr(v)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


def card_metrics(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The card's metrics with ``value_text`` and ``reference_text``: the table's decimal
    numbers printed to the same number of places (the most any of them has, at most 6), so
    a stored 0.9 reads 0.9000 beside 0.9017 and no figure looks rounder than it was measured;
    integers and numbers in exponent form print as stored."""
    floats = [v for m in metrics for v in (m.get("value"), (m.get("reference") or {}).get("value"))
              if isinstance(v, float)]
    places = min(6, max((_decimals(v) for v in floats), default=0))

    def text(v: Any) -> str:
        if isinstance(v, float) and "e" not in repr(v):
            return f"{v:.{places}f}"
        return "" if v is None else str(v)
    return [{**m, "value_text": text(m.get("value")),
             "reference_text": text((m.get("reference") or {}).get("value"))} for m in metrics]


def _member_for(tf: tarfile.TarFile, output: str, index: int, count: int) -> tarfile.TarInfo:
    manifest = json.loads(tf.extractfile(tf.getmember(MANIFEST)).read())  # type: ignore[union-attr]
    names = item_files(manifest, [output], count, "the artefact")[output][index]
    member = tf.getmember(names[len(names) // 2])  # a DICOM series: its middle slice
    if not member.isfile() or member.size > MAX_MEMBER_BYTES:
        raise ArtefactError(f"{member.name}: not a regular file of at most {MAX_MEMBER_BYTES} bytes")
    return member


def _preview_png(arr: np.ndarray) -> bytes:
    from PIL import Image

    a = np.asarray(arr)
    while a.ndim > 3 or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        a = a[a.shape[0] // 2]
    a = a.astype(np.float64)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    scaled = np.zeros(a.shape, np.uint8) if hi <= lo else ((a - lo) / (hi - lo) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(scaled).save(buf, format="PNG")
    return buf.getvalue()


def _model_specs(cat: Catalog, e: DatasetEntry) -> dict[str, OutputSpec]:
    """The model's output specs by name (window, value range, layout), when this site has the model."""
    try:
        model = cat.models.resolve(e.model_ref, allow_yanked=True)
    except SynthmedError:
        return {}
    return {s.name: s for s in record_specs(model.record)}


def _picture_png(arr: np.ndarray, spec: OutputSpec | None, plane: int | None = None) -> bytes:
    """A decoded item as the model's previews draw it (``outputs.preview``: a volume's middle
    slice, or slice ``plane`` along ``SLICE_AXIS``; CT through its window), or, without the
    model's spec, scaled min..max."""
    if spec is None:
        return _preview_png(arr)
    from PIL import Image

    a = np.asarray(arr)
    if plane is not None and spec.dims == 3 and a.ndim == 3 and 0 <= plane < a.shape[SLICE_AXIS]:
        a = np.take(a, [plane], axis=SLICE_AXIS)  # a one-slice volume: its middle slice is that one
    try:
        picture = preview(a, spec)
    except (ValueError, SynthmedError):  # not the shape the model declares: draw it as it is
        return _preview_png(arr)
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    return buf.getvalue()


def _decode(tf: tarfile.TarFile, member: tarfile.TarInfo, max_bytes: int) -> np.ndarray:
    """A non-PNG member decoded with the site's bound (through a temporary file: NIfTI and DICOM readers want a path)."""
    data = tf.extractfile(member).read()  # type: ignore[union-attr]
    suffix = ".nii.gz" if member.name.lower().endswith(".nii.gz") else Path(member.name).suffix
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        return np.asarray(read_file(Path(tmp.name), max_bytes))


def _mask_output(specs: dict[str, OutputSpec], outputs: list[str]) -> str | None:
    """The dataset's first 3-D mask output, the one whose largest slice a volume item shows."""
    return next((o for o in outputs if o in specs and specs[o].kind == "mask" and specs[o].dims == 3), None)


def _largest_plane(mask: np.ndarray) -> int | None:
    """The slice along ``SLICE_AXIS`` where ``mask`` covers most voxels, so a volume and its mask
    show one telling plane (a lesion is small: the middle slice often misses it); None when the
    mask is empty or not a volume."""
    if mask.ndim != 3:
        return None
    counts = (mask > 0).sum(axis=tuple(a for a in range(3) if a != SLICE_AXIS))
    return int(np.argmax(counts)) if counts.max() > 0 else None


def thumbnail(settings: Settings, cat: Catalog, upstream: str, dataset_id: str, version: str,
              index: int, output: str | None = None) -> bytes:
    """PNG bytes of item ``index`` of one of the dataset's outputs (default: its first), from
    the verified blob."""
    e = _entry(cat, upstream, dataset_id, version)
    gen = e.record.generation
    count = int(gen["count"])
    if not 0 <= index < count:
        raise DatasetNotFound(f"{e.qualified_ref} has no item {index}")
    outputs = [str(o) for o in gen["outputs"]]
    if output is None:
        output = outputs[0]
    elif output not in outputs:
        raise DatasetNotFound(f"{e.qualified_ref} has no output {output!r} (it has {', '.join(outputs)})")
    max_bytes = settings.inputs.max_decoded_bytes
    with Store(settings.store_dir).open_verified(e.record.sha256) as fh, tarfile.open(fileobj=fh, mode="r:") as tf:
        member = _member_for(tf, output, index, count)
        if member.name.lower().endswith(".png"):
            return tf.extractfile(member).read()  # type: ignore[union-attr]
        arr = _decode(tf, member, max_bytes)
        specs = _model_specs(cat, e)
        spec = specs.get(output)
        mask_name = _mask_output(specs, outputs) if spec is not None and spec.dims == 3 else None
        plane = None
        if mask_name is not None:  # the mask itself is not decoded twice
            mask = arr if mask_name == output else _decode(tf, _member_for(tf, mask_name, index, count), max_bytes)
            plane = _largest_plane(mask)
    return _picture_png(arr, spec, plane)


def dataset_rows(cat: Catalog, text: str, modality: str | None, anatomy: str | None) -> list[DatasetEntry]:
    """The datasets the catalogue page lists under the models (the same query)."""
    return cat.datasets.search(text, modality=modality or None, anatomy=anatomy or None)
