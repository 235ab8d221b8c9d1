"""SPDX licence identifiers, from the list shipped in ``registry/data`` (no network)."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

NOASSERTION = "NOASSERTION"
_TOKEN = re.compile(r"\(|\)|[A-Za-z0-9.+-]+(?::[A-Za-z0-9.+-]+)?")


@lru_cache(maxsize=1)
def licenses() -> dict[str, bool]:
    """``{id: deprecated}`` for every SPDX licence id."""
    text = resources.files("synthmed.registry").joinpath("data/spdx-licenses.txt").read_text("utf-8")
    out: dict[str, bool] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            ident, dep = line.split("\t")
            out[ident] = dep == "1"
    return out


@lru_cache(maxsize=1)
def _lower_map() -> dict[str, str]:
    return {k.lower(): k for k in licenses()}


def canonical(ident: str) -> str | None:
    """The SPDX id spelled as in the list, matched case-insensitively; None if unknown."""
    return _lower_map().get(ident.strip().lower())


def check_expression(expr: str) -> str | None:
    """None when ``expr`` is NOASSERTION or a valid SPDX expression, else the reason."""
    if expr == NOASSERTION:
        return None
    tokens = _TOKEN.findall(expr)
    if "".join(tokens) != expr.replace(" ", ""):
        return f"{expr!r} is not an SPDX licence expression; use an SPDX id such as MIT, or NOASSERTION"
    expect_id = True
    after_with = False
    depth = 0
    for tok in tokens:
        if tok == "(":
            depth += 1
            continue
        if tok == ")":
            depth -= 1
            if depth < 0:
                return f"{expr!r} has unbalanced parentheses"
            continue
        if expect_id and after_with:
            if "exception" not in tok.lower() and not tok.startswith(("LicenseRef-", "AdditionRef-")):
                return f"{expr!r}: {tok!r} after WITH is not an SPDX licence exception"
            expect_id = after_with = False
            continue
        if expect_id:
            ident = tok[:-1] if tok.endswith("+") else tok
            if ident.startswith("LicenseRef-"):
                pass
            elif ident not in licenses():
                suggestion = canonical(ident)
                hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
                return (f"{ident!r} is not an SPDX licence id{hint}; use an id from https://spdx.org/licenses/ "
                        "or NOASSERTION")
            expect_id = False
        else:
            if tok not in {"AND", "OR", "WITH"}:
                return f"{expr!r}: expected AND, OR or WITH before {tok!r}"
            expect_id = True
            after_with = tok == "WITH"
    if expect_id or depth != 0:
        return f"{expr!r} is an incomplete SPDX expression"
    return None
