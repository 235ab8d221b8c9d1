"""Import medigan's catalogue (``config/global.json``) into synthmed records.

medigan's entries are free text in many places: licences ("BSD", "GNU GENERAL PUBLIC
LICENSE", null), dates ("12th May 2021"), sizes as strings, DOIs as URLs, null and
missing fields. Each entry becomes one ``medigan-1`` record without a sha256
(``unverified``); an entry that cannot be imported gets a clear reason and the others
still import.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import urlparse

from packaging.requirements import InvalidRequirement, Requirement

from . import atomic, spdx
from .errors import ImportError_
from .records import is_valid_id, record_relpath, validate_data
from .runner.formats import PACKAGE_PLACEHOLDER
from .semver import is_version, parse_version, version_key

log = logging.getLogger(__name__)

MEDIGAN_REPO = "https://github.com/RichardObi/medigan"

#: free-text licence names seen in medigan's catalogue that map to exactly one SPDX id
LICENSE_ALIASES = {
    "mit": "MIT",
    "mit license": "MIT",
    "apache 2.0": "Apache-2.0",
    "apache-2.0": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0",
    "bsd-3-clause": "BSD-3-Clause",
    "bsd 3-clause": "BSD-3-Clause",
    "bsd-2-clause": "BSD-2-Clause",
    "gplv3": "GPL-3.0-only",
    "gpl-3.0": "GPL-3.0-only",
    "gnu general public license v3.0": "GPL-3.0-only",
    "cc by 4.0": "CC-BY-4.0",
    "cc-by-4.0": "CC-BY-4.0",
    "cc by-nc 4.0": "CC-BY-NC-4.0",
    "cc0": "CC0-1.0",
}

#: pip names in medigan's dependency lists that are not distributions
NOT_DISTRIBUTIONS = {"path": "pathlib is in the standard library", "pathlib": "standard library"}

MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}

# metric name -> (better, extractor)
METRICS: dict[str, tuple[str, str | None]] = {
    "FID": ("lower", "inception-v3"),
    "FID_ratio": ("higher", "inception-v3"),
    "FID_RADIMAGENET": ("lower", "radimagenet"),
    "FID_RADIMAGENET_ratio": ("higher", "radimagenet"),
    "SSIM": ("higher", None),
    "MSE": ("lower", None),
    "NSME": ("lower", None),
    "PSNR": ("higher", None),
    "IS": ("higher", "inception-v3"),
    "turing_test": ("lower", None),
    "CLF_delta": ("higher", None),
    "SEG_delta": ("higher", None),
    "DET_delta": ("higher", None),
}
LOWER_IS_BETTER_WORDS = ("loss", "error", "distance", "fid", "mse")


@dataclass
class ImportOutcome:
    original_id: str
    record: dict[str, Any] | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    path: str | None = None
    written: str | None = None  # "created" | "unchanged" | None

    @property
    def ok(self) -> bool:
        return self.record is not None


# --- small converters ---------------------------------------------------------------


def _strings(value: Any) -> list[str]:
    """A list of unique non-empty strings from a list, a string or null (order kept)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if item is None:
            continue
        s = str(item).strip()
        if s and s not in out:
            out.append(s)
    return out


def _int(value: Any) -> int | None:
    """128, "128", "128px", " 128 " -> 128; anything else -> None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(px)?\s*", value)
        if m:
            return int(m.group(1))
    return None


def _image_size(value: Any) -> list[int] | None:
    """[128, 128], ["128", "128"], "128x128", 128 -> a list of ints."""
    if value is None:
        return None
    if isinstance(value, (int, str)) and _int(value) is not None:
        n = _int(value)
        return [n, n] if n else None
    if isinstance(value, str):
        parts = re.split(r"\s*[x×,]\s*", value.strip())
        ints = [_int(p) for p in parts]
        return [i for i in ints if i] if all(ints) else None
    if isinstance(value, list):
        ints = [_int(v) for v in value]
        return [i for i in ints if i] if all(ints) and ints else None
    return None


def map_license(text: Any) -> tuple[str, str | None]:
    """(SPDX id or NOASSERTION, the original text when it was not already an SPDX id)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return spdx.NOASSERTION, None
    raw = str(text).strip()
    if spdx.check_expression(raw) is None:
        return raw, None
    canon = spdx.canonical(raw)
    if canon:
        return canon, raw
    alias = LICENSE_ALIASES.get(raw.lower())
    if alias:
        return alias, raw
    return spdx.NOASSERTION, raw


def parse_date(text: Any) -> str | None:
    """"12th May 2021" -> 2021-05-12, "Sep 2021" -> 2021-09, "2020" -> 2020."""
    if not isinstance(text, str):
        return None
    t = text.strip().lower()
    year = re.search(r"\b(19|20)\d{2}\b", t)
    if not year:
        return None
    month = next((n for name, n in MONTHS.items() if re.search(rf"\b{name}[a-z]*\b", t)), None)
    if month is None:
        return year.group(0)
    day = re.search(r"\b(\d{1,2})(st|nd|rd|th)?\b", t.replace(year.group(0), ""))
    if day and 1 <= int(day.group(1)) <= 31:
        return f"{year.group(0)}-{month:02d}-{int(day.group(1)):02d}"
    return f"{year.group(0)}-{month:02d}"


def normalise_doi(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    m = re.search(r"(10\.\d{4,9}/\S+)", text.strip())
    return m.group(1).rstrip(".") if m else None


def zenodo_source(link: str) -> str | None:
    """https://zenodo.org/record(s)/<id>/files/<name>?download=1 -> zenodo:<id>/<name>."""
    u = urlparse(link)
    m = re.fullmatch(r"/records?/(\d+)/files/(.+)", u.path)
    if u.hostname and u.hostname.endswith("zenodo.org") and m:
        return f"zenodo:{m.group(1)}/{m.group(2)}"
    return None


def local_source(link: str, base: Path | None) -> str | None:
    """A local package link -> a ``file://`` source: a ``file://`` URL as it is, an absolute
    path, or a path relative to ``base`` (medigan's working folder: the one holding
    ``config/global.json``; the current folder when None). None for anything else."""
    if link.startswith("file://"):
        return link
    if "://" in link or link.startswith(("zenodo:", "index:", "dvc:", "mirror:")):
        return None
    p = Path(link).expanduser()
    if not p.is_absolute():
        p = (base or Path.cwd()) / p
    return p.resolve().as_uri()


def _family(arch: str) -> str:
    a = arch.lower()
    if "latent diffusion" in a or "ldm" in a:
        return "latent-diffusion"
    if "diffusion" in a or "ddpm" in a:
        return "diffusion"
    if "vae" in a or "autoencoder" in a:
        return "vae"
    if "gan" in a or a.startswith("pix2pix") or a in {"inpaint generator"}:
        return "gan"  # pix2pix and pix2pixHD are conditional GANs
    return "other"


def _task(functions: list[str], arch: str) -> str:
    f = " | ".join(x.lower() for x in functions)
    if "inpainting" in f:
        return "inpainting"
    if "mask to image" in f:
        return "mask-to-image"
    if "image to image" in f or "cross-modal" in f:
        return "image-to-image"
    if "conditional" in arch.lower() and "unconditional" not in arch.lower():
        return "class-conditional"
    if "unconditional" in f or "noise to image" in f:
        return "unconditional"
    return "other"


# --- outputs, package paths, what is not kept (issue 12) --------------------------------

#: medigan's functions/generates wording of a model that makes a mask with each image
_MASK_WORDS = ("noise to image and mask", "segmentation mask", "binary mask", "tumor grade mask")


def makes_masks(original_id: str, selection: Mapping[str, Any], comment: str) -> bool:
    """Whether a medigan entry's samples are image + mask: ``W_MASKS`` in its id, or its
    ``function``/``generates`` name masks it makes."""
    words = " | ".join(x.lower() for x in _strings(selection.get("function")) + _strings(selection.get("generates")))
    return "W_MASK" in original_id.upper() or any(w in words for w in _MASK_WORDS)


def medigan_outputs(original_id: str, selection: Mapping[str, Any], size: list[int], comment: str,
                    notes: list[str]) -> list[dict[str, Any]]:
    """The record's outputs: one ``image``, or for an image+mask model an ``image`` and a
    ``mask`` (kind mask) as separate named outputs. A 4-channel medigan sample is taken as
    an RGB image with its mask in channel 4 (synthmed's runner splits one array whose channels
    are the outputs' channels in record order); a tuple sample gives its arrays in order."""
    channels = size[2] if len(size) >= 3 and size[2] <= 4 else 1
    hw = size[:2]
    if not makes_masks(original_id, selection, comment):
        return [{"name": "image", "kind": "image", "dims": 2, "shape": hw + ([channels] if channels > 1 else []),
                 "dtype": "uint8", "channels": channels, "value_range": [0, 255]}]
    image_channels = 3 if channels == 4 else channels
    mask_channels = 3 if "3-channel segmentation mask" in comment.lower() else 1
    notes.append(f"image+mask model: outputs 'image' ({image_channels} channel(s)) and 'mask' "
                 f"({mask_channels} channel(s))" + (", split from medigan's 4-channel sample (mask in channel 4)"
                                                    if channels == 4 else ", from medigan's (image, mask) tuples"))
    return [
        {"name": "image", "kind": "image", "dims": 2, "shape": hw + ([image_channels] if image_channels > 1 else []),
         "dtype": "uint8", "channels": image_channels, "value_range": [0, 255]},
        {"name": "mask", "kind": "mask", "dims": 2, "shape": hw + ([mask_channels] if mask_channels > 1 else []),
         "dtype": "uint8", "channels": mask_channels, "value_range": [0, 255]},
    ]




def package_relative_args(original_id: str, custom: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    """Default arguments that point into medigan's own copy of the package
    (``models/<id>/...``) become ``{package}/...``: the runner resolves them inside the
    verified package folder, so they work without the user passing an internal path."""
    prefix = f"models/{original_id}/"
    out: dict[str, Any] = {}
    for key, value in custom.items():
        if isinstance(value, str) and value.replace("\\", "/").lower().startswith(prefix.lower()):
            rest = value.replace("\\", "/")[len(prefix):]
            out[key] = f"{PACKAGE_PLACEHOLDER}/{rest}"
            notes.append(f"generate argument {key}={value!r} is inside medigan's package folder: "
                         f"recorded as {out[key]!r}, resolved inside the verified package")
        else:
            out[key] = value
    return out


#: medigan fields a record keeps (mapped onto its own fields), by section
_KEPT = {
    "execution": {"package_name", "package_link", "model_name", "extension", "image_size", "dependencies",
                  "generate_method"},
    "selection": {"performance", "use_cases", "organ", "modality", "dataset", "augmentations", "generates",
                  "height", "width", "type", "license", "dataset_type", "privacy_preservation", "tags",
                  "function", "depth"},
    "description": {"title", "version", "doi", "publication", "inputs", "comment", "trained_date"},
}


def dropped_notes(entry: Mapping[str, Any]) -> list[str]:
    """An import note for every medigan field with a value that the record does not keep."""
    notes = []
    for section, kept in _KEPT.items():
        block = entry.get(section)
        if not isinstance(block, Mapping):
            continue
        for key, value in block.items():
            if key in kept or value in (None, "", [], {}):
                continue
            notes.append(f"{section}.{key}={json.dumps(value, ensure_ascii=False)[:200]} is not kept "
                         "(synthmed's record has no field for it)")
    gm = (entry.get("execution") or {}).get("generate_method")
    if isinstance(gm, Mapping):
        for key, value in gm.items():
            if key not in ("name", "args") and value not in (None, "", [], {}):
                notes.append(f"execution.generate_method.{key}={json.dumps(value)[:200]} is not kept")
    return notes


def _input_help(lines: Any) -> dict[str, str]:
    """medigan's ``"name: default=1, help=..."`` strings -> {name: help text}."""
    out: dict[str, str] = {}
    for line in _strings(lines):
        m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*)", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _schema_for(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean", "default": value}
    if isinstance(value, int):
        return {"type": "integer", "default": value}
    if isinstance(value, float):
        return {"type": "number", "default": value}
    if isinstance(value, str):
        return {"type": "string", "default": value}
    if isinstance(value, list):
        return {"type": "array", "default": value}
    if isinstance(value, dict):
        return {"type": "object", "default": value}
    return {}  # null default: any value


def _inputs(custom: Mapping[str, Any], helps: Mapping[str, str]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, value in custom.items():
        props[name] = _schema_for(value)
    for name, help_text in helps.items():
        props.setdefault(name, {})
    for name, help_text in helps.items():
        props[name]["description"] = help_text
    return {"type": "object", "properties": props, "additionalProperties": False}


def _metrics(perf: Any, notes: list[str]) -> list[dict[str, Any]]:
    if not isinstance(perf, dict):
        return []
    n = _int(perf.get("FID_no_images"))
    out: list[dict[str, Any]] = []
    for name, (better, extractor) in METRICS.items():
        value = perf.get(name)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            notes.append(f"metric {name}={value!r} is not a number; skipped")
            continue
        m: dict[str, Any] = {"name": name, "value": value, "better": better, "source": "reported"}
        if name.startswith(("FID", "IS")) and n:
            m["n_samples"] = n
        if extractor:
            m["extractor"] = extractor
        if name.endswith("_ratio"):
            m["normalised"] = True
            m["method"] = "medigan's FID ratio: 1 - (FID_rs - FID_rr) / FID_rs"
        out.append(m)
    # downstream task results: {"SEG": {"trained_on_fake": {"dice": 0.8}}}
    for task in ("CLF", "SEG", "DET"):
        block = perf.get(task)
        if not isinstance(block, dict):
            continue
        for setting, values in block.items():
            if not isinstance(values, dict):
                continue
            for metric, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    lower = any(w in metric.lower() for w in LOWER_IS_BETTER_WORDS)
                    out.append({
                        "name": f"{task}_{metric}_{setting}",
                        "value": value,
                        "better": "lower" if lower else "higher",
                        "source": "reported",
                        "method": f"downstream {task.lower()} {metric}, model {setting.replace('_', ' ')}",
                    })
    return out


def _requirements(deps: Any, notes: list[str]) -> list[str]:
    out: list[str] = []
    for dep in _strings(deps):
        if dep.lower() in NOT_DISTRIBUTIONS:
            notes.append(f"dependency {dep!r} dropped: {NOT_DISTRIBUTIONS[dep.lower()]}")
            continue
        try:
            Requirement(dep)
        except InvalidRequirement:
            notes.append(f"dependency {dep!r} is not a PEP 508 requirement; dropped")
            continue
        if dep not in out:
            out.append(dep)
    return out


# --- one entry ----------------------------------------------------------------------


def convert_entry(original_id: str, entry: Any, *, commit: str | None = None,
                  base: Path | None = None, translator_inputs: bool = True) -> ImportOutcome:
    """One medigan entry -> a synthmed record (or the reason it cannot be imported).
    ``base``: the folder local package links are relative to (see :func:`local_source`)."""
    outcome = ImportOutcome(original_id)
    notes = outcome.notes
    try:
        outcome.record = _convert(original_id, entry, notes, commit, base, translator_inputs)
    except ImportError_ as exc:
        outcome.reason = exc.message
    return outcome


def _convert(original_id: str, entry: Any, notes: list[str], commit: str | None,
             base: Path | None = None, translator_inputs: bool = True) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ImportError_(f"entry is a {type(entry).__name__}, not an object")
    execution = entry.get("execution") or {}
    selection = entry.get("selection") or {}
    desc = entry.get("description") or {}
    if not isinstance(execution, dict) or not isinstance(selection, dict) or not isinstance(desc, dict):
        raise ImportError_("'execution', 'selection' and 'description' must be objects")

    model_id = original_id.strip().lower()
    if not is_valid_id(model_id):
        raise ImportError_(f"id {model_id!r} (lower-cased from {original_id!r}) is not a valid synthmed id: "
                           "3-64 characters of a-z, 0-9, '.', '_', '-'")

    link = execution.get("package_link")
    if not isinstance(link, str) or not link.strip():
        raise ImportError_("no execution.package_link: there is no artefact to point to")
    link = link.strip()
    sources = []
    zsrc = zenodo_source(link)
    if zsrc:
        sources.append(zsrc)
    if link.startswith(("https://", "http://")):
        sources.append(link)
    if not sources:
        local = local_source(link, base)
        if local is None:
            raise ImportError_(f"execution.package_link {link!r} is neither a Zenodo record file, an http(s) URL "
                               "nor a local path or file:// URL")
        sources.append(local)
        notes.append(f"package_link {link!r} is local: recorded as {local} (a site reads it only from its "
                     "file_roots; publish the package somewhere others can reach before sharing the record)")

    version_text = desc.get("version")
    if isinstance(version_text, str) and is_version(version_text.strip()):
        version = version_text.strip()
    else:
        version = "1.0.0"
        notes.append(f"medigan version {version_text!r} is not a semantic version; assigned {version}")

    title = str(desc.get("title") or "").strip() or original_id
    comment = str(desc.get("comment") or "").strip()
    summary_src = comment or title
    first = re.split(r"(?<=[.!?])\s", summary_src, maxsplit=1)[0]
    summary = first if len(first) <= 500 else first[:497] + "..."

    arch_name = str(selection.get("type") or execution.get("model_name") or "unknown").strip()
    functions = _strings(selection.get("function"))
    lic, lic_text = map_license(selection.get("license"))
    if lic == spdx.NOASSERTION:
        notes.append(f"licence {selection.get('license')!r} maps to no single SPDX id; NOASSERTION")

    size = _image_size(execution.get("image_size"))
    h = _int(selection.get("height"))
    w = _int(selection.get("width"))
    if not size and h and w:
        size = [h, w]
    if not size:
        raise ImportError_("no usable image size (execution.image_size, or selection.height/width)")

    generate = execution.get("generate_method") or {}
    gen_name = str(generate.get("name") or "generate") if isinstance(generate, dict) else "generate"
    args = generate.get("args") if isinstance(generate, dict) else None
    custom = (args or {}).get("custom") or {} if isinstance(args, dict) else {}
    if not isinstance(custom, dict):
        notes.append("generate_method.args.custom is not an object; ignored")
        custom = {}
    custom = package_relative_args(original_id, custom, notes)
    inputs = _inputs(custom, _input_help(desc.get("inputs")))

    publications = []
    for doi_text in _strings(desc.get("doi")):
        doi = normalise_doi(doi_text)
        if doi:
            publications.append({"doi": doi})
        else:
            notes.append(f"doi {doi_text!r} is not a DOI; skipped")
    if isinstance(desc.get("publication"), str) and desc["publication"].strip():
        if publications:
            publications[0]["title"] = desc["publication"].strip()
        else:
            publications.append({"title": desc["publication"].strip()})

    training: dict[str, Any] = {
        "datasets": [{"name": d, **({"type": str(selection["dataset_type"])} if selection.get("dataset_type") else {})}
                     for d in _strings(selection.get("dataset"))],
    }
    date = parse_date(desc.get("trained_date"))
    if date:
        training["date"] = date
    if _strings(selection.get("augmentations")):
        training["augmentations"] = _strings(selection.get("augmentations"))
    if selection.get("privacy_preservation"):
        training["privacy"] = str(selection["privacy_preservation"])

    weights = f"{execution.get('model_name') or ''}{execution.get('extension') or ''}".strip()
    package: dict[str, Any] = {
        "format": "medigan-1",
        "artefact": {"media_type": "application/zip", "sources": sources},
        "entry_point": f"__init__:{gen_name}",
        "requirements": _requirements(execution.get("dependencies"), notes),
        "devices": ["cpu", "cuda"],
        "generate_args": custom,
    }
    if weights:
        package["weights"] = weights

    description = comment
    if desc.get("inputs"):
        description += "\n\nParameters (from medigan):\n" + "\n".join(f"- {x}" for x in _strings(desc["inputs"]))

    record: dict[str, Any] = {
        "format": "synthmed-record/1",
        "id": model_id,
        "version": version,
        "title": title[:200],
        "summary": summary,
        "description": description,
        "status": "active",
        "modality": _strings(selection.get("modality")),
        "anatomy": _strings(selection.get("organ")),
        "generates": _strings(selection.get("generates")),
        "use_cases": _strings(selection.get("use_cases")),
        "tags": _strings(selection.get("tags")),
        "architecture": {"family": _family(arch_name), "name": arch_name},
        "task": _task(functions, arch_name),
        "inputs": inputs,
        "outputs": medigan_outputs(original_id, selection, size, comment, notes),
        "training": training,
        "metrics": _metrics(selection.get("performance"), notes),
        "license": lic,
        "authors": [],
        "publications": publications,
        "package": package,
        "test": {"num_samples": 2, "seed": 0, "timeout_s": 900, "checks": ["shapes", "finite"]},
        "provenance": {
            "source": "medigan global.json",
            "url": f"{MEDIGAN_REPO}/blob/{commit or 'main'}/config/global.json",
            "original_id": original_id,
            **({"commit": commit} if commit else {}),
        },
    }
    if lic_text:
        record["license_text"] = lic_text
    notes.extend(dropped_notes(entry))
    if translator_inputs:
        map_translator_inputs(record, notes)
    if notes:
        record["provenance"]["import_notes"] = list(notes)

    errors, _ = validate_data(record, f"<import of {original_id}>", record_relpath(model_id, version))
    if errors:
        raise ImportError_("the converted record does not validate: " + "; ".join(f"{p.json_path}: {p.message}" for p in errors))
    return record


# --- translators: input folders as array inputs ---------------------------------------

#: medigan's generate() arguments that name a folder of images to translate
FOLDER_ARGS = ("input_path",)
#: a translator rescales what it reads, so its inputs may be any size up to this
TRANSLATOR_MAX_SIDE = 16384


def map_translator_inputs(record: dict[str, Any], notes: list[str]) -> None:
    """A translator (task image-to-image, mask-to-image or inpainting) whose generate()
    takes a folder (``input_path``) gets an array input instead of a string parameter:
    named ``mask`` (kind mask) when the catalogue's help for it speaks of masks, else
    ``image``; 2D, uint8, the
    channels of its output, any size (medigan's translators rescale to ``image_size``).
    The runner then writes input i into a folder of its own and passes that folder as
    the argument (:func:`synthmed.registry.runner.formats.stage_input`). The folder
    default inside medigan's own tree is dropped from the parameters and generate_args.
    Changes ``record`` in place; a note says what was done."""
    if record.get("task") not in ("image-to-image", "mask-to-image", "inpainting"):
        return
    props = record["inputs"].get("properties") or {}
    package = record["package"]
    out = record["outputs"][0]
    for arg in FOLDER_ARGS:
        if arg not in props and arg not in (package.get("generate_args") or {}):
            continue
        # what the folder holds, as the catalogue's help text says: masks only when it says so
        # (00004 is mask-to-image, yet its input_path holds mammograms for the image pool)
        help_text = str((props.get(arg) or {}).get("description", "")).lower()
        help_text = help_text.split("help=", 1)[1] if "help=" in help_text else help_text  # not the default path
        name, kind = ("mask", "mask") if "mask" in help_text else ("image", "image")
        if name in props:
            notes.append(f"{arg}: not mapped to an array input ({name!r} is already a parameter)")
            continue
        props.pop(arg, None)
        (package.get("generate_args") or {}).pop(arg, None)
        notes[:] = [n for n in notes if not n.startswith(f"generate argument {arg}=")]  # about the dropped default
        record.setdefault("array_inputs", []).append({
            "name": name, "kind": kind, "dims": 2, "shape": [1, 1],
            "shape_max": [TRANSLATOR_MAX_SIDE, TRANSLATOR_MAX_SIDE], "dtype": "uint8",
            "channels": int(out.get("channels", 1)), "value_range": [0, 255], "medigan_arg": arg,
            "description": f"one image per sample, written alone into a folder passed as medigan's {arg}"})
        notes.append(f"{arg} (a folder of images) became the array input {name!r}; the runner stages input i in a "
                     "folder of its own")


# --- a whole catalogue --------------------------------------------------------------


def load_catalogue(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ImportError_(f"{path}: file not found", hint="pass the path of medigan's config/global.json") from None
    except json.JSONDecodeError as exc:
        raise ImportError_(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                           hint="pass medigan's config/global.json (or a JSON object holding some of its entries)") from exc
    except UnicodeDecodeError as exc:
        raise ImportError_(f"{path}: not UTF-8 text: {exc}", hint="pass medigan's config/global.json") from exc
    except OSError as exc:
        raise ImportError_(f"{path}: cannot be read: {exc.strerror or exc}",
                           hint="pass the path of medigan's config/global.json (a file)") from exc
    if not isinstance(data, dict):
        raise ImportError_(f"{path}: expected an object of model entries keyed by model id, got {type(data).__name__}",
                           hint="pass medigan's config/global.json (or a JSON object holding some of its entries)")
    if not data:
        raise ImportError_(f"{path}: holds no model entries", hint="pass medigan's config/global.json")
    return data


#: the import note of a record published under a new version because a newer importer
#: converts medigan's entry differently (published versions never change in place)
REIMPORT_NOTE = ("re-imported: the importer's conversion of this medigan entry changed, and a published "
                 "version never changes, so this is a new synthmed version of medigan's version {medigan}")


def _with_version(record: Mapping[str, Any], version: str, medigan_version: str) -> dict[str, Any]:
    """The record as version ``version`` (a re-import above medigan's own says so in its notes)."""
    out = json.loads(json.dumps(record))
    out["version"] = version
    if version != medigan_version:
        notes = out.setdefault("provenance", {}).setdefault("import_notes", [])
        notes.append(REIMPORT_NOTE.format(medigan=medigan_version))
    return out


def _record_text(record: Mapping[str, Any]) -> str:
    return json.dumps(record, indent=2, ensure_ascii=False) + "\n"


def place_version(record: dict[str, Any], folder: Path) -> tuple[dict[str, Any], str]:
    """Where a converted record goes among the versions already in ``folder``
    (``models/<id>/``): ``(record, "unchanged")`` when a version there holds exactly this
    conversion, else ``(record, "created")`` under medigan's version, or, when that file
    exists with other content (a published version is immutable), under the next patch
    version above every version there."""
    medigan_version = str(record["version"])
    existing = sorted((p.stem for p in folder.glob("*.json") if is_version(p.stem)), key=version_key)
    for v in existing:
        candidate = _with_version(record, v, medigan_version)
        if (folder / f"{v}.json").read_text("utf-8") == _record_text(candidate):
            return candidate, "unchanged"
    if medigan_version not in existing:
        return record, "created"
    top = parse_version(existing[-1])
    nxt = f"{top.major}.{top.minor}.{top.patch + 1}"
    return _with_version(record, nxt, medigan_version), "created"


def import_catalogue(path: Path, into: Path, *, commit: str | None = None, dry_run: bool = False,
                     translator_inputs: bool = True) -> list[ImportOutcome]:
    """Convert every entry and write the records under ``into/models``.

    A file already there is never overwritten (merged versions are immutable): a conversion
    equal to a version there is "unchanged"; a different one is written as a new version
    (:func:`place_version`).
    """
    outcomes = []
    folder = Path(path).resolve().parent
    base = folder.parent if folder.name == "config" else folder  # medigan's working folder
    for original_id, entry in load_catalogue(path).items():
        outcome = convert_entry(str(original_id), entry, commit=commit, base=base,
                                translator_inputs=translator_inputs)
        if outcome.record is not None:
            model_dir = into / record_relpath(outcome.record["id"], outcome.record["version"])
            record, state = place_version(outcome.record, model_dir.parent)
            outcome.record = record
            target = into / record_relpath(record["id"], record["version"])
            outcome.path = str(target)
            if state == "unchanged":
                outcome.written = "unchanged"
            elif not dry_run:
                atomic.write_text(target, _record_text(record), parents=True)
                outcome.written = "created"
        if outcome.reason:
            log.warning("medigan entry %s not imported: %s", original_id, outcome.reason)
        outcomes.append(outcome)
    return outcomes


def summarise(outcomes: Iterable[ImportOutcome]) -> dict[str, Any]:
    outs = list(outcomes)
    return {
        "imported": [{"id": o.original_id, "path": o.path, "written": o.written, "notes": o.notes} for o in outs if o.ok],
        "failed": [{"id": o.original_id, "reason": o.reason} for o in outs if not o.ok],
    }
