"""Upstreams over file:// and over HTTP (git's dumb protocol, served on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import git
import pytest

from helpers.records import unverified, write_record
from helpers.repos import commit, init_repo
from helpers.servers import serve_folder
from helpers.sites import catalog, sync, write_site


@pytest.fixture
def published(tmp_path: Path, make_record: Any) -> tuple[git.Repo, Path]:
    """A working repo and a bare copy of it, as a server would publish it."""
    work = init_repo(tmp_path / "work")
    write_record(Path(work.working_dir), unverified("toy-gan"), subfolder="index")
    commit(work)
    bare = tmp_path / "srv" / "index.git"
    git.Repo.clone_from(work.working_dir, bare, bare=True)
    return work, bare


def _publish(work: git.Repo, bare: Path) -> None:
    work.git.push(str(bare), "main")
    git.Repo(bare).git.update_server_info()


@pytest.fixture
def http_root(published: tuple[git.Repo, Path]) -> Iterator[str]:
    _, bare = published
    git.Repo(bare).git.update_server_info()
    with serve_folder(bare.parent) as base:
        yield f"{base}/index.git"

def test_file_url(tmp_path: Path, published: Any, make_record: Any) -> None:
    work, bare = published
    settings = write_site(tmp_path / "site", [{"name": "public", "url": bare.as_uri(), "subfolder": "index"}])
    [r] = sync(settings)
    assert r.status == "ok" and r.changed == 1
    write_record(Path(work.working_dir), unverified("second-gan"), subfolder="index")
    commit(work)
    _publish(work, bare)
    [r] = sync(settings)
    assert (r.status, r.changed) == ("ok", 1)


def test_http_url(tmp_path: Path, published: Any, http_root: str, make_record: Any) -> None:
    work, bare = published
    settings = write_site(tmp_path / "site", [{"name": "public", "url": http_root, "subfolder": "index"}])
    [r] = sync(settings)
    assert r.status == "ok", r.reason
    write_record(Path(work.working_dir), unverified("second-gan"), subfolder="index")
    commit(work)
    _publish(work, bare)
    [r] = sync(settings)
    assert (r.status, r.changed) == ("ok", 1)
    with catalog(settings) as cat:
        assert sorted(e.id for e in cat.models.list_models()) == ["second-gan", "toy-gan"]
    # a force-push on the server is refused over HTTP too
    work.git.reset("--hard", "HEAD~1")
    commit(work, "rewritten")
    work.git.push("--force", str(bare), "main")
    git.Repo(bare).git.update_server_info()
    [r] = sync(settings)
    assert r.status == "refused"


def test_relative_path_is_relative_to_the_site(tmp_path: Path, published: Any) -> None:
    _, bare = published
    settings = write_site(tmp_path / "site", [{"name": "public", "url": "../srv/index.git", "subfolder": "index"}])
    [r] = sync(settings)
    assert r.status == "ok" and r.changed == 1
