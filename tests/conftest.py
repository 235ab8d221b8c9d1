"""Shared fixtures. Every path lives under tmp_path; servers bind 127.0.0.1 only."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import git
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parent.parent


def load_valid_record() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "records" / "valid" / "full.json").read_text())
    return data


def deep_set(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``deep_set(d, "package.artefact.sha256", "x")``; a value of ``...`` deletes the key."""
    keys = dotted.split(".")
    cur: Any = data
    for k in keys[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur[k]
    last = keys[-1]
    if value is ...:
        if isinstance(cur, list):
            del cur[int(last)]
        else:
            del cur[last]
    elif isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value


@pytest.fixture
def make_record() -> Callable[..., dict[str, Any]]:
    """A valid record dict; keyword arguments with dotted keys override fields
    (``make_record(**{"package.artefact.sha256": "ab"*32})``)."""

    def factory(**overrides: Any) -> dict[str, Any]:
        data = copy.deepcopy(load_valid_record())
        for key, value in overrides.items():
            deep_set(data, key, value)
        return data

    return factory


def write_record(index_dir: Path, data: dict[str, Any]) -> Path:
    path = index_dir / "models" / data["id"] / f"{data['version']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


@pytest.fixture
def index_repo(tmp_path: Path) -> git.Repo:
    """An empty git repository (branch main) for an index; records go under models/."""
    root = tmp_path / "index-repo"
    root.mkdir()
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Test")
        cw.set_value("user", "email", "test@example.org")
        cw.set_value("commit", "gpgsign", "false")
    (root / "README.md").write_text("test index\n")
    repo.index.add(["README.md"])
    repo.index.commit("initial")
    return repo


def commit_all(repo: git.Repo, message: str) -> str:
    repo.git.add("-A")
    repo.index.commit(message)
    return repo.head.commit.hexsha
