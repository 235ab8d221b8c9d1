#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the checks CI runs: mypy over the package as installed
# (scripts/typecheck.py), the layer contracts (import-linter), pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/typecheck.py
.venv/bin/python scripts/lint_imports.py
.venv/bin/python -m pytest -q "$@"
