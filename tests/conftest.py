"""Fixtures only; the builders they use live in tests/helpers/. Every path lives under
tmp_path (or a session's tmp folder); servers bind 127.0.0.1 only."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import git
import pytest

from helpers.dvc import build_dvc_template, copy_dvc_repo, dvc_env_vars
from helpers.packages import medigan_package, toy_package
from helpers.records import make_record as _make_record
from helpers.repos import init_repo
from synthmed.registry.packages import VerifiedPackage
from synthmed.registry.records import Record


@pytest.fixture
def make_record() -> Callable[..., dict[str, Any]]:
    """A valid record dict; keyword arguments with dotted keys override fields
    (``make_record(**{"package.artefact.sha256": "ab"*32})``)."""
    return _make_record


@pytest.fixture
def index_repo(tmp_path: Path) -> git.Repo:
    """An empty git repository (branch main) for an index; records go under models/."""
    return init_repo(tmp_path / "index-repo", "test index\n")


# --- read-only packages shared by the whole session: tests read them, never change them ----


@pytest.fixture(scope="session")
def toy_gan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Record, VerifiedPackage, Path]:
    """``toy-gan`` (an 8x8 class-conditional torch GAN): (record, package_dir, zip_path)."""
    return toy_package(tmp_path_factory.mktemp("toy-gan"))


@pytest.fixture(scope="session")
def medigan_toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Record, VerifiedPackage, Path]:
    """``medigan-toy`` (a torch package in medigan's layout): (record, package_dir, zip_path)."""
    return medigan_package(tmp_path_factory.mktemp("medigan-toy"))


# --- a real DVC repository with a local remote (tests/helpers/dvc.py) -----------------

@pytest.fixture
def dvc_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """DVC's global/site config and temp dirs under tmp_path; no analytics."""
    env = dvc_env_vars(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(tempfile, "tempdir", env["TMPDIR"])
    return env


@pytest.fixture(scope="module")
def dvc_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A DVC repo (data/w.bin tracked and pushed to ../dvc-remote), built once per module."""
    root = tmp_path_factory.mktemp("dvc-template")
    return root, build_dvc_template(root)


@pytest.fixture
def dvc_repo(tmp_path: Path, dvc_template: tuple[Path, str], dvc_env: dict[str, str]) -> tuple[Path, Path, str]:
    """(repo, local remote folder, commit): a private copy of the template."""
    root, rev = dvc_template
    repo_dir, remote = copy_dvc_repo(root, tmp_path)
    return repo_dir, remote, rev
