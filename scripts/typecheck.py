#!/usr/bin/env python3
"""Type-check the package as it is installed: mypy over one ``synthmed`` package.

    .venv/bin/python scripts/typecheck.py [mypy options]

pyproject.toml maps four folders into one import name (see scripts/lint_imports.py). Run on
the folders themselves (``mypy registry daemon sdk serve``), mypy names their modules
``registry.x``, ``sdk.x`` ... and cannot resolve an absolute import such as
``from synthmed.registry.errors import ...``; with ``ignore_missing_imports`` it would treat
every such import as ``Any`` and check nothing across the layers. This script lays the package
out as an installed copy has it (the same symbolic-link layout as lint_imports.py, in
``build/typecheck/``, a stable path so mypy's cache stays valid) and runs
``mypy -p synthmed`` there with pyproject.toml's settings. scripts/test.sh runs it.
Exit status: mypy's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lint_imports import ROOT, lay_out, package_dirs  # noqa: E402


def main(argv: list[str]) -> int:
    layout = ROOT / "build" / "typecheck"
    shutil.rmtree(layout, ignore_errors=True)
    layout.mkdir(parents=True)
    lay_out(layout, package_dirs())
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
               "--cache-dir", str(ROOT / ".mypy_cache"), "-p", "synthmed", *argv]
    return subprocess.run(command, cwd=layout).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
