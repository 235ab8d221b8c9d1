"""Load the JSON Schemas shipped in ``synthmed.schemas`` and turn validation errors into
:class:`Problem` objects that name the file and the JSON path in plain words.

:func:`validate_remembered` validates a file once per content: a file whose exact bytes
already passed the same schema (a memo file holds the digest of both) is not validated
again, so a command that reads ``site.toml`` does not import jsonschema on every start."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from . import atomic
from .errors import Problem

if TYPE_CHECKING:  # pragma: no cover
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SCHEMA_FILES = {
    "record": "record.schema.json",
    "site": "site.schema.json",
    "report": "test-report.schema.json",
    "extractor": "extractor.schema.json",
    "dataset": "dataset.schema.json",
}


log = logging.getLogger(__name__)

#: the first line of a memo file (:func:`validate_remembered`); a memo of another format is ignored
MEMO_FORMAT = "synthmed-validated/1"


@lru_cache(maxsize=None)
def schema_bytes(name: str) -> bytes:
    """The bytes of a shipped schema file, as they are on disk."""
    return resources.files("synthmed.schemas").joinpath(SCHEMA_FILES[name]).read_bytes()


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_bytes(name).decode("utf-8"))
    return schema


@lru_cache(maxsize=256)
def ecma_pattern(pattern: str) -> re.Pattern[str]:
    """A JSON Schema ``pattern`` (ECMA-262) compiled with the meaning it has there, not
    Python's: ``\\d`` and ``\\w`` are ASCII only (Python's match any Unicode digit, so
    ``1.0.\\u0661`` would pass a version pattern), and a final ``$`` is the end of the text
    (Python's ``$`` also matches before a trailing newline, so ``"mass-gan\\n"`` would pass
    an id pattern)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern, re.ASCII)


@lru_cache(maxsize=None)
def strict_validator_class() -> Any:
    """Draft 2020-12 with ``pattern`` read as ECMA-262 (see :func:`ecma_pattern`); used for
    the schemas shipped with synthmed, whose patterns are all anchored and linear. Built on
    first use: jsonschema is imported on first validation."""
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import ValidationError

    def ecma_pattern_keyword(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterable[ValidationError]:
        if validator.is_type(instance, "string") and not ecma_pattern(pattern).search(instance):
            yield ValidationError(f"{instance!r} does not match {pattern!r}")

    return validators.extend(Draft202012Validator, {"pattern": ecma_pattern_keyword})


@lru_cache(maxsize=None)
def validator(name: str) -> "Draft202012Validator":
    # jsonschema is imported on first validation: settings import this module, and
    # `synthmed --help` should not pay for jsonschema
    from jsonschema import Draft202012Validator

    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    v: Draft202012Validator = strict_validator_class()(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return v


def json_path(parts: Iterable[Any]) -> str:
    """``['package', 'sources', 0]`` -> ``$.package.sources[0]``."""
    out = "$"
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, str) and p.replace("_", "a").replace("-", "a").isalnum():
            out += f".{p}"
        else:
            out += f"[{json.dumps(p)}]"
    return out


def _plain(err: "ValidationError") -> str:
    """A plain-words message for one schema error."""
    v = err.validator
    inst = err.instance
    shown = (repr(inst) if isinstance(inst, str) else json.dumps(inst))[:80] if not isinstance(inst, (dict, list)) else type(inst).__name__
    custom = err.schema.get("x-message") if isinstance(err.schema, dict) else None
    if custom and v in {"pattern", "format", "enum", "const"}:
        return f"{shown} {custom}"
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return f"missing required field {missing!r}"
    if v == "additionalProperties":
        return f"unknown field(s): {err.message.split('(')[-1].rstrip(')')}"
    if v == "enum":
        allowed = ", ".join(json.dumps(x) for x in err.validator_value)
        return f"{shown} is not one of the allowed values: {allowed}"
    if v == "type":
        return f"{shown} should be of type {err.validator_value}"
    if v == "pattern":
        return f"{shown} does not match the pattern {err.validator_value}"
    if v == "minItems":
        return f"needs at least {err.validator_value} item(s)"
    if v == "uniqueItems":
        return "items must be unique"
    return err.message


def _leaf_errors(err: "ValidationError") -> list["ValidationError"]:
    """For oneOf/anyOf, descend to the most specific sub-errors."""
    if err.validator in {"oneOf", "anyOf"} and err.context:
        best = min(err.context, key=lambda e: (len(e.absolute_path) * -1, e.validator == "type"))
        deeper = [e for e in err.context if len(e.absolute_path) > len(err.absolute_path)]
        return _leaf_errors(best) if not deeper else [d for e in deeper for d in _leaf_errors(e)][:3]
    return [err]


def validate_against(name: str, data: Any, where: str) -> list[Problem]:
    """Every schema error of ``data``, as Problems located in file ``where``."""
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for err in sorted(validator(name).iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        for leaf in _leaf_errors(err):
            key = (json_path(leaf.absolute_path), _plain(leaf))
            if key not in seen:
                seen.add(key)
                problems.append(Problem(where, key[0], key[1]))
    return problems


def _memo_key(name: str, raw: bytes) -> str:
    """sha256 over the schema's bytes and the file's bytes: a new schema (another synthmed)
    or any change to the file gives another key."""
    h = hashlib.sha256(MEMO_FORMAT.encode())
    for part in (name.encode(), schema_bytes(name), raw):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def validate_remembered(name: str, data: Any, raw: bytes, where: str, memo: Path, *,
                        record: bool = True) -> list[Problem]:
    """:func:`validate_against` for ``data`` parsed from the bytes ``raw``, skipped when
    ``memo`` records that these exact bytes passed this exact schema. A passing validation
    is recorded in ``memo`` when ``record`` (atomically; a folder that cannot be written just
    validates every time); a failing one never is, so its errors are reported on every read.
    Everything but the schema (the checks the caller makes next) still runs."""
    try:
        key = _memo_key(name, raw)
    except OSError:  # pragma: no cover - the installed schema cannot be read: validating says so
        return validate_against(name, data, where)
    try:
        with open(memo, "rb") as fh:
            if fh.read(200).decode("ascii", "replace").split() == [MEMO_FORMAT, key]:
                return []
    except OSError:  # no memo yet (or an unreadable one): validate
        pass
    problems = validate_against(name, data, where)
    if record and not problems:
        try:
            atomic.write_text(memo, f"{MEMO_FORMAT}\n{key}\n", parents=True)
        except OSError as exc:
            log.debug("%s: not remembered as validated in %s: %s", where, memo, exc)
    return problems
