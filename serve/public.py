"""What a served page may show, and to whom.

- **Who may read what** (:func:`needs_token`): without a token file everything is open (the
  server binds to 127.0.0.1 by default). With one, every URL needs the token, except the
  catalogue pages when the admin passes ``--public-catalogue`` (search, model pages, test
  reports and their files, dataset pages and their thumbnails); ``/status``, ``/health``, ``/store`` and ``/git`` always need it.
- **What a page shows** (:func:`public_text`, the templates' ``finalize``): no credentials
  (:mod:`synthmed.registry.redact`) and no absolute paths of the machine (a model's
  traceback names files under the site's ``packages/``; only the file name is kept).
"""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup

from synthmed.registry.redact import redact_text

#: the endpoints an anonymous reader may see with ``--public-catalogue``
CATALOGUE_ENDPOINTS = frozenset({"search", "model", "report", "grid", "report_file", "dataset", "dataset_item"})

# an absolute path: a '/' not preceded by a word character, '.', ':', '/', '~' or '-' (so URLs
# and relative paths are left alone), then one or more folders; the last part is kept
_ABS_DIRS_RE = re.compile(r"(?<![\w.:/~-])/(?:[^\s/\\'\"<>:()\[\],;]+/)+")


def needs_token(endpoint: str, *, has_token: bool, public_catalogue: bool) -> bool:
    """Whether ``endpoint`` may only be read with the site's token."""
    if not has_token:
        return False
    return not (public_catalogue and endpoint in CATALOGUE_ENDPOINTS)


def strip_paths(text: str) -> str:
    """``text`` with every absolute path cut to ``…/`` and its last part."""
    return _ABS_DIRS_RE.sub("…/", text)


def public_text(value: Any) -> Any:
    """A value as a public page may print it: strings redacted and without absolute paths."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return strip_paths(redact_text(value))
    return value
