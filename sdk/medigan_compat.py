"""medigan 1.0.0's behaviour, on synthmed records: the pieces :class:`synthmed.Generators`
uses to look and answer like medigan's ``Generators``.

- :func:`match_model_id`: medigan's short ids (``8``, ``'5'``, ``'00005'``) and its
  upper-case ids (``00005_DCGAN_MMG_MASS_ROI``) name synthmed's ids.
- :func:`medigan_config`: a record seen as one entry of medigan's ``config/global.json``
  (``execution``, ``selection``, ``description``), so medigan's key paths
  (``selection.performance.FID``, ``execution.generator.name``) and its selection
  methods work unchanged.
- The selection rules (:func:`find_matching`, :func:`models_by_key_value`,
  :func:`rank`, :func:`deep_get`) follow medigan's: a value matches a selection field
  that *equals* it (or an item of a list field), case-insensitive unless asked;
  ranking sorts by the value, ascending unless ``order="desc"``.
- :data:`MEDIGAN_BATCH` and :func:`medigan_file_name`: medigan's file names
  (``batch_<b>_<i>.png``, 32 samples to a batch) and :func:`default_output_path`, its
  new folder per run (``output/<model_id>/<time>/``).
- :func:`warn_once`: a deliberate difference is said once per process, not per call.

Nothing here runs a model or reads a site: it is pure functions over records.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from synthmed.registry.errors import ConfigError, ModelNotFound
from synthmed.registry.records import Record

log = logging.getLogger(__name__)

#: samples per generate() call in medigan's save_images loop, hence per file-name batch
MEDIGAN_BATCH = 32
#: medigan's default output folder
DEFAULT_OUTPUT_FOLDER = "output"

_warned: set[str] = set()


class MediganDifference(UserWarning):
    """Where synthmed deliberately does something other than medigan (said once)."""


def warn_once(key: str, message: str) -> None:
    """Warn (``MediganDifference``) and log ``message`` the first time ``key`` is seen."""
    if key in _warned:
        return
    _warned.add(key)
    log.warning("%s", message)
    warnings.warn(message, MediganDifference, stacklevel=3)


# --------------------------------------------------------------------------- ids ---


def _original_id(record: Record) -> str | None:
    prov = record.get("provenance") or {}
    value = prov.get("original_id") if isinstance(prov, Mapping) else None
    return str(value) if value else None


def medigan_id(record: Record) -> str:
    """The id medigan spells for a model: its own (upper-case) id for a model imported from
    medigan's catalogue (``00005_DCGAN_MMG_MASS_ROI``), else the synthmed id. The medigan
    API answers with these; synthmed's own API keeps the lower-case ids."""
    return _original_id(record) or record.id


def match_model_id(provided: Any, ids: Sequence[str], originals: Mapping[str, str] | None = None) -> str:
    """medigan's id rule on synthmed ids: an exact id wins; an int or a string of at most
    five characters is zero-padded to five and matched against the ids' first five
    characters (``8`` -> ``00008_...``); medigan's own (upper-case) id matches the record
    it was imported as. Anything else is returned unchanged (the catalog then resolves
    it, or says it does not know it)."""
    if isinstance(provided, bool):
        raise ConfigError(f"model_id must be an id, a reference or a number, got {provided!r}")
    text = str(provided).strip()
    if isinstance(provided, int):
        if provided < 0:
            raise ConfigError(f"model_id {provided} is negative", hint="medigan's short ids are 1, 2, ... 23")
    if text in ids:
        return text
    for model_id, original in (originals or {}).items():
        if original == text or original.lower() == text.lower():
            return model_id
    if 0 < len(text) <= 5 and text.isdigit():
        padded = text.zfill(5)
        for model_id in ids:
            if model_id[:5] == padded:
                return model_id
    if text.lower() in ids:
        return text.lower()
    return text


# ------------------------------------------------------------------------ config ---

#: medigan's "function" values for synthmed's task
_FUNCTIONS = {
    "unconditional": ["noise to image", "image generation", "unconditional generation", "data augmentation"],
    "class-conditional": ["noise to image", "image generation", "conditional generation", "data augmentation"],
    "image-to-image": ["image to image", "image translation", "data augmentation"],
    "inpainting": ["image inpainting", "image to image", "data augmentation"],
    "segmentation-to-image": ["mask to image", "image generation", "data augmentation"],
}


def _metric_tree(metrics: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Record metrics as medigan's ``selection.performance``: ``{"FID": 67.6, "CLF":
    {"trained_on_fake": {"accuracy": 0.95}}}`` (imported downstream metrics are named
    ``CLF_accuracy_trained_on_fake``)."""
    perf: dict[str, Any] = {}
    for m in metrics:
        name, value = str(m.get("name", "")), m.get("value")
        hit = re.fullmatch(r"(CLF|SEG|DET)_(.+)_(trained_on_(?:fake|real_and_fake|real))", name)
        if hit:
            perf.setdefault(hit[1], {}).setdefault(hit[3], {})[hit[2]] = value
        elif name not in perf or m.get("source") == "measured":
            perf[name] = value
    return perf


def medigan_config(record: Record) -> dict[str, Any]:
    """The record as one entry of medigan's global.json (``execution``, ``selection``,
    ``description``), built from the record's fields; ``model_id`` is the synthmed id."""
    d = dict(record.data)
    pkg = d.get("package") or {}
    outs = d.get("outputs") or []
    first = outs[0] if outs else {}
    shape = list(first.get("shape") or [])
    height, width = (shape[-2], shape[-1]) if len(shape) >= 2 else (None, None)
    depth = shape[0] if len(shape) == 3 else None
    training = d.get("training") or {}
    datasets = [str(x.get("name")) for x in training.get("datasets") or [] if isinstance(x, Mapping) and x.get("name")]
    dataset_type = next((str(x.get("type")) for x in training.get("datasets") or []
                         if isinstance(x, Mapping) and x.get("type")), None)
    date = str(training.get("date") or "")
    entry, _, func = str(pkg.get("entry_point") or "").partition(":")
    sources = ((pkg.get("artefact") or {}).get("sources")) or []
    arch = d.get("architecture") or {}
    prov: Mapping[str, Any] = d.get("provenance") or {}
    words: Mapping[str, Any] = prov.get("original_terms") or {}
    name = func or ("generate" if pkg.get("format") == "medigan-1" else entry) or None
    return {
        "execution": {
            "package_name": _original_id(record) or record.id,
            "package_link": next((s for s in sources if "://" in s), sources[0] if sources else None),
            "model_name": Path(str(pkg.get("weights") or "")).stem or None,
            "extension": Path(str(pkg.get("weights") or "")).suffix or None,
            "image_size": shape or None,
            "dependencies": list(pkg.get("requirements") or []),
            "generator": {"name": name},
            "generate_method": {
                "name": name,
                "args": {"base": ["model_file", "num_samples", "output_path", "save_images"],
                         "custom": dict(pkg.get("generate_args") or {})},
            },
        },
        "selection": {
            "performance": _metric_tree(d.get("metrics") or []),
            "use_cases": list(d.get("use_cases") or []),
            "organ": list(words.get("organ") or d.get("anatomy") or []),  # medigan's own words where imported
            "modality": list(words.get("modality") or d.get("modality") or []),
            "vendors": list(d.get("vendors") or []),
            "centres": list(d.get("centres") or []),
            "function": list(d.get("function") or _FUNCTIONS.get(str(d.get("task")), [])),
            "condition": list(d.get("condition") or []),
            "dataset": datasets,
            "augmentations": list(training.get("augmentations") or []),
            "generates": list(d.get("generates") or []),
            "height": height,
            "width": width,
            "depth": depth,
            "type": arch.get("name"),
            "license": d.get("license"),
            "dataset_type": dataset_type,
            "privacy_preservation": d.get("privacy_preservation"),
            "tags": list(d.get("tags") or []),
            "year": d.get("year") or (date[:4] if date[:4].isdigit() else None),
        },
        "description": {
            "title": d.get("title"),
            "version": d.get("version"),
            "doi": [p["doi"] for p in d.get("publications") or [] if isinstance(p, Mapping) and p.get("doi")],
            "comment": d.get("summary") or d.get("description"),
        },
    }


def deep_get(base: Any, key: str) -> Any:
    """medigan's ``Utils.deep_get``: follow a dotted key through dicts (and list indices);
    None where a part is missing."""
    value = base
    for part in str(key).split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def config_value(record: Record, config_key: str | None) -> Any:
    """``get_config_by_id``: medigan's key paths first (on :func:`medigan_config`), then
    the record's own fields; a KeyError naming where the path stopped."""
    if not config_key:
        return dict(record.data)
    view = medigan_config(record)
    top = config_key.split(".", 1)[0]
    for tree in ((view, dict(record.data)) if top in view else (dict(record.data), view)):
        data: Any = tree
        for part in config_key.split("."):
            if isinstance(data, Mapping) and part in data:
                data = data[part]
            elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
                data = data[int(part)]
            else:
                break
        else:
            return data
    raise KeyError(f"{record.id}: neither the record nor its medigan view has {config_key!r}")


def medigan_metadata_problems(model_id: str, metadata: Any, is_local_model: bool = True) -> list[str]:
    """medigan's own checks of a model's metadata (``{model_id: {execution, selection, ...}}``):
    the mandatory keys, a package name, and a package link that is an existing local
    folder or file (``is_local_model``) or a URL."""
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get(model_id), Mapping):
        return [f"the metadata has no entry {model_id!r} (medigan's form: {{model_id: {{execution, selection}}}})"]
    entry = metadata[model_id]
    missing = [k for k in ("execution", "selection") if k not in entry]
    if missing:
        return [f"no {', '.join(missing)}"]
    ex = entry["execution"] if isinstance(entry["execution"], Mapping) else {}
    keys = ("package_link", "extension", "package_name", "model_name", "dependencies", "generate_method")
    missing = [k for k in keys if k not in ex]
    if missing:
        return [f"execution has no {', '.join(missing)}"]
    if not ex.get("package_name"):
        return ["execution.package_name is empty"]
    link = str(ex.get("package_link") or "")
    if is_local_model and not Path(link).exists():
        return [f"execution.package_link {link!r} is not an existing local folder or file"]
    if not is_local_model and not re.match(r"^[a-z][a-z0-9+.-]*://", link):
        return [f"execution.package_link {link!r} is not a URL"]
    gm = ex.get("generate_method")
    args = gm.get("args") if isinstance(gm, Mapping) else None
    base = args.get("base") if isinstance(args, Mapping) else None
    if not isinstance(base, list):
        return ["execution.generate_method.args.base is missing"]
    missing = [k for k in ("model_file", "num_samples", "output_path", "save_images") if k not in base]
    return [f"execution.generate_method.args.base lacks {', '.join(missing)}"] if missing else []


def find_weights_path(metadata: Mapping[str, Any], model_id: str, package_path: Path | None,
                      metadata_file: Path) -> Path | None:
    """medigan's look-up of a contributed model's weights (``<model_name><extension>``) in
    the package folder, then beside the metadata file."""
    ex = (metadata.get(model_id) or {}).get("execution") or {}
    name = f"{ex.get('model_name', '')}{ex.get('extension', '')}"
    for folder in (package_path, metadata_file.parent):
        if folder is not None and (folder / name).is_file():
            return (folder / name).resolve()
    return None


# --------------------------------------------------------------------- selection ---


@dataclass
class MatchedEntry:
    """One selection field that matched a search value (medigan's class)."""

    key: str
    value: Any
    matching_element: str


@dataclass
class ModelMatchCandidate:
    """A model that matched a value search (medigan's class of the same name)."""

    model_id: str
    target_values: list[str]
    target_values_operator: str = "AND"
    is_case_sensitive: bool = False
    are_keys_also_matched: bool = False
    ref: str = ""
    matched_entries: list[MatchedEntry] = field(default_factory=list)
    is_match: bool = False

    @property
    def matched_values(self) -> list[str]:
        return list(dict.fromkeys(e.matching_element for e in self.matched_entries))

    def get_all_matching_elements(self) -> list[str]:
        return [e.matching_element for e in self.matched_entries]

    def check_if_is_match(self) -> bool:
        found = set(self.get_all_matching_elements())
        hits = [v for v in self.target_values if v in found]
        op = self.target_values_operator.upper()
        if op == "AND":
            self.is_match = len(hits) == len(self.target_values)
        elif op == "OR":
            self.is_match = len(hits) > 0
        else:  # XOR
            self.is_match = len(hits) == 1
        return self.is_match

    def __repr__(self) -> str:
        return (f"ModelMatchCandidate(model_id={self.model_id!r}, target_values={self.target_values}, "
                f"is_match={self.is_match}, matched={self.matched_values})")


def _search(tree: Any, cand: ModelMatchCandidate, key: str = "") -> None:
    """medigan's recursive search: keys (when asked) and scalar values, and items of
    lists, compared whole with the target values."""
    def norm(x: Any) -> str:
        return str(x) if cand.is_case_sensitive else str(x).lower()

    if isinstance(tree, Mapping):
        for k, v in tree.items():
            if cand.are_keys_also_matched and norm(k) in cand.target_values:
                cand.matched_entries.append(MatchedEntry("key", k, norm(k)))
            if isinstance(v, Mapping):
                _search(v, cand, str(k))
            elif isinstance(v, list):
                for item in v:
                    if norm(item) in cand.target_values:
                        cand.matched_entries.append(MatchedEntry(str(k), item, norm(item)))
            elif norm(v) in cand.target_values:
                cand.matched_entries.append(MatchedEntry(str(k), v, norm(v)))


def find_matching(selections: Mapping[str, Mapping[str, Any]], values: Sequence[Any] | str,
                  operator: str = "AND", are_keys_also_matched: bool = False,
                  is_case_sensitive: bool = False, refs: Mapping[str, str] | None = None) -> list[ModelMatchCandidate]:
    """medigan's ``find_matching_models_by_values`` over ``{model_id: selection dict}``."""
    if values is None or (not isinstance(values, str) and len(values) == 0):
        raise ConfigError(f"give a list of values to search for (got {values!r})", hint="e.g. ['mammography', 'dcgan']")
    if operator.upper() not in ("AND", "OR", "XOR"):
        raise ConfigError(f"target_values_operator must be AND, OR or XOR, not {operator!r}")
    vals = [values] if isinstance(values, str) else [str(v) for v in values]
    if not is_case_sensitive:
        vals = [v.lower() for v in vals]
    out = []
    for model_id, selection in selections.items():
        cand = ModelMatchCandidate(model_id, vals, operator, is_case_sensitive, are_keys_also_matched,
                                   ref=(refs or {}).get(model_id, model_id))
        _search(selection, cand)
        if cand.check_if_is_match():
            out.append(cand)
    return out


def models_by_key_value(selections: Mapping[str, Mapping[str, Any]], key1: str, value1: Any,
                        is_case_sensitive: bool = False) -> list[dict[str, Any]]:
    """medigan's ``get_models_by_key_value_pair``: ``[{"model_id": id, key1: value1}]``
    for models whose selection value at ``key1`` equals ``value1`` (or holds it, for a list)."""
    out = []
    for model_id, selection in selections.items():
        value = deep_get(selection, key1)
        if value is None or isinstance(value, Mapping):
            continue
        if isinstance(value, list):
            items = [str(v) if is_case_sensitive else str(v).lower() for v in value]
            hit = (str(value1) if is_case_sensitive else str(value1).lower()) in items
        else:
            hit = str(value) == str(value1) or (not is_case_sensitive and str(value).lower() == str(value1).lower())
        if hit:
            out.append({"model_id": model_id, key1: value1})
    return out


def rank(selections: Mapping[str, Mapping[str, Any]], metric: str = "SSIM", order: str = "asc",
         model_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """medigan's ``rank_models_by_performance``: ``[{"model_id": id, metric: value}]``
    sorted by value, ascending (``order="asc"``, medigan's default) or descending
    (anything else, as medigan); models without the metric are left out. ``metric`` may be
    a dotted path (``CLF.trained_on_fake.accuracy``)."""
    if model_ids is not None and len(model_ids) == 0:
        return []
    rows = []
    for model_id, selection in selections.items():
        if model_ids is not None and model_id not in model_ids:
            continue
        value = deep_get(selection.get("performance") or {}, metric)
        if value is None or isinstance(value, Mapping):
            continue
        if isinstance(value, list):
            value = min(value) if order == "asc" else max(value)
        rows.append({"model_id": model_id, metric: value})
    rows.sort(key=lambda r: r[metric], reverse=order != "asc")
    return rows


# ----------------------------------------------------------------- output files ---


def medigan_file_name(index: int, output: str | None, ext: str) -> str:
    """medigan's name for sample ``index``: ``batch_<index // 32>_<index % 32><ext>``;
    a second and further output of the sample adds ``_<output name>``."""
    suffix = f"_{output}" if output else ""
    return f"batch_{index // MEDIGAN_BATCH}_{index % MEDIGAN_BATCH}{suffix}{ext}"


def default_output_path(model_id: str) -> Path:
    """medigan's default folder, a new one per run: ``output/<model_id>/<time.time()>/``."""
    return Path(DEFAULT_OUTPUT_FOLDER) / model_id / f"{time.time()}"


# ----------------------------------------------------------------------- datasets ---


def medigan_item(outputs: Mapping[str, Any], kinds: Mapping[str, str], transform: Any = None) -> dict[str, Any]:
    """One sample as medigan's dataset item: ``{"sample": image}``, plus ``"mask"`` (the
    first mask or label output), ``"other_imaging_output"`` (a further image) when the
    model has them; ``transform(x)``, or ``transform(x, mask)`` with a mask, as medigan.
    Outputs beyond those three (medigan's items have no key for them) are kept under their
    own names (``"volume_mask"``), untransformed."""
    names = list(outputs)
    sample_name = next((n for n in names if kinds.get(n) not in ("mask", "label")), names[0])
    mask_name = next((n for n in names if n != sample_name and kinds.get(n) in ("mask", "label")), None)
    other_name = next((n for n in names if n not in (sample_name, mask_name)), None)
    x, mask = outputs[sample_name], outputs[mask_name] if mask_name else None
    other = outputs[other_name] if other_name else None
    if transform is not None:
        if mask is not None and other is not None:
            x, mask, other = transform(x, mask, other)
        elif mask is not None:
            x, mask = transform(x, mask)
        elif other is not None:
            x, other = transform(x, other)
        else:
            x = transform(x)
    item: dict[str, Any] = {"sample": x}
    if mask is not None:
        item["mask"] = mask
    if other is not None:
        item["other_imaging_output"] = other
    for name in names:
        if name not in (sample_name, mask_name, other_name):
            item[name] = outputs[name]
    return item


def no_single_model(values: Any, matches: Sequence[ModelMatchCandidate]) -> ModelNotFound:
    if not matches:
        return ModelNotFound(f"no model matches {values!r}", hint="try fewer values, or target_values_operator='OR'")
    return ModelNotFound(f"{len(matches)} models match {values!r}: {', '.join(m.model_id for m in matches)}",
                         hint="add values to narrow it down, or use find_models_rank_and_generate()")
