"""Model records (``synthmed-record/1``): loading and validation.

A record lives at ``models/<id>/<version>.json`` inside an index folder (or
``models/<shard>/<id>@<version>.json`` in a sharded index: registry/record_paths.py). Validation
reports every problem of a record, each naming the file, the JSON path and what is wrong.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping

from . import spdx, vocabulary
from .record_paths import MODELS_DIR, duplicate_versions, expected_text, layout_hint, parse_record_relpath, record_files, record_relpath
from .errors import Problem, RecordError
from .schemas_io import json_path, validate_against
from .semver import parse_version

log = logging.getLogger(__name__)

#: fields of a merged version that may change later (docs/design.md, "The record")
MUTABLE_FIELDS = frozenset({"status", "status_reason", "metrics", "publications", "description"})
#: fields that must never change once merged
#: ``array_inputs`` is bound with ``inputs`` (one digest: registry/accepted.py)
IMMUTABLE_FIELDS = ("package", "inputs", "array_inputs", "outputs")


class Versioned:
    """``id``, ``version`` and ``ref`` (``id@version``) of a versioned record held as ``data``:
    model, dataset and extractor records alike."""

    data: Mapping[str, Any]

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def version(self) -> str:
        return str(self.data["version"])

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"


@dataclass(frozen=True)
class Record(Versioned):
    """A validated record and where it came from."""

    data: Mapping[str, Any]
    path: str = "<memory>"
    warnings: tuple[Problem, ...] = field(default=(), compare=False)

    @property
    def status(self) -> str:
        return str(self.data.get("status", "active"))

    @property
    def artefact(self) -> Mapping[str, Any]:
        return self.data["package"]["artefact"]  # type: ignore[no-any-return]

    @property
    def sha256(self) -> str | None:
        return self.artefact.get("sha256")

    @property
    def size(self) -> int | None:
        return self.artefact.get("size")

    @property
    def sources(self) -> list[str]:
        return list(self.artefact.get("sources", []))

    @property
    def verified(self) -> bool:
        """True when the artefact has a pinned sha256 (it may then be executed)."""
        return bool(self.sha256)

    @property
    def package_format(self) -> str:
        return str(self.data["package"]["format"])

    @property
    def entry_point(self) -> str:
        return str(self.data["package"]["entry_point"])

    @property
    def outputs(self) -> list[Mapping[str, Any]]:
        return list(self.data["outputs"])

    @property
    def inputs(self) -> Mapping[str, Any]:
        return self.data.get("inputs", {"type": "object"})  # type: ignore[no-any-return]

    @property
    def array_inputs(self) -> list[Mapping[str, Any]]:
        """The record's array inputs (images, masks, volumes, label maps), [] when none."""
        return list(self.data.get("array_inputs") or [])

    @property
    def test(self) -> Mapping[str, Any]:
        return self.data.get("test", {})  # type: ignore[no-any-return]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def _semantic_checks(data: Mapping[str, Any], where: str, relpath: str | None) -> list[Problem]:
    """Checks beyond the schema. ``data`` has passed the schema's type checks where used."""
    problems: list[Problem] = []

    def bad(jp: str, msg: str) -> None:
        problems.append(Problem(where, jp, msg))

    # path matches id and version
    if relpath is not None and isinstance(data.get("id"), str) and isinstance(data.get("version"), str):
        parts = PurePosixPath(relpath).parts
        if len(parts) < 3 or parse_record_relpath("/".join(parts[-3:])) != (data["id"], data["version"]):
            bad("$.id", f"the file should be at {expected_text(data['id'], data['version'])} for id {data['id']!r} "
                        f"and version {data['version']!r}, not at {relpath}")
    # version is semver (schema has a pattern; this gives a second, parsed opinion)
    if isinstance(data.get("version"), str):
        try:
            parse_version(data["version"])
        except ValueError as exc:
            if not any(p.json_path == "$.version" for p in problems):
                bad("$.version", str(exc))
    # a mask's "segments" names another output of this record (the image a DICOM SEG refers to)
    outs = [o for o in data.get("outputs") or [] if isinstance(o, Mapping)]
    names = {o.get("name") for o in outs}
    for i, o in enumerate(outs):
        target = o.get("segments")
        if isinstance(target, str) and (target not in names or target == o.get("name")):
            bad(f"$.outputs[{i}].segments", f"names no other output of this record: {target!r}")
    # licence
    lic = data.get("license")
    if isinstance(lic, str):
        msg = spdx.check_expression(lic)
        if msg:
            bad("$.license", msg)
    for i, ds in enumerate((data.get("training") or {}).get("datasets") or []):
        if isinstance(ds, dict) and isinstance(ds.get("license"), str):
            msg = spdx.check_expression(ds["license"])
            if msg:
                bad(f"$.training.datasets[{i}].license", msg)
    # inputs is a valid JSON Schema
    inputs = data.get("inputs")
    if isinstance(inputs, dict):
        # imported on first validation: reading stored records (search, show) needs no jsonschema
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(inputs)
        except SchemaError as exc:
            bad(json_path(["inputs", *exc.absolute_path]) if exc.absolute_path else "$.inputs",
                f"is not a valid JSON Schema: {exc.message}")
        else:
            params = (data.get("test") or {}).get("params")
            if isinstance(params, dict):
                for err in Draft202012Validator(inputs).iter_errors(params):
                    bad(json_path(["test", "params", *err.absolute_path]),
                        f"does not match the record's inputs schema: {err.message}")
    # output names unique; shapes agree with dims
    seen: dict[str, int] = {}
    for i, out in enumerate(data.get("outputs") or []):
        if not isinstance(out, dict):
            continue
        name = out.get("name")
        if isinstance(name, str):
            if name in seen:
                bad(f"$.outputs[{i}].name", f"duplicate output name {name!r} (also at $.outputs[{seen[name]}])")
            seen.setdefault(name, i)
        vr = out.get("value_range")
        if isinstance(vr, list) and len(vr) == 2 and all(isinstance(v, (int, float)) for v in vr) and vr[0] > vr[1]:
            bad(f"$.outputs[{i}].value_range", f"minimum {vr[0]} is above maximum {vr[1]}")
        sp = out.get("spacing_mm")
        if isinstance(sp, list) and out.get("dims") in (2, 3) and len(sp) != out["dims"]:
            bad(f"$.outputs[{i}].spacing_mm", f"has {len(sp)} values but the output has {out['dims']} dims")
    problems += _array_input_checks(data, where)
    # index: sources stay inside the index
    art = ((data.get("package") or {}).get("artefact") or {})
    for i, src in enumerate(art.get("sources") or []):
        if isinstance(src, str) and src.startswith("index:"):
            p = PurePosixPath(src[len("index:"):])
            if p.is_absolute() or ".." in p.parts:
                bad(f"$.package.artefact.sources[{i}]", f"{src!r} leaves the index folder; use a path inside it")
    # metric names unique per (name, source)
    mseen: set[tuple[str, str]] = set()
    for i, m in enumerate(data.get("metrics") or []):
        if isinstance(m, dict) and isinstance(m.get("name"), str):
            key = (m["name"], str(m.get("source")))
            if key in mseen:
                bad(f"$.metrics[{i}].name", f"metric {m['name']!r} ({m.get('source')}) is listed twice")
            mseen.add(key)
    return problems


def _array_input_checks(data: Mapping[str, Any], where: str) -> list[Problem]:
    """``array_inputs``: unique names that no parameter of ``inputs`` shares, shapes that
    agree with ``dims``, ``medigan_arg`` only for medigan-1 packages, none on a pipeline."""
    problems: list[Problem] = []
    items = [a for a in data.get("array_inputs") or [] if isinstance(a, dict)]
    fmt = (data.get("package") or {}).get("format")
    props = (data.get("inputs") or {}).get("properties") or {}
    seen: dict[str, int] = {}
    for i, a in enumerate(items):
        jp = f"$.array_inputs[{i}]"
        name = a.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(Problem(where, f"{jp}.name", f"duplicate input name {name!r} (also at "
                                                             f"$.array_inputs[{seen[name]}])"))
            seen.setdefault(name, i)
            if isinstance(props, dict) and name in props:
                problems.append(Problem(where, f"{jp}.name", f"{name!r} is also a parameter in $.inputs; an array "
                                                             "input and a parameter need different names"))
        dims = a.get("dims")
        for key in ("shape", "shape_max", "spacing_mm"):
            v = a.get(key)
            if isinstance(v, list) and dims in (2, 3) and len(v) != dims:
                problems.append(Problem(where, f"{jp}.{key}", f"has {len(v)} values but the input has {dims} dims"))
        lo, hi = a.get("shape"), a.get("shape_max")
        if isinstance(lo, list) and isinstance(hi, list) and len(lo) == len(hi) and any(
                isinstance(x, int) and isinstance(y, int) and y < x for x, y in zip(lo, hi)):
            problems.append(Problem(where, f"{jp}.shape_max", f"{hi} is below shape {lo} on some axis"))
        vr = a.get("value_range")
        if isinstance(vr, list) and len(vr) == 2 and all(isinstance(v, (int, float)) for v in vr) and vr[0] > vr[1]:
            problems.append(Problem(where, f"{jp}.value_range", f"minimum {vr[0]} is above maximum {vr[1]}"))
        if "medigan_arg" in a and fmt != "medigan-1":
            problems.append(Problem(where, f"{jp}.medigan_arg", "only a medigan-1 package takes folders by argument"))
        test = a.get("test")
        if isinstance(test, str) and ".." in PurePosixPath(test).parts:
            problems.append(Problem(where, f"{jp}.test", f"{test!r} leaves the package; use a folder inside it"))
    if items and fmt == "synthmed-pipeline-1":
        problems.append(Problem(where, "$.array_inputs", "a synthmed-pipeline-1 record takes no array inputs of its "
                                                         "own (its stages are wired to each other)"))
    return problems


def _warnings(data: Mapping[str, Any], where: str) -> list[Problem]:
    out: list[Problem] = []
    art = ((data.get("package") or {}).get("artefact") or {})
    if isinstance(art, dict) and not art.get("sha256"):
        out.append(Problem(where, "$.package.artefact.sha256",
                           "unverified: no pinned sha256, so the model is searchable but never executed "
                           f"(run `synthmed index pin {data.get('id')}@{data.get('version')}`)", "warning"))
    return out + vocabulary.record_warnings(data, where)


def validate_data(data: Any, where: str = "<memory>", relpath: str | None = None) -> tuple[list[Problem], list[Problem]]:
    """All (errors, warnings) of one record's data."""
    if not isinstance(data, dict):
        return [Problem(where, "$", f"a record must be a JSON object, not {type(data).__name__}")], []
    errors = validate_against("record", data, where)
    errors += _semantic_checks(data, where, relpath)
    return errors, _warnings(data, where)


#: the largest record file read, in bytes (a record is a few KiB; this bounds memory and time)
MAX_RECORD_BYTES = 1 << 20
#: the deepest nesting of arrays and objects in a record (json.loads and the validators
#: recurse once per level; Python's recursion limit is about 1000 frames)
MAX_RECORD_DEPTH = 64
#: the most digits an integer in a record may have (Python refuses more than 4300 with a
#: ValueError; no field needs more than a 64-bit size)
MAX_INT_DIGITS = 40

#: a JSON string (an unterminated one runs to the end, so the scan stays linear) or a bracket
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.S)
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Refused(ValueError):
    """A JSON text that parses but that a record may not hold."""


def json_depth_exceeds(text: str, limit: int) -> bool:
    """True when brackets outside strings nest deeper than ``limit``: a linear scan that
    does not recurse, run before ``json.loads`` (which recurses once per level)."""
    depth = 0
    for m in _JSON_TOKEN.finditer(text):
        c = m.group()
        if c == "[" or c == "{":
            depth += 1
            if depth > limit:
                return True
        elif c == "]" or c == "}":
            depth -= 1
    return False


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"the key {key!r} appears twice in one object (ambiguous: readers differ on which wins)")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number (NaN and Infinity are not allowed)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} is out of range")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _lone_surrogate(data: Any) -> bool:
    """True when a key or string holds an unpaired UTF-16 surrogate (``"\\ud800"``), which
    cannot be stored as UTF-8. Iterative: the depth is already bounded, but no recursion."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_text(text: str, where: str) -> Any:
    """Parse a record's JSON text, refusing what a record may not hold: more than
    :data:`MAX_RECORD_BYTES`, nesting deeper than :data:`MAX_RECORD_DEPTH`, a byte order
    mark, a key twice in one object, NaN or Infinity (or a number that overflows to it),
    huge integers, unpaired surrogates. Raises RecordError naming ``where``; never
    RecursionError or another exception."""
    def refuse(message: str, hint: str | None = None) -> RecordError:
        return RecordError([Problem(where, "$", message)], hint=hint)

    if len(text) > MAX_RECORD_BYTES:  # characters; a UTF-8 byte count is checked by parse_bytes
        raise refuse(f"the record is too large ({len(text)} characters; at most {MAX_RECORD_BYTES} bytes)")
    if text.startswith("\ufeff"):
        raise refuse("the file starts with a byte order mark (BOM)", hint="save the record as UTF-8 without a BOM")
    if json_depth_exceeds(text, MAX_RECORD_DEPTH):
        raise refuse(f"arrays and objects nest deeper than {MAX_RECORD_DEPTH} levels")
    try:
        data = json.loads(text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_float,
                          parse_int=_int)
    except json.JSONDecodeError as exc:
        raise RecordError([Problem(where, "$", f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")],
                          hint="fix the JSON syntax (a trailing comma or a missing quote is the usual cause)") from exc
    except _Refused as exc:
        raise refuse(f"not acceptable JSON: {exc}") from None
    except (RecursionError, ValueError, MemoryError) as exc:  # the depth scan should make these unreachable
        raise refuse(f"cannot be parsed: {type(exc).__name__}: {str(exc)[:200]}") from None
    if _lone_surrogate(data):
        raise refuse("a string holds an unpaired surrogate escape (\\ud800-\\udfff), which is not text")
    return data


def parse_bytes(data: bytes, where: str) -> Any:
    """:func:`parse_text` for a record file's bytes: at most :data:`MAX_RECORD_BYTES`, UTF-8."""
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError([Problem(where, "$", f"the record is too large ({len(data)} bytes; at most "
                                               f"{MAX_RECORD_BYTES})")])
    if data.startswith(b"\xef\xbb\xbf"):
        raise RecordError([Problem(where, "$", "the file starts with a byte order mark (BOM)")],
                          hint="save the record as UTF-8 without a BOM")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError([Problem(where, "$", f"not UTF-8 text: {exc}")]) from None
    return parse_text(text, where)


def load_record_text(text: str, where: str, relpath: str | None = None) -> Record:
    """Parse and validate one record; raise RecordError listing every problem."""
    return _validated(parse_text(text, where), where, relpath)


def load_record_bytes(data: bytes, where: str, relpath: str | None = None) -> Record:
    """:func:`load_record_text` for a record file's bytes (size-bounded, UTF-8)."""
    return _validated(parse_bytes(data, where), where, relpath)


def _validated(data: Any, where: str, relpath: str | None) -> Record:
    try:
        errors, warnings = validate_data(data, where, relpath)
    except RecursionError:  # pragma: no cover - the depth bound keeps the validators well inside the limit
        raise RecordError([Problem(where, "$", "too deeply nested to validate")]) from None
    if errors:
        raise RecordError(errors)
    return Record(data=data, path=where, warnings=tuple(warnings))


def relpath_in_index(path: Path) -> str | None:
    """``.../models/<id>/<v>.json`` -> ``models/<id>/<v>.json`` (a sharded path likewise: the
    last three parts); None when the path is shorter."""
    parts = path.parts
    if len(parts) >= 3 and parts[-3] == MODELS_DIR:
        return "/".join(parts[-3:])
    if len(parts) >= 3:
        return "/".join(parts[-3:])
    return None


def load_record(path: Path | str) -> Record:
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_RECORD_BYTES + 1)  # never more than the bound, whatever the file's size
    except FileNotFoundError:
        raise RecordError([Problem(str(p), "$", "file not found")],
                          hint=f"check the path; {layout_hint()}") from None
    return load_record_bytes(data, str(p), relpath_in_index(p.resolve()))


def iter_record_files(index_dir: Path) -> Iterator[Path]:
    yield from record_files(index_dir)


@dataclass
class ValidationReport:
    checked: int = 0
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "errors": [p.as_dict() for p in self.errors],
            "warnings": [p.as_dict() for p in self.warnings],
            "unverified": self.unverified,
        }


def validate_path(path: Path) -> ValidationReport:
    """Validate one record file or every record of an index folder."""
    report = ValidationReport()
    if path.is_dir():
        files = list(iter_record_files(path))
        if not files:
            # a folder without records is an error even when it holds other JSON files:
            # a wrong path must not pass as "OK: 0 record(s) checked"
            report.errors.append(Problem(str(path), "$", f"no records found under {path / MODELS_DIR}/ ({layout_hint()}; "
                                         "give the index folder that holds models/, or one record file)"))
        # files that look like records but are misplaced
        models = path / MODELS_DIR
        if models.is_dir():
            for extra in sorted(models.rglob("*")):
                if extra.is_file() and extra not in files and extra.suffix == ".json":
                    report.errors.append(Problem(str(extra), "$", f"a record must be at models/<id>/<version>.json "
                                                                  "or, sharded, models/<shard>/<id>@<version>.json"))
        for (model_id, version), rels in duplicate_versions(f.relative_to(path).as_posix() for f in files):
            report.errors.append(Problem(str(path / rels[-1]), "$", (
                f"{model_id}@{version} is also at {rels[0]}: an index holds each version once "
                "(keep one file, in the index's layout)")))
    elif path.exists():
        files = [path]
    else:
        report.errors.append(Problem(str(path), "$", "no such file or folder"))
        return report
    for f in files:
        report.checked += 1
        try:
            rec = load_record(f)
        except RecordError as exc:
            report.errors.extend(exc.problems)
            continue
        report.warnings.extend(rec.warnings)
        if not rec.verified:
            report.unverified.append(rec.ref)
    return report


_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{2,63}", re.ASCII)


def is_valid_id(value: str) -> bool:
    return bool(_ID_RE.fullmatch(value))
