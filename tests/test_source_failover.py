"""A source that fails while being read falls over to the next source, for every scheme.

Each test injects the failure below synthmed's own code (the file object a ``file://``,
folder ``mirror:`` or working-tree ``index:`` source reads, git's object stream, a
127.0.0.1 server that resets the connection mid-body, DVC's file object), puts a good
source after it, and checks that the fetch succeeds from the good one, the blob verifies,
and the failing source is named in the store's log. A failing write to the store's own
disk (ENOSPC) is not a source failure: it stops the fetch.

Before sources shared one base class, an EIO while reading a ``file://``, ``index:`` or
folder ``mirror:`` source ended the fetch with "check free space and permissions of the
store", and the next source was never tried; an error other than ``OSError`` from the
HTTP client escaped every handler.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import http.client
import logging
import os
import socket
import struct
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import synthmed.registry.artefacts.sources.file as file_mod
import synthmed.registry.artefacts.sources.index as index_mod
from helpers.repos import commit as commit_all
from helpers.sites import fast_settings
from synthmed.registry.errors import ArtefactError, ArtefactNotFound, SourceError
from synthmed.registry.settings import Settings
from synthmed.registry.artefacts.sources import SOURCE_CLASSES, Source, SourceContext, source_for_uri
from synthmed.registry.artefacts.store import Store
from helpers.dvc import DATA as DVC_DATA

CHUNK = 64 * 1024
DATA = os.urandom(5 * CHUNK + 1234)
SHA = hashlib.sha256(DATA).hexdigest()


def small_store(settings: Settings) -> Store:
    """A store reading 64 KiB chunks, so DATA takes several reads."""
    return Store(settings.store_dir, chunk_size=CHUNK)


def fetch_and_check(store: Store, ctx: SourceContext, uris: list[str], good: str, bad: str,
                    caplog: pytest.LogCaptureFixture, data: bytes = DATA) -> None:
    sha = hashlib.sha256(data).hexdigest()
    caplog.set_level(logging.WARNING, logger="synthmed.registry.artefacts.store")
    res = store.fetch(sha, len(data), uris, ctx)
    assert res.source == good and res.sha256 == sha
    assert store.verify_blob(sha) and res.path.read_bytes() == data
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("source failed:")]
    assert len(failed) == 1 and bad in failed[0], failed
    assert not list(store.tmp_dir.iterdir())  # the failed attempt's partial file is gone


# --- local files: a disk or share that returns EIO after the first read -------------------


class _FailingFile:
    """A binary file whose reads fail with EIO after its first one."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self.reads = 0

    def readinto(self, buf: memoryview) -> int:
        if self.reads:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self.reads += 1
        return int(self._fh.readinto(buf))

    def fileno(self) -> int:
        return int(self._fh.fileno())

    def seek(self, *args: Any) -> int:
        return int(self._fh.seek(*args))

    def close(self) -> None:
        self._fh.close()


@pytest.fixture
def eio_on(monkeypatch) -> Callable[[Path], None]:
    """``eio_on(path)``: the local-file sources' reads of ``path`` fail after the first chunk."""
    bad: set[Path] = set()
    real_open = builtins.open

    def fake_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        fh = real_open(file, *args, **kwargs)
        return _FailingFile(fh) if Path(file).resolve() in bad else fh

    monkeypatch.setattr(file_mod, "open", fake_open, raising=False)
    return lambda p: bad.add(Path(p).resolve())


@pytest.fixture
def site(tmp_path: Path) -> tuple[Settings, Store, SourceContext]:
    settings = fast_settings(tmp_path / "site")
    return settings, small_store(settings), SourceContext(settings=settings)


def test_file_source_failing_mid_read_falls_over(site, tmp_path: Path, eio_on, caplog) -> None:
    _, store, ctx = site
    bad, good = tmp_path / "share-a" / "m.bin", tmp_path / "share-b" / "m.bin"
    for p in (bad, good):
        p.parent.mkdir()
        p.write_bytes(DATA)
    eio_on(bad)
    fetch_and_check(store, ctx, [bad.as_uri(), good.as_uri()], good.as_uri(), bad.as_uri(), caplog)
    failed = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("source failed:"))
    assert f"reading failed at byte {CHUNK}" in failed and "Input/output error" in failed


def test_folder_mirror_failing_mid_read_falls_over(site, tmp_path: Path, eio_on, caplog) -> None:
    _, store, ctx = site
    roots = [tmp_path / "mirror-a", tmp_path / "mirror-b"]
    for r in roots:
        blob = r / "blobs" / "sha256" / SHA[:2] / SHA[2:]
        blob.parent.mkdir(parents=True)
        blob.write_bytes(DATA)
    eio_on(roots[0] / "blobs" / "sha256" / SHA[:2] / SHA[2:])
    uris = [f"mirror:{roots[0]}", f"mirror:{roots[1].as_uri()}"]
    fetch_and_check(store, ctx, uris, uris[1], uris[0], caplog)


def test_index_working_tree_failing_mid_read_falls_over(site, tmp_path: Path, eio_on, caplog) -> None:
    settings, store, _ = site
    index_dir = tmp_path / "index"
    (index_dir / "artefacts").mkdir(parents=True)
    for name in ("a.bin", "b.bin"):
        (index_dir / "artefacts" / name).write_bytes(DATA)
    eio_on(index_dir / "artefacts" / "a.bin")
    ctx = SourceContext(settings=settings, index_dir=index_dir)
    fetch_and_check(store, ctx, ["index:artefacts/a.bin", "index:artefacts/b.bin"], "index:artefacts/b.bin",
                    "index:artefacts/a.bin", caplog)


# gitpython's cat-file stream, abandoned half-read, complains from __del__ once its repo is closed
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_index_commit_failing_mid_read_falls_over(site, index_repo, monkeypatch, caplog) -> None:
    settings, store, _ = site
    root = Path(index_repo.working_tree_dir)
    (root / "artefacts").mkdir()
    for name in ("a.bin", "b.bin"):
        (root / "artefacts" / name).write_bytes(DATA)
    rev = commit_all(index_repo, "artefacts")
    # git's object stream dies after the first read of the first blob opened
    real = index_mod._GitBlobReader.readinto
    state = {"readers": 0}

    def readinto(self: Any, buf: memoryview) -> int:
        if not hasattr(self, "_test_n"):
            state["readers"] += 1
            self._test_n = 0
            self._test_fail = state["readers"] == 1
        self._test_n += 1
        if self._test_fail and self._test_n > 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return int(real(self, buf))

    monkeypatch.setattr(index_mod._GitBlobReader, "readinto", readinto)
    ctx = SourceContext(settings=settings, index_repo=root, index_commit=rev)
    fetch_and_check(store, ctx, ["index:artefacts/a.bin", "index:artefacts/b.bin"], "index:artefacts/b.bin",
                    "index:artefacts/a.bin", caplog)
    assert state["readers"] == 2


# --- http(s) on 127.0.0.1: a server that resets the connection mid-body --------------------


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), as a crashing peer or proxy does."""
    handler.wfile.flush()
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()
    handler.close_connection = True


def _send_until_reset(handler: BaseHTTPRequestHandler, data: bytes, cut: int) -> None:
    """Answer a GET for ``data`` (honouring ``Range``) but reset the connection at byte
    ``cut``: a resume from there gets its headers and then the reset too."""
    start = 0
    rng = handler.headers.get("Range", "")
    if rng.startswith("bytes=") and rng.endswith("-"):
        start = int(rng[len("bytes="):-1])
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    else:
        handler.send_response(200)
    handler.send_header("Content-Length", str(len(data) - start))
    handler.send_header("Connection", "close")
    handler.end_headers()
    if start < cut:
        handler.wfile.write(data[start:cut])
    _reset(handler)


class _ResetHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_ResetServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    def do_GET(self) -> None:  # noqa: N802
        self.server.paths.append(self.path)
        if self.path == "/bad.bin":
            _send_until_reset(self, DATA, 2 * CHUNK)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(DATA)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(DATA)


class _ResetServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ResetHandler)
        self.paths: list[str] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # the reset socket is expected to fail on the way out

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def reset_server() -> Iterator[_ResetServer]:
    srv = _ResetServer()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(timeout=5)


def test_http_connection_reset_mid_body_falls_over(site, reset_server, caplog) -> None:
    _, store, ctx = site
    bad, good = reset_server.url("/bad.bin"), reset_server.url("/good.bin")
    fetch_and_check(store, ctx, [bad, good], good, bad, caplog)
    # the client resumed with Range (one retry in fast_settings) before giving the source up
    assert reset_server.paths.count("/bad.bin") >= 2


def test_http_client_error_other_than_oserror_falls_over(site, reset_server, monkeypatch, caplog) -> None:
    """Whatever the HTTP client raises while reading the body (here the ValueError of a
    response closed under it) fails that source only."""
    _, store, ctx = site
    bad, good = reset_server.url("/good.bin?bad"), reset_server.url("/good.bin")
    real = http.client.HTTPConnection.getresponse

    def getresponse(self: http.client.HTTPConnection) -> http.client.HTTPResponse:
        resp = real(self)
        if getattr(self, "_synthmed_target", "").endswith("?bad"):
            first = resp.readinto
            calls = [0]

            def readinto(b: Any) -> int:
                calls[0] += 1
                if calls[0] > 1:
                    raise ValueError("I/O operation on closed file.")
                return first(b)

            resp.readinto = readinto  # type: ignore[method-assign]
            resp.readinto1 = readinto  # type: ignore[method-assign]  # the stream reads one receive at a time
        return resp

    real_request = http.client.HTTPConnection.request

    def request(self: http.client.HTTPConnection, method: str, url: str, *a: Any, **k: Any) -> None:
        self._synthmed_target = url  # type: ignore[attr-defined]
        real_request(self, method, url, *a, **k)

    monkeypatch.setattr(http.client.HTTPConnection, "getresponse", getresponse)
    monkeypatch.setattr(http.client.HTTPConnection, "request", request)
    fetch_and_check(store, ctx, [bad, good], good, bad, caplog)


# --- zenodo: against the emulator on 127.0.0.1, whose file download resets mid-body ---------


def test_zenodo_download_reset_mid_body_falls_over(tmp_path: Path, monkeypatch, caplog) -> None:
    import helpers.zenodo as zenodo_emulator
    from helpers.zenodo import ZenodoEmulator

    real_get_file = zenodo_emulator._Handler.get_file
    bad_ids: set[str] = set()

    def get_file(self: Any, body: bytes, rid: str, key: str) -> None:
        if rid in bad_ids:
            _send_until_reset(self, DATA, 2 * CHUNK)
            return
        real_get_file(self, body, rid, key)

    monkeypatch.setattr(zenodo_emulator, "_ROUTES", [(pattern, get_file if fn is real_get_file else fn)
                                                     for pattern, fn in zenodo_emulator._ROUTES])
    with ZenodoEmulator() as zen:
        bad_id = zen.publish_record({"model.zip": DATA})
        good_id = zen.publish_record({"model.zip": DATA})
        bad_ids.add(str(bad_id))
        s = fast_settings(tmp_path / "site")
        s = replace(s, sources=replace(s.sources, zenodo_host=zen.base))
        bad, good = f"zenodo:{bad_id}/model.zip", f"zenodo:{good_id}/model.zip"
        fetch_and_check(small_store(s), SourceContext(settings=s), [bad, good], good, bad, caplog)


# --- dvc: a local DVC remote whose file object fails after the first read --------------------

@pytest.mark.slow
def test_dvc_read_failing_mid_read_falls_over(tmp_path: Path, dvc_repo, monkeypatch, caplog) -> None:
    import dvc.api

    repo_dir, _, rev = dvc_repo
    real_open = dvc.api.open
    opened: list[str] = []

    class FailingRead:
        def __init__(self, f: Any) -> None:
            self._f = f
            self.reads = 0

        def read(self, n: int = -1) -> bytes:
            self.reads += 1
            if self.reads > 1:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return bytes(self._f.read(n))

    class FailingCm:
        def __init__(self, cm: Any) -> None:
            self._cm = cm

        def __enter__(self) -> FailingRead:
            return FailingRead(self._cm.__enter__())

        def __exit__(self, *exc: Any) -> Any:
            return self._cm.__exit__(*exc)

    def fake_open(path: str, *args: Any, rev: str | None = None, **kwargs: Any) -> Any:
        opened.append(rev or "HEAD")
        cm = real_open(path, *args, rev=rev, **kwargs)
        return FailingCm(cm) if len(opened) == 1 else cm

    monkeypatch.setattr(dvc.api, "open", fake_open)
    settings = fast_settings(tmp_path / "site")
    bad, good = f"dvc:{repo_dir}#data/w.bin@{rev}", f"dvc:{repo_dir}#data/w.bin"
    fetch_and_check(small_store(settings), SourceContext(settings=settings), [bad, good], good, bad, caplog,
                    data=DVC_DATA)
    assert opened == [rev, "HEAD"]


# --- the store's own disk failing is not a source failure ----------------------------------


def test_a_full_disk_stops_the_fetch_and_tries_no_other_source(site, tmp_path: Path, monkeypatch, caplog) -> None:
    import synthmed.registry.artefacts.store as store_mod

    _, store, ctx = site
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(DATA)
    b.write_bytes(DATA)
    real_pwrite = os.pwrite

    def pwrite(fd: int, data: Any, pos: int) -> int:
        if pos >= CHUNK:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, data, pos)

    opened: list[str] = []
    real_open = builtins.open

    def fake_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(store_mod.os, "pwrite", pwrite)
    monkeypatch.setattr(file_mod, "open", fake_open, raising=False)
    caplog.set_level(logging.WARNING, logger="synthmed.registry.artefacts.store")
    with pytest.raises(ArtefactError) as ei:
        store.fetch(SHA, len(DATA), [a.as_uri(), b.as_uri()], ctx)
    assert not isinstance(ei.value, (SourceError, ArtefactNotFound))
    assert os.strerror(errno.ENOSPC) in str(ei.value) and "free space" in str(ei.value)
    assert opened == [str(a)]  # the second source was never tried
    assert not [r for r in caplog.records if r.getMessage().startswith("source failed:")]
    assert not list(store.tmp_dir.iterdir()) and not store.has(SHA)


# --- the base class: one table, one constructor, the offline rule ---------------------------


def test_every_scheme_has_one_class_with_the_one_constructor(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "site")
    ctx = SourceContext(settings=settings, index_dir=tmp_path)
    examples = {"index": "index:a/b.bin", "zenodo": "zenodo:1/a.bin", "dvc": "dvc:/r#a.bin@v1",
                "https": "https://127.0.0.1/a", "http": "http://127.0.0.1/a", "file": "file:///a.bin",
                "mirror": "mirror:/srv/store"}
    assert set(SOURCE_CLASSES) == set(examples)
    for scheme, uri in examples.items():
        src = source_for_uri(uri, ctx, SHA)
        assert type(src) is SOURCE_CLASSES[scheme] and isinstance(src, Source)
        assert type(src)(uri, ctx, SHA).uri == src.uri == uri
    with pytest.raises(SourceError, match="unknown source scheme"):
        source_for_uri("gopher://x/y", ctx)


def test_an_unexpected_error_while_opening_is_a_source_failure(site, tmp_path: Path, monkeypatch, caplog) -> None:
    _, store, ctx = site
    bad, good = tmp_path / "bad.bin", tmp_path / "good.bin"
    bad.write_bytes(DATA)
    good.write_bytes(DATA)
    real_open = builtins.open

    def fake_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(file) == bad:
            raise RuntimeError("the share's driver fell over")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(file_mod, "open", fake_open, raising=False)
    fetch_and_check(store, ctx, [bad.as_uri(), good.as_uri()], good.as_uri(), bad.as_uri(), caplog)
    assert "RuntimeError: the share's driver fell over" in caplog.text


@pytest.mark.parametrize("uri,refused", [
    ("https://example.org/a.bin", True),
    ("http://127.0.0.1:9/a.bin", False),
    ("http://localhost:9/a.bin", False),
    ("zenodo:1/a.bin", True),  # the default Zenodo host is zenodo.org
    ("dvc:https://example.org/r.git#a.bin", True),
    ("dvc:/srv/r#a.bin", False),
    ("mirror:https://example.org/store", False),  # a site mirror is the site's own copy
    ("mirror:/srv/store", False),
    ("file:///srv/a.bin", False),
    ("index:a.bin", False),
])
def test_the_offline_rule(tmp_path: Path, uri: str, refused: bool) -> None:
    settings = replace(fast_settings(tmp_path / "site"), offline=True)
    src = source_for_uri(uri, SourceContext(settings=settings, index_dir=tmp_path), SHA)
    if refused:
        with pytest.raises(SourceError, match="the site is offline") as ei:
            src.open()
        assert ei.value.hint and str(ei.value).startswith(f"{uri}: ")
    else:
        src._check_offline()  # what open() applies first


def test_offline_zenodo_on_a_loopback_host_is_allowed(tmp_path: Path) -> None:
    s = replace(fast_settings(tmp_path / "site"), offline=True)
    s = replace(s, sources=replace(s.sources, zenodo_host="http://127.0.0.1:9"))
    source_for_uri("zenodo:1/a.bin", SourceContext(settings=s))._check_offline()
