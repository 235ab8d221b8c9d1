#!/usr/bin/env python3
"""Check the layer rules of docs/design.md: import-linter's contracts in pyproject.toml.

    .venv/bin/python scripts/lint_imports.py [lint-imports options, e.g. --verbose]

pyproject.toml maps four folders into one import name (``synthmed`` -> sdk/,
``synthmed.registry`` -> registry/, ``synthmed.daemon`` -> daemon/, ``synthmed.serve`` ->
serve/). The editable install resolves them through an import hook, but import-linter's graph
builder (grimp) finds a package's modules by walking its folder, so under ``synthmed`` (sdk/)
it would see no registry, daemon or serve. This script lays the package out as an installed
copy has it (one ``synthmed/`` folder: sdk/'s files, and registry/, daemon/, serve/ and
schemas/ inside it, all as symbolic links to the working tree) in a temporary folder, and runs
``lint-imports`` with that folder first on PYTHONPATH. tests/test_imports.py runs it with the
suite (so CI runs it through scripts/test.sh). Exit status: lint-imports's (0: every contract
kept).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"__pycache__"}


def package_dirs(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, Path]:
    """pyproject.toml's ``[tool.setuptools] package-dir``: dotted package -> folder."""
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    mapping = config["tool"]["setuptools"]["package-dir"]
    return {name: (pyproject.parent / folder).resolve() for name, folder in mapping.items()}


def lay_out(dest: Path, dirs: dict[str, Path]) -> None:
    """Build the installed layout of ``dirs`` under ``dest`` with symbolic links."""
    for name in sorted(dirs, key=lambda n: n.count(".")):
        target = dest.joinpath(*name.split("."))
        nested = {n.rpartition(".")[2] for n in dirs if n.rpartition(".")[0] == name}
        if not nested:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(dirs[name], target_is_directory=True)
            continue
        # a package with other folders mapped inside it: link its entries one by one
        target.mkdir(parents=True, exist_ok=True)
        for entry in sorted(dirs[name].iterdir()):
            if entry.name not in SKIP and entry.name not in nested:
                (target / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="synthmed-lint-imports-") as tmp:
        lay_out(Path(tmp), package_dirs())
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tmp, env.get("PYTHONPATH", "")) if p)
        command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
                   "--no-cache", *argv]
        return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
