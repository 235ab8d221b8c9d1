"""Generation parameters: checked against the record's ``inputs`` schema before any
model code runs, defaults filled in, and CLI text coerced to the schema's types."""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Iterator, Mapping

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from ..errors import ParamError
from ..records import Record

log = logging.getLogger(__name__)

_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "string": "a string",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def _properties(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    props = schema.get("properties")
    return props if isinstance(props, Mapping) else {}


def _extra_allowed(schema: Mapping[str, Any]) -> bool:
    """Unknown keys are refused unless the schema explicitly allows them.

    A typo in a keyword argument that is silently ignored gives wrong data without a
    word, so a schema that lists properties and says nothing about others is read as
    closed; ``additionalProperties: true`` (or a sub-schema) opens it."""
    extra = schema.get("additionalProperties")
    if extra is None:
        return not _properties(schema) and "patternProperties" not in schema
    return extra is not False


def describe_allowed(prop: Mapping[str, Any]) -> str:
    """Plain words for what one property accepts."""
    if "enum" in prop:
        return "one of " + ", ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return f"exactly {json.dumps(prop['const'])}"
    t = prop.get("type")
    types = t if isinstance(t, list) else [t] if t else []
    words = " or ".join(_TYPE_WORDS.get(str(x), str(x)) for x in types) or "any value"
    bounds = []
    for key, word in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in prop:
            bounds.append(f"{word} {prop[key]}")
    if bounds:
        words += " " + " and ".join(bounds)
    return words


def describe_inputs(schema: Mapping[str, Any]) -> str:
    props = _properties(schema)
    if not props:
        return "this model takes no parameters"
    parts = []
    for name, prop in props.items():
        p = prop if isinstance(prop, Mapping) else {}
        default = f", default {json.dumps(p['default'])}" if "default" in p else ""
        parts.append(f"{name} ({describe_allowed(p)}{default})")
    return "allowed: " + "; ".join(parts)


def _hint(ref: str) -> str:
    return f"see the record's inputs: `synthmed show {ref}`"


def _non_finite(value: Any) -> bool:
    """NaN or infinity anywhere in a value (JSON has neither; NaN passes every bound check)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    if isinstance(value, Mapping):
        return any(_non_finite(v) for v in value.values())
    return False


def _fill_defaults(schema: Mapping[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    for name, prop in _properties(schema).items():
        if name not in out and isinstance(prop, Mapping) and "default" in prop:
            out[name] = prop["default"]
    return out


def _message(err: ValidationError, ref: str, schema: Mapping[str, Any]) -> str:
    path = list(err.absolute_path)
    name = str(path[0]) if path else None
    props = _properties(schema)
    if name is not None:
        prop = props.get(name, {}) if isinstance(props.get(name), Mapping) else {}
        where = name + "".join(f"[{p!r}]" for p in path[1:])
        return (f"{ref}: parameter {where!r} = {json.dumps(err.instance, default=str)} is not allowed: "
                f"must be {describe_allowed(prop) if len(path) == 1 else err.message}")
    if err.validator == "required":
        return f"{ref}: a required parameter is missing: {err.message}; {describe_inputs(schema)}"
    return f"{ref}: parameters do not match the model's inputs: {err.message}; {describe_inputs(schema)}"


def validate_params(record: Record, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the parameters with the schema's defaults filled in, or raise ParamError
    naming the parameter and what is allowed. Runs no model code."""
    schema = record.inputs
    given = dict(params or {})
    ref = record.ref
    props = _properties(schema)
    if not _extra_allowed(schema):
        unknown = sorted(k for k in given if k not in props)
        if unknown:
            raise ParamError(
                f"{ref}: unknown parameter(s) {', '.join(repr(u) for u in unknown)}; {describe_inputs(schema)}",
                hint=_hint(ref),
                model=ref, parameter=unknown[0],
            )
    for key, value in given.items():
        if _non_finite(value):
            raise ParamError(f"{ref}: parameter {key!r} = {value!r} is not allowed: NaN and infinity are not numbers "
                             f"a model can take", hint=_hint(ref), model=ref, parameter=key)
    filled = _fill_defaults(schema, given)
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: (len(e.absolute_path) == 0, list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        param = str(err.absolute_path[0]) if err.absolute_path else None
        raise ParamError(_message(err, ref, schema), hint=_hint(ref),
                         model=ref, parameter=param)
    return filled


class CheckedParams(Mapping[str, Any]):
    """Parameters that passed one record's ``inputs`` schema, defaults filled in. Made only
    by :func:`check_params`; the runner takes them without checking again, and refuses
    parameters checked for another record."""

    __slots__ = ("_values", "record_key")

    def __init__(self, values: Mapping[str, Any], record_key: str) -> None:
        self._values = dict(values)
        self.record_key = record_key

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"CheckedParams({self._values!r}, for {self.record_key})"

    def __reduce__(self) -> Any:
        return (CheckedParams, (self._values, self.record_key))


def record_key(record: Record) -> str:
    """What CheckedParams remember of the record they were checked against."""
    return f"{record.ref}#{record.sha256 or ''}"


def check_params(record: Record, params: Mapping[str, Any] | None) -> CheckedParams:
    """The one public way parameters are checked: :func:`validate_params` once, wrapped so
    that nothing downstream checks them again. Already-checked parameters of the same
    record are returned as they are."""
    if isinstance(params, CheckedParams):
        if params.record_key != record_key(record):
            raise ParamError(f"{record.ref}: these parameters were checked for {params.record_key.split('#')[0]}, "
                             "not for this model", hint=_hint(record.ref), model=record.ref)
        return params
    return CheckedParams(validate_params(record, params), record_key(record))


def _coerce_scalar(text: str, typ: str) -> Any:
    if typ == "integer":
        return int(text)
    if typ == "number":
        v = float(text)
        return int(v) if v.is_integer() and "." not in text and "e" not in text.lower() else v
    if typ == "boolean":
        low = text.strip().lower()
        if low in {"true", "1", "yes", "on"}:
            return True
        if low in {"false", "0", "no", "off"}:
            return False
        raise ValueError(text)
    if typ == "null":
        if text.strip().lower() in {"null", "none", ""}:
            return None
        raise ValueError(text)
    if typ in {"array", "object"}:
        value = json.loads(text)
        if (typ == "array") != isinstance(value, list):
            raise ValueError(text)
        return value
    return text


def coerce_param(record: Record, key: str, text: str) -> Any:
    """Turn the text of ``--param KEY=VALUE`` into the type the inputs schema asks for."""
    schema = record.inputs
    props = _properties(schema)
    prop = props.get(key)
    if prop is None:
        if not _extra_allowed(schema):
            raise ParamError(f"{record.ref}: unknown parameter {key!r}; {describe_inputs(schema)}",
                             hint=_hint(record.ref), model=record.ref, parameter=key)
        try:
            return json.loads(text)
        except ValueError:
            return text
    if "enum" in prop:
        for value in prop["enum"]:
            if isinstance(value, str) and value == text:
                return value
        for value in prop["enum"]:
            if not isinstance(value, str) and json.dumps(value) == text.strip():
                return value
        for value in prop["enum"]:
            if not isinstance(value, (str, bool)) and isinstance(value, (int, float)):
                try:
                    if float(text) == value:
                        return value
                except ValueError:
                    pass
        raise ParamError(f"{record.ref}: parameter {key!r} = {text!r} is not allowed: must be {describe_allowed(prop)}",
                         hint=_hint(record.ref), model=record.ref, parameter=key)
    t = prop.get("type")
    types = t if isinstance(t, list) else [t] if t else []
    for typ in types:
        try:
            return _coerce_scalar(text, str(typ))
        except (ValueError, TypeError):
            continue
    if types:
        raise ParamError(f"{record.ref}: parameter {key!r} = {text!r} is not allowed: must be {describe_allowed(prop)}",
                         hint=_hint(record.ref), model=record.ref, parameter=key)
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_param_args(record: Record, items: list[str] | None) -> dict[str, Any]:
    """``["label=benign", "steps=10"]`` -> ``{"label": "benign", "steps": 10}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ParamError(f"--param {item!r}: expected KEY=VALUE", hint=describe_inputs(record.inputs))
        key, _, text = item.partition("=")
        out[key.strip()] = coerce_param(record, key.strip(), text)
    return out
