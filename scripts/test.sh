#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the checks CI runs: mypy, the layer contracts (import-linter), pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m mypy
.venv/bin/python scripts/lint_imports.py
.venv/bin/python -m pytest -q "$@"
