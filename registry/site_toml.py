"""Reading ``site.toml``: TOML parsed, then validated against the site schema (once per
content where the site keeps a memo of the last bytes that passed). :mod:`.settings` turns
the result into typed settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .schemas_io import validate_against, validate_remembered

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def read_site_toml(path: Path, memo: Path | None = None) -> dict[str, Any]:
    """Parse and schema-validate a site.toml; a clear error on any problem. With ``memo``
    (a site's :data:`SITE_FILE_MEMO`), bytes that already passed the schema are not validated
    again (:func:`~.schemas_io.validate_remembered`). Only the owner of the site folder records
    a validation there: another user (root running ``synthmed status``, say) never leaves a
    file or a ``cache/`` folder of theirs in the site."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: not valid TOML: {exc}", hint="fix the syntax, or recreate it with `synthmed init`"
        ) from exc
    except NotADirectoryError as exc:
        raise ConfigError(
            f"the site folder {path.parent} is not a folder (or lies under a file)",
            hint="point --site / SYNTHMED_HOME at a site folder, or create one with `synthmed init DIR`",
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot be read: {exc.strerror or exc}",
            hint="site.toml must be a readable file; recreate it with `synthmed init DIR --force`",
        ) from exc
    problems = (validate_against("site", data, str(path)) if memo is None
                else validate_remembered("site", data, raw, str(path), memo, record=_owned(path.parent)))
    if problems:
        lines = "\n".join(str(p) for p in problems)
        raise ConfigError(f"{path}: invalid site configuration:\n{lines}", hint="see docs/sites.md, 'site.toml'")
    return data


def _owned(folder: Path) -> bool:
    """Whether this process's user owns ``folder``."""
    try:
        return folder.stat().st_uid == os.geteuid()
    except OSError:
        return False
