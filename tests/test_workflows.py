"""The GitHub workflows validate against the GitHub workflow schema (bundled with check-jsonschema)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from helpers import REPO_ROOT


def test_workflows_validate() -> None:
    workflows = sorted(str(p) for p in (REPO_ROOT / ".github" / "workflows").glob("*.yml"))
    assert len(workflows) >= 2
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    proc = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", *workflows],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_help_lists_commands() -> None:
    proc = subprocess.run([sys.executable, "-m", "synthmed.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "index" in proc.stdout
