"""medigan's free-text catalogue values, read into record values.

medigan's entries are free text in many places: licences ("BSD", "GNU GENERAL PUBLIC
LICENSE", null), dates ("12th May 2021"), sizes as strings, DOIs as URLs, package links,
dependency lists, metrics and parameter help. Each function here reads one kind of value;
what it cannot read it leaves out, and where that matters it says so in ``notes`` (the
record's import notes). Used by :mod:`synthmed.registry.authoring.medigan_import`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from packaging.requirements import InvalidRequirement, Requirement

from .. import spdx

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

# --- small converters ---------------------------------------------------------------


def strings(value: Any) -> list[str]:
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


def as_int(value: Any) -> int | None:
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


def image_size(value: Any) -> list[int] | None:
    """[128, 128], ["128", "128"], "128x128", 128 -> a list of ints."""
    if value is None:
        return None
    if isinstance(value, (int, str)) and as_int(value) is not None:
        n = as_int(value)
        return [n, n] if n else None
    if isinstance(value, str):
        parts = re.split(r"\s*[x×,]\s*", value.strip())
        ints = [as_int(p) for p in parts]
        return [i for i in ints if i] if all(ints) else None
    if isinstance(value, list):
        ints = [as_int(v) for v in value]
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


def family_of(arch: str) -> str:
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


def task_of(functions: list[str], arch: str) -> str:
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


# --- parameters, metrics, requirements ----------------------------------------------------


def input_help(lines: Any) -> dict[str, str]:
    """medigan's ``"name: default=1, help=..."`` strings -> {name: help text}."""
    out: dict[str, str] = {}
    for line in strings(lines):
        m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*)", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def schema_for(value: Any) -> dict[str, Any]:
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


def inputs_schema(custom: Mapping[str, Any], helps: Mapping[str, str]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, value in custom.items():
        props[name] = schema_for(value)
    for name, help_text in helps.items():
        props.setdefault(name, {})
    for name, help_text in helps.items():
        props[name]["description"] = help_text
    return {"type": "object", "properties": props, "additionalProperties": False}


def reported_metrics(perf: Any, notes: list[str]) -> list[dict[str, Any]]:
    if not isinstance(perf, dict):
        return []
    n = as_int(perf.get("FID_no_images"))
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


def pip_requirements(deps: Any, notes: list[str]) -> list[str]:
    out: list[str] = []
    for dep in strings(deps):
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
