"""The record part of ``synthmed show``: its parameters and outputs as indented tables."""

from __future__ import annotations

import json
from typing import Any

from .common import print_table


def _schema_type(spec: dict[str, Any]) -> str:
    t = spec.get("type")
    if isinstance(t, list):
        return "|".join(str(x) for x in t)
    if t:
        return str(t) + (f" of {spec['items'].get('type')}" if t == "array" and isinstance(spec.get("items"), dict)
                         and spec["items"].get("type") else "")
    if "enum" in spec:
        return "enum"
    if "anyOf" in spec or "oneOf" in spec:
        return "|".join(_schema_type(s) for s in spec.get("anyOf") or spec.get("oneOf") or [] if isinstance(s, dict))
    return "any"


def _allowed(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return ", ".join(json.dumps(v) for v in spec["enum"])
    if "const" in spec:
        return json.dumps(spec["const"])
    lo = spec.get("minimum", spec.get("exclusiveMinimum"))
    hi = spec.get("maximum", spec.get("exclusiveMaximum"))
    if lo is not None or hi is not None:
        left = "(" if "exclusiveMinimum" in spec else "["
        right = ")" if "exclusiveMaximum" in spec else "]"
        return f"{left}{'' if lo is None else lo}..{'' if hi is None else hi}{right}"
    if "pattern" in spec:
        return f"/{spec['pattern']}/"
    return ""


def parameter_rows(inputs: dict[str, Any]) -> list[dict[str, str]]:
    """One row per parameter of a record's ``inputs`` schema: name, type, default, allowed, description."""
    required = set(inputs.get("required") or [])
    rows = []
    for name, spec in (inputs.get("properties") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        default = json.dumps(spec["default"]) if "default" in spec else ("(required)" if name in required else "-")
        desc = " ".join(str(spec.get("description", "")).split())
        rows.append({"name": name, "type": _schema_type(spec), "default": default, "allowed": _allowed(spec) or "-",
                     "description": desc[:60] + ("..." if len(desc) > 60 else "")})
    return rows


def output_rows(outputs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One row per output: name, kind, shape (with channels), dtype, value range, spacing."""
    rows = []
    for o in outputs:
        shape = "x".join(str(d) for d in o.get("shape") or []) or "?"
        ch = o.get("channels")
        if ch and ch > 1:
            shape += f" ({ch} ch)"
        vr = o.get("value_range")
        rows.append({"name": str(o.get("name")), "kind": str(o.get("kind") or "-"), "dims": f"{o.get('dims', '?')}D",
                     "shape": shape, "dtype": str(o.get("dtype", "?")),
                     "range": f"{vr[0]}..{vr[1]}" if isinstance(vr, list) and len(vr) == 2 else "-",
                     "spacing_mm": "x".join(str(x) for x in o["spacing_mm"]) if o.get("spacing_mm") else "-"})
    return rows


def indented_table(rows: list[dict[str, str]], columns: list[str]) -> None:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print_table(rows, columns)
    for line in buf.getvalue().splitlines():
        print("  " + line)
