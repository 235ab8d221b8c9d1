"""The one place that redacts credentials from what synthmed shows or stores.

A URL may carry a secret in two places: the password of its userinfo
(``https://NAME:TOKEN@host/...``, the form a downstream site uses for a serving site's
token) and a query parameter that names a token (``?access_token=...``). Every printer,
logger, page, JSON output and catalogue write passes URLs (or whole messages that may hold
URLs) through here; only the transports themselves see the real URL.

- :func:`redact_url`: one URL (also wrapped forms such as ``mirror:https://...`` and
  ``dvc:...``), the password replaced by ``***``.
- :func:`redact_text`: every URL inside free text (a git error, a reason, a log line).
- :func:`redact_data`: every string inside plain JSON-like data (dicts, lists, tuples).

None of them raises; a value without credentials is returned unchanged.
"""

from __future__ import annotations

import re
from typing import Any

#: what stands in for a secret
MASK = "***"

#: query parameters whose value is a secret (compared case-insensitively)
SECRET_PARAMS = ("token", "access_token", "private_token", "api_key", "apikey", "password", "secret",
                 "auth", "sig", "signature")

# scheme://userinfo@ where the userinfo holds a ':' (user:password); the userinfo ends at the
# last '@' before the path
_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:\s?#]*):(?P<pw>[^/\s?#]*)@")
_PARAM_RE = re.compile(r"(?P<key>[?&;](?:" + "|".join(SECRET_PARAMS) + r"))=(?P<value>[^&#\s]*)", re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` with the password of every URL's userinfo and every token query parameter
    replaced by ``***`` (wherever in the text the URL stands)."""
    if not isinstance(text, str) or ("@" not in text and "=" not in text):
        return text
    out = _USERINFO_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _PARAM_RE.sub(lambda m: f"{m['key']}={MASK}" if m["value"] else m[0], out)


def redact_url(url: str) -> str:
    """One URL (or a source URI wrapping one) without its password or token parameters."""
    return redact_text(url)


def redact_data(value: Any) -> Any:
    """A copy of plain data (dicts, lists, tuples, strings) with every string redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_data(v) for v in value)
    return value
