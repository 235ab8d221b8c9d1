"""Import medigan's catalogue (``config/global.json``) into synthmed records.

Each entry becomes one ``medigan-1`` record without a sha256 (``unverified``); an entry
that cannot be imported gets a clear reason and the others still import. This module
converts an entry section by section and writes the records (a published version is
never overwritten); :mod:`~synthmed.registry.authoring.medigan_fields` reads medigan's free-text
values and :mod:`~synthmed.registry.authoring.medigan_model` says what the model makes and takes.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .. import atomic, spdx, vocabulary
from ..errors import ImportError_
from .medigan_fields import (as_int, family_of, image_size, input_help, inputs_schema, local_source, map_license,
                             normalise_doi, parse_date, pip_requirements, reported_metrics, strings, task_of,
                             zenodo_source)
from .medigan_model import dropped_notes, map_translator_inputs, medigan_outputs, package_relative_args
from ..record_paths import find_record, new_record_path, record_relpath, versions_of
from ..records import is_valid_id, validate_data
from ..semver import is_version, parse_version, version_key

log = logging.getLogger(__name__)

MEDIGAN_REPO = "https://github.com/RichardObi/medigan"


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
    """The record of one entry, field by field; each part that can fail raises
    :class:`ImportError_` with the reason, each that drops or guesses something notes it."""
    execution, selection, desc = _sections(entry)
    model_id = _model_id(original_id)
    sources = _sources(execution.get("package_link"), base, notes)
    version = _version(desc.get("version"), notes)
    title = str(desc.get("title") or "").strip() or original_id
    comment = str(desc.get("comment") or "").strip()
    arch_name = str(selection.get("type") or execution.get("model_name") or "unknown").strip()
    lic, lic_text = map_license(selection.get("license"))
    if lic == spdx.NOASSERTION:
        notes.append(f"licence {selection.get('license')!r} maps to no single SPDX id; NOASSERTION")
    size = _size(execution, selection)
    gen_name, custom = _generate_method(original_id, execution, notes)
    publications = _publications(desc, notes)
    package = _package(execution, sources, gen_name, custom, notes)
    record: dict[str, Any] = {
        "format": "synthmed-record/1",
        "id": model_id,
        "version": version,
        "title": title[:200],
        "summary": _summary(comment or title),
        "description": _description(comment, desc.get("inputs")),
        "status": "active",
        **_vocabulary_fields(strings(selection.get("modality")), strings(selection.get("organ")),
                             strings(selection.get("tags")), notes),
        "generates": strings(selection.get("generates")),
        "use_cases": strings(selection.get("use_cases")),
        "architecture": {"family": family_of(arch_name), "name": arch_name},
        "task": task_of(strings(selection.get("function")), arch_name),
        "inputs": inputs_schema(custom, input_help(desc.get("inputs"))),
        "outputs": medigan_outputs(original_id, selection, size, comment, notes),
        "training": _training(selection, desc),
        "metrics": reported_metrics(selection.get("performance"), notes),
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
    original = {"modality": strings(selection.get("modality")), "organ": strings(selection.get("organ"))}
    if record["modality"] != original["modality"] or record["anatomy"] != original["organ"]:
        record["provenance"]["original_terms"] = original  # medigan's own words (its selection methods match them)
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


def _vocabulary_fields(modality: list[str], organ: list[str], tags: list[str],
                       notes: list[str]) -> dict[str, list[str]]:
    """medigan's free-text modality and organ words mapped onto the controlled vocabulary
    (DICOM modality codes, anatomy terms); the original words are kept as tags (search finds
    them). Words the vocabulary does not know stay as they are where nothing else is known."""
    codes, terms = vocabulary.modality_codes(modality), vocabulary.anatomy_terms(organ)
    words = [w for w in [*modality, *organ] if w not in codes and w not in terms]
    if codes != modality or terms != organ:
        notes.append(f"modality {modality} -> {codes or modality}, organ {organ} -> {terms or organ} "
                     "(the controlled vocabulary); medigan's words kept as tags")
    return {"modality": codes or modality, "anatomy": terms or organ,
            "tags": list(dict.fromkeys([*tags, *words]))}


def _sections(entry: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An entry's ``execution``, ``selection`` and ``description`` objects (missing: empty)."""
    if not isinstance(entry, dict):
        raise ImportError_(f"entry is a {type(entry).__name__}, not an object")
    execution = entry.get("execution") or {}
    selection = entry.get("selection") or {}
    desc = entry.get("description") or {}
    if not isinstance(execution, dict) or not isinstance(selection, dict) or not isinstance(desc, dict):
        raise ImportError_("'execution', 'selection' and 'description' must be objects")
    return execution, selection, desc


def _model_id(original_id: str) -> str:
    model_id = original_id.strip().lower()
    if not is_valid_id(model_id):
        raise ImportError_(f"id {model_id!r} (lower-cased from {original_id!r}) is not a valid synthmed id: "
                           "3-64 characters of a-z, 0-9, '.', '_', '-'")
    return model_id


def _sources(link: Any, base: Path | None, notes: list[str]) -> list[str]:
    """The artefact's sources from ``execution.package_link``: a Zenodo record file (and
    its URL), an http(s) URL, or a local path as a ``file://`` URL."""
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
    return sources


def _version(version_text: Any, notes: list[str]) -> str:
    if isinstance(version_text, str) and is_version(version_text.strip()):
        return version_text.strip()
    notes.append(f"medigan version {version_text!r} is not a semantic version; assigned 1.0.0")
    return "1.0.0"


def _summary(text: str) -> str:
    """The first sentence, at most 500 characters."""
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first if len(first) <= 500 else first[:497] + "..."


def _description(comment: str, inputs_help: Any) -> str:
    if not inputs_help:
        return comment
    return comment + "\n\nParameters (from medigan):\n" + "\n".join(f"- {x}" for x in strings(inputs_help))


def _size(execution: Mapping[str, Any], selection: Mapping[str, Any]) -> list[int]:
    size = image_size(execution.get("image_size"))
    h = as_int(selection.get("height"))
    w = as_int(selection.get("width"))
    if not size and h and w:
        size = [h, w]
    if not size:
        raise ImportError_("no usable image size (execution.image_size, or selection.height/width)")
    return size


def _generate_method(original_id: str, execution: Mapping[str, Any], notes: list[str]) -> tuple[str, dict[str, Any]]:
    """The generate function's name and its custom default arguments (package paths made
    package-relative)."""
    generate = execution.get("generate_method") or {}
    gen_name = str(generate.get("name") or "generate") if isinstance(generate, dict) else "generate"
    args = generate.get("args") if isinstance(generate, dict) else None
    custom = (args or {}).get("custom") or {} if isinstance(args, dict) else {}
    if not isinstance(custom, dict):
        notes.append("generate_method.args.custom is not an object; ignored")
        custom = {}
    return gen_name, package_relative_args(original_id, custom, notes)


def _publications(desc: Mapping[str, Any], notes: list[str]) -> list[dict[str, Any]]:
    publications: list[dict[str, Any]] = []
    for doi_text in strings(desc.get("doi")):
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
    return publications


def _training(selection: Mapping[str, Any], desc: Mapping[str, Any]) -> dict[str, Any]:
    training: dict[str, Any] = {
        "datasets": [{"name": d, **({"type": str(selection["dataset_type"])} if selection.get("dataset_type") else {})}
                     for d in strings(selection.get("dataset"))],
    }
    date = parse_date(desc.get("trained_date"))
    if date:
        training["date"] = date
    if strings(selection.get("augmentations")):
        training["augmentations"] = strings(selection.get("augmentations"))
    if selection.get("privacy_preservation"):
        training["privacy"] = str(selection["privacy_preservation"])
    return training


def _package(execution: Mapping[str, Any], sources: list[str], gen_name: str, custom: dict[str, Any],
             notes: list[str]) -> dict[str, Any]:
    weights = f"{execution.get('model_name') or ''}{execution.get('extension') or ''}".strip()
    package: dict[str, Any] = {
        "format": "medigan-1",
        "artefact": {"media_type": "application/zip", "sources": sources},
        "entry_point": f"__init__:{gen_name}",
        "requirements": pip_requirements(execution.get("dependencies"), notes),
        "devices": ["cpu", "cuda"],
        "generate_args": custom,
    }
    if weights:
        package["weights"] = weights
    return package


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


def place_version(record: dict[str, Any], index_dir: Path) -> tuple[dict[str, Any], str]:
    """Where a converted record goes among the versions of its model already in the index
    folder (in either record layout): ``(record, "unchanged")`` when a version there holds exactly this
    conversion, else ``(record, "created")`` under medigan's version, or, when that file
    exists with other content (a published version is immutable), under the next patch
    version above every version there."""
    medigan_version = str(record["version"])
    model_id = str(record["id"])
    existing = sorted((v for v in versions_of(index_dir, model_id) if is_version(v)), key=version_key)
    for v in existing:
        candidate = _with_version(record, v, medigan_version)
        held = find_record(index_dir, model_id, v)
        if held is not None and held.read_text("utf-8") == _record_text(candidate):
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
            record, state = place_version(outcome.record, into)
            outcome.record = record
            target = new_record_path(into, record["id"], record["version"])
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
