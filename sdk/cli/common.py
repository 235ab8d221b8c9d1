"""Helpers shared by the CLI modules: settings from flags, JSON output, tables."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from synthmed.registry.settings import Settings, load_settings


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Flags > environment > site.toml > defaults."""
    return load_settings(getattr(args, "site", None), overrides)


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")


def add_store_flags(p: argparse.ArgumentParser, dvc_path_default: str) -> None:
    """The Zenodo and DVC flags of a command that uploads an artefact (``contribute``,
    ``dataset publish``): one spelling, one help text."""
    p.add_argument("--zenodo-host", help="Zenodo host (default: the site's sources.zenodo_host or zenodo.org)")
    p.add_argument("--zenodo-token-file", type=Path, metavar="FILE",
                   help="file holding the Zenodo token (default: $SYNTHMED_ZENODO_TOKEN, "
                        "else ~/.config/synthmed/zenodo-token)")
    p.add_argument("--dvc-repo", type=Path, metavar="DIR", help="a DVC-enabled git repository (for --store dvc)")
    p.add_argument("--dvc-remote", metavar="NAME", help="the DVC remote to push to (default: the repo's default)")
    p.add_argument("--dvc-path", metavar="PATH", help=f"path of the artefact in the DVC repo (default: {dvc_path_default})")
    p.add_argument("--dvc-url", metavar="URL", help="the DVC repo's URL as sites will clone it (default: its origin)")


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def print_table(rows: Sequence[Mapping[str, Any]], columns: Iterable[str]) -> None:
    cols = list(columns)
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip())
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols).rstrip())
