"""Upstreams over file:// and over HTTP (git's dumb protocol, served on 127.0.0.1)."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path
from typing import Any, Iterator

import git
import pytest

from site_helpers import catalog, commit, new_repo, put_record, sync, unverified, write_site


@pytest.fixture
def published(tmp_path: Path, make_record: Any) -> tuple[git.Repo, Path]:
    """A working repo and a bare copy of it, as a server would publish it."""
    work = new_repo(tmp_path / "work")
    put_record(Path(work.working_dir), unverified(make_record, "toy-gan"), subfolder="index")
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
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(bare.parent))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.git"
    finally:
        server.shutdown()
        server.server_close()


def test_file_url(tmp_path: Path, published: Any, make_record: Any) -> None:
    work, bare = published
    settings = write_site(tmp_path / "site", [{"name": "public", "url": bare.as_uri(), "subfolder": "index"}])
    [r] = sync(settings)
    assert r.status == "ok" and r.changed == 1
    put_record(Path(work.working_dir), unverified(make_record, "second-gan"), subfolder="index")
    commit(work)
    _publish(work, bare)
    [r] = sync(settings)
    assert (r.status, r.changed) == ("ok", 1)


def test_http_url(tmp_path: Path, published: Any, http_root: str, make_record: Any) -> None:
    work, bare = published
    settings = write_site(tmp_path / "site", [{"name": "public", "url": http_root, "subfolder": "index"}])
    [r] = sync(settings)
    assert r.status == "ok", r.reason
    put_record(Path(work.working_dir), unverified(make_record, "second-gan"), subfolder="index")
    commit(work)
    _publish(work, bare)
    [r] = sync(settings)
    assert (r.status, r.changed) == ("ok", 1)
    with catalog(settings) as cat:
        assert sorted(e.id for e in cat.list_models()) == ["second-gan", "toy-gan"]
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
