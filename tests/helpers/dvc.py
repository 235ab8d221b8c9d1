"""A real DVC repository with a local remote, for the dvc: source tests: ``data/w.bin``
(:data:`DATA`) tracked and pushed, the repository's own cache removed so that reads come
from the remote. DVC's configuration and temporary folders live under the test's folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .repos import commit, init_repo

DATA = os.urandom(120_000)
SHA = hashlib.sha256(DATA).hexdigest()
DVC = str(Path(sys.executable).with_name("dvc"))


def dvc_env_vars(root: Path) -> dict[str, str]:
    """DVC's global/site/system config and temp folder under ``root``; no analytics."""
    tmp = root / "tmpdir"
    tmp.mkdir(exist_ok=True)
    return {"DVC_GLOBAL_CONFIG_DIR": str(root / "dvc-global"), "DVC_SITE_CACHE_DIR": str(root / "dvc-site"),
            "DVC_NO_ANALYTICS": "1", "DVC_SYSTEM_CONFIG_DIR": str(root / "dvc-system"), "TMPDIR": str(tmp)}


def build_dvc_template(root: Path) -> str:
    """``root/dvc-repo`` tracking ``data/w.bin`` and pushed to ``root/dvc-remote``; the commit."""
    repo_dir = root / "dvc-repo"
    (root / "dvc-remote").mkdir()
    repo = init_repo(repo_dir)
    env = {**os.environ, **dvc_env_vars(root)}
    (repo_dir / "data").mkdir()
    (repo_dir / "data" / "w.bin").write_bytes(DATA)
    script = "dvc init -q && dvc remote add -d store ../dvc-remote && dvc add -q data/w.bin"
    subprocess.run(["bash", "-c", script.replace("dvc ", f"{DVC} ")], cwd=repo_dir, env=env, check=True,
                   capture_output=True, timeout=120)
    commit(repo, "track weights with dvc")
    subprocess.run([DVC, "push", "-q"], cwd=repo_dir, env=env, check=True, capture_output=True, timeout=120)
    # reads must come from the remote, not from the repo's own cache
    shutil.rmtree(repo_dir / ".dvc" / "cache")
    return repo.head.commit.hexsha


def copy_dvc_repo(template: Path, dest: Path) -> tuple[Path, Path]:
    """A private copy of a template's repository and remote: (repo, remote)."""
    for name in ("dvc-repo", "dvc-remote"):
        shutil.copytree(template / name, dest / name, symlinks=True)
    return dest / "dvc-repo", dest / "dvc-remote"
