#!/usr/bin/env bash
# Create .venv and install synthmed into it (editable), with the test extras, at the exact
# versions of constraints.txt (refreshed by scripts/refresh-constraints.sh), so a new release
# of a dependency cannot change a fresh set-up overnight. torch is pinned to 2.13.0 first: a
# CPU build, so nothing pulls the CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]" -c constraints.txt
