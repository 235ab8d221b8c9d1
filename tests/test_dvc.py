"""dvc: sources against a real DVC repository made in tmp_path, with a local-folder
remote and an HTTP remote on 127.0.0.1; a tampered remote object is caught by our hash."""

from __future__ import annotations

import http.server
import os
import subprocess
import tempfile
import threading
from dataclasses import replace
from functools import partial
from pathlib import Path

import git
import pytest

from helpers.dvc import DATA, DVC, SHA
from helpers.sites import fast_settings
from synthmed.registry.errors import ArtefactNotFound
from synthmed.registry.artefacts.sources.base import SourceContext
from synthmed.registry.artefacts.store import Store

pytestmark = pytest.mark.slow  # real DVC repositories and remotes

def remote_objects(remote: Path) -> list[Path]:
    return [p for p in remote.rglob("*") if p.is_file()]


def test_local_remote_by_path_and_rev(tmp_path: Path, dvc_repo) -> None:
    repo_dir, remote, rev = dvc_repo
    settings = fast_settings(tmp_path / "site")
    store = Store(settings.store_dir)
    res = store.fetch(SHA, len(DATA), [f"dvc:{repo_dir}#data/w.bin@{rev}"], SourceContext(settings=settings))
    assert res.path.read_bytes() == DATA


def test_cloned_repo_is_cleaned_up(tmp_path: Path, dvc_repo) -> None:
    repo_dir, remote, rev = dvc_repo
    base = fast_settings(tmp_path / "site")
    # the repo names its remote relative to itself; a clone elsewhere needs the site's override
    settings = replace(base, sources=replace(base.sources, dvc_remote_url=str(remote)))
    store = Store(settings.store_dir)
    before = set(os.listdir(tempfile.gettempdir()))
    res = store.fetch(SHA, len(DATA), [f"dvc:file://{repo_dir}#data/w.bin@{rev}"], SourceContext(settings=settings))
    assert res.path.read_bytes() == DATA
    left = set(os.listdir(tempfile.gettempdir())) - before
    assert not [n for n in left if "dvc" in n], left


def test_http_remote_as_site_override(tmp_path: Path, dvc_repo) -> None:
    repo_dir, remote, rev = dvc_repo
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            seen.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(remote)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = fast_settings(tmp_path / "site")
        settings = replace(base, sources=replace(base.sources, dvc_remote_url=f"http://127.0.0.1:{httpd.server_address[1]}"))
        # the repo's own remote is gone: only the site's HTTP remote can serve the file
        moved = tmp_path / "moved-remote"
        remote.rename(moved)
        httpd.RequestHandlerClass = partial(Handler, directory=str(moved))  # type: ignore[assignment]
        store = Store(settings.store_dir)
        res = store.fetch(SHA, len(DATA), [f"dvc:{repo_dir}#data/w.bin@{rev}"], SourceContext(settings=settings))
        assert res.path.read_bytes() == DATA
        assert any("/files/md5/" in p for p in seen)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_remote_configured_in_the_repo(tmp_path: Path, dvc_repo, dvc_env) -> None:
    repo_dir, remote, rev = dvc_repo
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(remote))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, **dvc_env}
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        subprocess.run([DVC, "remote", "add", "-f", "-d", "web", url], cwd=repo_dir, env=env, check=True,
                       capture_output=True, timeout=60)
        repo = git.Repo(repo_dir)
        repo.git.add("-A")
        repo.index.commit("use the http remote")
        rev2 = repo.head.commit.hexsha
        settings = fast_settings(tmp_path / "site")
        store = Store(settings.store_dir)
        res = store.fetch(SHA, len(DATA), [f"dvc:{repo_dir}#data/w.bin@{rev2}"], SourceContext(settings=settings))
        assert res.path.read_bytes() == DATA
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_tampered_remote_object_is_caught(tmp_path: Path, dvc_repo) -> None:
    repo_dir, remote, rev = dvc_repo
    (obj,) = remote_objects(remote)
    os.chmod(obj, 0o644)
    bad = bytearray(obj.read_bytes())
    bad[len(bad) // 2] ^= 0xFF
    obj.write_bytes(bytes(bad))
    settings = fast_settings(tmp_path / "site")
    store = Store(settings.store_dir)
    uri = f"dvc:{repo_dir}#data/w.bin@{rev}"
    with pytest.raises(ArtefactNotFound) as ei:
        store.fetch(SHA, len(DATA), [uri], SourceContext(settings=settings))
    assert uri in str(ei.value) and "hash" in str(ei.value)
    assert not store.has(SHA) and store.quarantined()[0]["source"] == uri


def test_missing_path_names_the_source(tmp_path: Path, dvc_repo) -> None:
    repo_dir, remote, rev = dvc_repo
    settings = fast_settings(tmp_path / "site")
    uri = f"dvc:{repo_dir}#data/nope.bin@{rev}"
    with pytest.raises(ArtefactNotFound) as ei:
        Store(settings.store_dir).fetch(SHA, len(DATA), [uri], SourceContext(settings=settings))
    assert f"{uri}: DVC could not open data/nope.bin" in str(ei.value)
