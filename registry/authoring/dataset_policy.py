"""The dataset publishing policy: what a ``synthmed-dataset/1`` record must agree with in
the index that holds it. One owner, used by ``synthmed index validate``, the pull-request
gate (``synthmed index check``) and ``synthmed dataset publish`` alike (docs/datasets.md).

- **The model**: ``model.id@model.version`` is a model version of the same index, pinned,
  with the package sha256 the record names, not yanked; the record's outputs are outputs
  of that model and its parameters satisfy the model's ``inputs`` schema.
- **The artefact**: every ``index:`` source is a file of the index whose sha256 and size
  are the record's.
- **The licence rule** (:func:`licence_findings`), over the *chain* of licences a dataset
  derives from: the model's licence and the licence of every training dataset its record
  lists.

  1. A dataset states its own licence: ``NOASSERTION`` is refused.
  2. A NoDerivatives term (``CC-*-ND-*``) anywhere in the chain refuses the dataset: a
     synthetic dataset is derived from the training data through the model.
  3. A NonCommercial term (``CC-*-NC-*``, ``*Noncommercial*``) anywhere requires a
     NonCommercial dataset licence (every licence of its expression).
  4. A ShareAlike term (``CC-*-SA-*``, ``ODbL``) requires the dataset to carry that same
     licence; two different ShareAlike licences in one chain cannot both be met.
  5. Unknown terms (``NOASSERTION``, a training dataset without a licence, a
     ``LicenseRef-`` the tool cannot read) are refused unless the publisher acknowledges
     them with ``--override-licence REASON``, which the record keeps as
     ``license_override`` (then they are warnings, for the reviewer of the pull request).

  An SPDX expression counts with every licence it names (``A OR B`` with an NC licence
  is NC): the rule errs on the safe side. Software licences of the model's code (MIT,
  Apache-2.0, GPL) put no terms on the data it generates.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .. import dataset_records as dsr
from .. import spdx
from ..errors import ParamError, Problem, RecordError
from ..hashing import hash_path
from ..record_paths import find_record
from ..records import Record, parse_bytes
from ..runner import check_params

#: the model record of ``(id, version)`` in the index being checked, or None
ModelLookup = Callable[[str, str], "Mapping[str, Any] | None"]
#: ``(sha256, size)`` of a file of the index (path relative to the index folder), or None
IndexFileLookup = Callable[[str], "tuple[str, int] | None"]

_OPERATORS = {"AND", "OR", "WITH", "(", ")"}
_TOKEN = re.compile(r"\(|\)|[A-Za-z0-9.+-]+(?::[A-Za-z0-9.+-]+)?")


def licence_ids(expr: str) -> list[str]:
    """The licence ids an SPDX expression names (exceptions after WITH left out)."""
    out: list[str] = []
    after_with = False
    for tok in _TOKEN.findall(expr or ""):
        if tok in _OPERATORS:
            after_with = tok == "WITH"
            continue
        if not after_with:
            out.append(tok[:-1] if tok.endswith("+") else tok)
        after_with = False
    return out


def terms(ident: str) -> set[str]:
    """The data-licence terms of one licence id: ``ND``, ``NC``, ``SA``, or ``unknown``."""
    up = ident.upper()
    if up == spdx.NOASSERTION or up.startswith("LICENSEREF-") or not ident:
        return {"unknown"}
    found: set[str] = set()
    parts = up.split("-")
    if up.startswith("CC-"):
        found |= {t for t in ("ND", "NC", "SA") if t in parts}
    if "NONCOMMERCIAL" in up.replace("-", ""):
        found.add("NC")
    if up.startswith("ODBL"):
        found.add("SA")
    return found


def licence_chain(model: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """``(what, licence)`` of the model and of every training dataset its record lists."""
    chain: list[tuple[str, str | None]] = [(f"the model {model.get('id')}@{model.get('version')}",
                                            model.get("license"))]
    for i, ds in enumerate((model.get("training") or {}).get("datasets") or []):
        if isinstance(ds, Mapping):
            chain.append((f"its training dataset {ds.get('name') or i!s}", ds.get("license")))
    return chain


def licence_findings(dataset_licence: str, model: Mapping[str, Any],
                     override: str | None) -> tuple[list[str], list[str]]:
    """(errors, warnings) of the licence rule (module docstring) for a dataset under
    ``dataset_licence`` made by the model record ``model``."""
    errors: list[str] = []
    warnings: list[str] = []
    mine = licence_ids(dataset_licence)
    if dataset_licence == spdx.NOASSERTION or not mine:
        errors.append("a published dataset states its licence: NOASSERTION is not accepted; give an SPDX id in the "
                      "metadata's \"license\" (the model's licence is the default)")
        return errors, warnings
    share_alike: dict[str, list[str]] = {}
    for what, lic in licence_chain(model):
        if not lic:
            t_all, ids = {"unknown"}, ["(none stated)"]
        else:
            ids = licence_ids(lic)
            t_all = set().union(*(terms(i) for i in ids)) if ids else {"unknown"}
        if "ND" in t_all:
            errors.append(f"{what} is under {lic} (NoDerivatives): it permits no derived dataset")
        if "NC" in t_all and not all("NC" in terms(i) for i in mine):
            errors.append(f"{what} is under {lic} (NonCommercial): the dataset's licence must be NonCommercial too "
                          f"(e.g. CC-BY-NC-4.0), not {dataset_licence}")
        for i in ids:
            if "SA" in terms(i):
                share_alike.setdefault(i, []).append(what)
        if "unknown" in t_all:
            msg = (f"{what} states no licence terms ({lic or 'no licence given'}): whether a derived dataset may "
                   "be published is not known")
            if override:
                warnings.append(f"{msg}; published with the override: {override}")
            else:
                errors.append(f"{msg}; check the terms yourself and publish with --override-licence REASON "
                              "(kept in the record as license_override)")
    if len(share_alike) > 1:
        errors.append(f"the chain holds different ShareAlike licences ({', '.join(sorted(share_alike))}); "
                      "no dataset licence can meet all of them")
    elif share_alike:
        (sa, whats), = share_alike.items()
        if mine != [sa]:
            errors.append(f"{', '.join(whats)} is under {sa} (ShareAlike): the dataset must be under {sa} as well, "
                          f"not {dataset_licence}")
    return errors, warnings


def model_findings(data: Mapping[str, Any], models: ModelLookup) -> list[tuple[str, str]]:
    """``(json path, message)`` for every way the record's model disagrees with the index."""
    model = data.get("model") or {}
    mid, ver = str(model.get("id")), str(model.get("version"))
    rec = models(mid, ver)
    if rec is None:
        return [("$.model", f"model {mid}@{ver} is not in this index: a dataset must come from a model version the "
                            "same index holds (publish the model first, or fix model.id/model.version)")]
    out: list[tuple[str, str]] = []
    art = (rec.get("package") or {}).get("artefact") or {}
    if not art.get("sha256"):
        out.append(("$.model", f"model {mid}@{ver} is unverified in this index (no package sha256): nothing "
                               "can be re-derived from it"))
    elif art.get("sha256") != model.get("sha256"):
        out.append(("$.model.sha256", f"is {model.get('sha256')}, but the index pins {mid}@{ver} to package "
                                      f"{art.get('sha256')}: the dataset was made by another package"))
    if rec.get("status") == "yanked":
        out.append(("$.model", f"model {mid}@{ver} is yanked in this index ({rec.get('status_reason', '')}); "
                               "a dataset of a withdrawn model is not published"))
    fmt = (rec.get("package") or {}).get("format")
    if model.get("package_format") and fmt and model.get("package_format") != fmt:
        out.append(("$.model.package_format", f"is {model.get('package_format')}, the index says {fmt}"))
    gen = data.get("generation") or {}
    names = {str(o.get("name")) for o in rec.get("outputs") or [] if isinstance(o, Mapping)}
    for i, o in enumerate(gen.get("outputs") or []):
        if o not in names:
            out.append((f"$.generation.outputs[{i}]", f"{o!r} is not an output of {mid}@{ver} "
                                                      f"(its outputs: {', '.join(sorted(names))})"))
    try:
        check_params(Record(data=rec, path=f"{mid}@{ver}"), gen.get("params") or {})
    except ParamError as exc:
        out.append(("$.generation.params", exc.message))
    return out


def artefact_findings(data: Mapping[str, Any], index_file: IndexFileLookup) -> list[tuple[str, str]]:
    """``(json path, message)`` for every ``index:`` source that is missing or differs."""
    art = data.get("artefact") or {}
    out: list[tuple[str, str]] = []
    for i, src in enumerate(art.get("sources") or []):
        if not isinstance(src, str) or not src.startswith("index:"):
            continue
        rel = src[len("index:"):]
        found = index_file(rel)
        if found is None:
            out.append((f"$.artefact.sources[{i}]", f"{rel} is not a file of the index; commit the artefact with "
                                                    "the record (synthmed dataset publish --store index does)"))
        elif found != (art.get("sha256"), art.get("size")):
            out.append((f"$.artefact.sources[{i}]", f"{rel} has sha256 {found[0]} and {found[1]} bytes; the record "
                                                    f"says {art.get('sha256')} and {art.get('size')}"))
    return out


def check_dataset(data: Mapping[str, Any], where: str, models: ModelLookup,
                  index_file: IndexFileLookup) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings): every check of a schema-valid dataset record that needs its index."""
    errors = [Problem(where, jp, msg) for jp, msg in model_findings(data, models) + artefact_findings(data, index_file)]
    warnings: list[Problem] = []
    model = data.get("model") or {}
    rec = models(str(model.get("id")), str(model.get("version")))
    if rec is not None:
        errs, warns = licence_findings(str(data.get("license", "")), rec, data.get("license_override"))
        errors += [Problem(where, "$.license", m) for m in errs]
        warnings += [Problem(where, "$.license", m, "warning") for m in warns]
    return errors, warnings


def stray_dataset_paths(paths: Sequence[str]) -> list[str]:
    """The paths (relative to ``datasets/``) that are not ``<id>/<version>.json``."""
    return [p for p in paths if len(p.split("/")) != 2 or not p.endswith(".json")]


def folder_models(index_dir: Path) -> ModelLookup:
    """The model records of an index folder on disk (unparseable ones count as absent:
    ``index validate`` reports them itself)."""
    def lookup(model_id: str, version: str) -> Mapping[str, Any] | None:
        path = find_record(index_dir, model_id, version)
        if path is None:
            return None
        try:
            data = parse_bytes(path.read_bytes(), str(path))
        except (OSError, RecordError):
            return None
        return data if isinstance(data, dict) else None
    return lookup


def folder_files(index_dir: Path) -> IndexFileLookup:
    """(sha256, size) of a file inside an index folder on disk."""
    root = index_dir.resolve()

    def lookup(rel: str) -> tuple[str, int] | None:
        p = (root / rel).resolve()
        if root not in p.parents or not p.is_file():
            return None
        return hash_path(p)
    return lookup


def validate_datasets(path: Path) -> tuple[int, list[Problem], list[Problem]]:
    """(records checked, errors, warnings) of the dataset records of an index folder (every
    ``datasets/*/*.json``, and any stray file under ``datasets/``), or of one dataset record
    file (``<index>/datasets/<id>/<version>.json``), with the checks that need the index."""
    if path.is_file():
        index_dir, files = path.resolve().parents[2], [path]
        strays: list[Path] = []
    else:
        index_dir, files = path, list(dsr.iter_dataset_files(path))
        root = path / dsr.DATASETS_DIR
        listed = set(files)
        strays = [p for p in sorted(root.rglob("*")) if p.is_file() and p not in listed] if root.is_dir() else []
    errors = [Problem(str(p), "$", "only dataset records belong under datasets/, each at "
                                   "datasets/<id>/<version>.json; move or remove this file") for p in strays]
    warnings: list[Problem] = []
    models, index_files = folder_models(index_dir), folder_files(index_dir)
    for f in files:
        try:
            rec = dsr.load_dataset_record(f)
        except RecordError as exc:
            errors.extend(exc.problems)
            continue
        errs, warns = check_dataset(rec.data, str(f), models, index_files)
        errors += errs
        warnings += warns
    return len(files), errors, warnings
