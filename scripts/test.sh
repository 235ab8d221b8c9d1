#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the checks CI runs: pytest, mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m mypy
.venv/bin/python -m pytest -q "$@"
