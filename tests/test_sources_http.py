"""HTTP sources against a misbehaving local server: every fault ends with no blob
promoted, a clear error naming the source and the reason, no temp file, and the next
source used where there is one."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from helpers.servers import FaultServer
from helpers.sites import fast_settings
from synthmed.registry.errors import ArtefactNotFound
from synthmed.registry.artefacts.sources.base import SourceContext
from synthmed.registry.artefacts.sources.http import HttpSource, redact
from synthmed.registry.artefacts.store import Store

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def srv():
    with FaultServer() as s:
        yield s


@pytest.fixture
def site(tmp_path: Path):
    settings = fast_settings(tmp_path / "site")
    return settings, Store(settings.store_dir, chunk_size=64 * 1024), SourceContext(settings=settings)


@pytest.fixture
def good_file(tmp_path: Path) -> str:
    p = tmp_path / "good.bin"
    p.write_bytes(DATA)
    return p.as_uri()


def assert_clean(store: Store) -> None:
    """No blob promoted, no partial or lock file left."""
    assert not any(store.blobs_dir.rglob("*")) if store.blobs_dir.exists() else True
    assert not list(store.tmp_dir.glob("*")) if store.tmp_dir.exists() else True
    assert not list(store.locks_dir.glob("*")) if store.locks_dir.exists() else True


def fetch_fails(store: Store, ctx: SourceContext, uri: str) -> str:
    with pytest.raises(ArtefactNotFound) as ei:
        store.fetch(SHA, len(DATA), [uri], ctx)
    msg = str(ei.value)
    assert redact(uri) in msg
    assert_clean(store)
    return msg


def test_plain_download_is_promoted_read_only(srv, site) -> None:
    settings, store, ctx = site
    srv.add("/a.bin", DATA)
    res = store.fetch(SHA, len(DATA), [srv.url("/a.bin")], ctx)
    assert res.path == store.blob_path(SHA) and res.path.read_bytes() == DATA
    assert res.source == srv.url("/a.bin") and res.size == len(DATA)
    assert not (stat.S_IMODE(res.path.stat().st_mode) & 0o222)
    assert not list(store.tmp_dir.glob("*"))
    # a second fetch costs nothing
    assert store.fetch(SHA, len(DATA), [srv.url("/a.bin")], ctx).source == "store"
    assert len(srv.requests) == 1


def test_truncation_every_time_fails_then_next_source(srv, site, good_file) -> None:
    settings, store, ctx = site
    srv.add("/t.bin", DATA, truncate_at=100_000)
    msg = fetch_fails(store, ctx, srv.url("/t.bin"))
    assert "connection closed at byte 100000" in msg
    # with a second source, that one is used
    res = store.fetch(SHA, len(DATA), [srv.url("/t.bin"), good_file], ctx)
    assert res.source == good_file and res.path.read_bytes() == DATA


def test_dropped_connection_resumes_with_range(srv, site) -> None:
    settings, store, ctx = site
    srv.add("/d.bin", DATA, truncate_at=100_000, truncate_times=1)
    res = store.fetch(SHA, len(DATA), [srv.url("/d.bin")], ctx)
    assert res.path.read_bytes() == DATA
    ranges = [h.get("Range") for h in srv.headers_for("/d.bin")]
    assert ranges == [None, "bytes=100000-"]


@pytest.mark.slow
def test_stall_times_out(srv, site, good_file) -> None:
    settings, store, ctx = site
    srv.add("/s.bin", DATA, stall_at=50_000)
    msg = fetch_fails(store, ctx, srv.url("/s.bin"))
    assert "read timed out" in msg
    res = store.fetch(SHA, len(DATA), [srv.url("/s.bin"), good_file], ctx)
    assert res.source == good_file


def test_500_always_fails_after_retries(srv, site, good_file) -> None:
    settings, store, ctx = site
    srv.add("/e.bin", DATA, fail_times=-1)
    msg = fetch_fails(store, ctx, srv.url("/e.bin"))
    assert "HTTP 500" in msg and "after 2 attempts" in msg
    assert len(srv.headers_for("/e.bin")) == 2  # one try + one retry
    assert store.fetch(SHA, len(DATA), [srv.url("/e.bin"), good_file], ctx).source == good_file


def test_500_once_is_retried(srv, site) -> None:
    settings, store, ctx = site
    srv.add("/e1.bin", DATA, fail_times=1, status=503)
    res = store.fetch(SHA, len(DATA), [srv.url("/e1.bin")], ctx)
    assert res.path.read_bytes() == DATA


def test_404_is_not_retried(srv, site) -> None:
    settings, store, ctx = site
    msg = fetch_fails(store, ctx, srv.url("/missing.bin"))
    assert "HTTP 404" in msg and "not found" in msg
    assert len(srv.requests) == 1


def test_redirect_loop(srv, site, good_file) -> None:
    settings, store, ctx = site
    srv.add("/r1", b"", redirect_to="/r2")
    srv.add("/r2", b"", redirect_to="/r1")
    msg = fetch_fails(store, ctx, srv.url("/r1"))
    assert "redirect loop" in msg
    assert store.fetch(SHA, len(DATA), [srv.url("/r1"), good_file], ctx).source == good_file


def test_redirect_followed(srv, site) -> None:
    settings, store, ctx = site
    srv.add("/old", b"", redirect_to="/new.bin")
    srv.add("/new.bin", DATA)
    assert store.fetch(SHA, len(DATA), [srv.url("/old")], ctx).path.read_bytes() == DATA


def test_more_bytes_than_declared(srv, site, good_file) -> None:
    settings, store, ctx = site
    srv.add("/x.bin", DATA, extra=b"garbage")
    msg = fetch_fails(store, ctx, srv.url("/x.bin"))
    assert f"has {len(DATA) + 7} bytes but the record declares {len(DATA)}" in msg
    srv.add("/y.bin", DATA, extra=b"garbage", content_length=False)
    msg = fetch_fails(store, ctx, srv.url("/y.bin"))
    assert f"sends more than the declared {len(DATA)} bytes" in msg
    assert store.fetch(SHA, len(DATA), [srv.url("/y.bin"), good_file], ctx).source == good_file


def test_fewer_bytes_than_declared(srv, site) -> None:
    settings, store, ctx = site
    srv.add("/short.bin", DATA[:-10])
    msg = fetch_fails(store, ctx, srv.url("/short.bin"))
    assert "bytes but the record declares" in msg


def test_tampered_bytes_are_quarantined_and_next_source_used(srv, site, good_file) -> None:
    settings, store, ctx = site
    srv.add("/bad.bin", DATA, tamper=True)
    msg = fetch_fails(store, ctx, srv.url("/bad.bin"))
    assert f"not the pinned {SHA}" in msg
    notes = store.quarantined()
    assert len(notes) == 1 and notes[0]["source"] == srv.url("/bad.bin") and notes[0]["reason"] == "hash mismatch"
    qfile = store.quarantine_dir / notes[0]["file"]
    assert qfile.stat().st_size == len(DATA)
    res = store.fetch(SHA, len(DATA), [srv.url("/bad.bin"), good_file], ctx)
    assert res.source == good_file and res.path.read_bytes() == DATA
    assert len(store.quarantined()) == 2


def test_credentials_are_not_carried_to_another_host(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "site")
    store = Store(settings.store_dir)
    ctx = SourceContext(settings=settings)
    with FaultServer() as a, FaultServer() as b:
        b.add("/f.bin", DATA)
        a.add("/go", b"", redirect_to=b.url("/f.bin"))
        a.add("/same", b"", redirect_to="/f2.bin")
        a.add("/f2.bin", DATA)
        src = a.url("/go", userinfo="alice:s3cret")
        res = store.fetch(SHA, len(DATA), [src], ctx)
        assert res.path.read_bytes() == DATA
        assert "Authorization" in a.headers_for("/go")[0]
        assert "Authorization" not in b.headers_for("/f.bin")[0]
        assert "s3cret" not in res.source
        # on the same origin the credentials go along
        store.remove(SHA)
        store.fetch(SHA, len(DATA), [a.url("/same", userinfo="alice:s3cret")], ctx)
        assert "Authorization" in a.headers_for("/f2.bin")[0]
        # bearer headers (zenodo tokens) behave the same
        a.add("/go2", b"", redirect_to=b.url("/f.bin"))
        go2 = HttpSource(a.url("/go2"), ctx, None)
        go2._add_origin_headers({"Authorization": "Bearer tok"})  # as the zenodo: source does
        stream = go2.open()
        stream.close()
        assert a.headers_for("/go2")[0]["Authorization"] == "Bearer tok"
        assert all("Authorization" not in h for h in b.headers_for("/f.bin"))


def test_server_ignoring_range_restarts_from_zero(srv, site) -> None:
    settings, store, ctx = site
    srv.add("/nr.bin", DATA, ranges=False)
    store.tmp_dir.mkdir(parents=True)
    (store.tmp_dir / f"{SHA}.part").write_bytes(DATA[:1000])
    res = store.fetch(SHA, len(DATA), [srv.url("/nr.bin")], ctx)
    assert res.path.read_bytes() == DATA and res.resumed_from == 0


def test_bad_prefix_from_an_earlier_download_is_retried_from_zero(srv, site) -> None:
    settings, store, ctx = site
    srv.add("/p.bin", DATA)
    store.tmp_dir.mkdir(parents=True)
    (store.tmp_dir / f"{SHA}.part").write_bytes(b"\0" * 1000)  # not DATA's prefix
    res = store.fetch(SHA, len(DATA), [srv.url("/p.bin")], ctx)
    assert res.path.read_bytes() == DATA
    assert [h.get("Range") for h in srv.headers_for("/p.bin")] == ["bytes=1000-", None]
    assert store.quarantined()[0]["resumed_from"] == 1000


def test_offline_mode_refuses_network_sources(tmp_path: Path, good_file) -> None:
    from dataclasses import replace

    settings = replace(fast_settings(tmp_path / "site"), offline=True)
    store = Store(settings.store_dir)
    ctx = SourceContext(settings=settings)
    with pytest.raises(ArtefactNotFound) as ei:
        store.fetch(SHA, len(DATA), ["https://example.org/x.bin"], ctx)
    assert "offline" in str(ei.value)
    assert store.fetch(SHA, len(DATA), ["https://example.org/x.bin", good_file], ctx).source == good_file


def test_quarantine_note_is_json(srv, site) -> None:
    settings, store, ctx = site
    srv.add("/bad.bin", DATA, tamper=True)
    with pytest.raises(ArtefactNotFound):
        store.fetch(SHA, len(DATA), [srv.url("/bad.bin")], ctx)
    notes = list(store.quarantine_dir.glob("*.json"))
    data = json.loads(notes[0].read_text())
    assert data["expected_sha256"] == SHA and data["actual_sha256"] != SHA


def test_prefix_of_a_killed_download_survives_a_failing_source(srv, site) -> None:
    settings, store, ctx = site
    srv.add("/ok.bin", DATA)
    store.tmp_dir.mkdir(parents=True)
    (store.tmp_dir / f"{SHA}.part").write_bytes(DATA[:70_000])
    res = store.fetch(SHA, len(DATA), [srv.url("/missing.bin"), srv.url("/ok.bin")], ctx)
    assert res.resumed_from == 70_000 and res.path.read_bytes() == DATA
    assert srv.headers_for("/ok.bin")[0]["Range"] == "bytes=70000-"


def test_complete_partial_is_verified_without_downloading(srv, site) -> None:
    settings, store, ctx = site
    store.tmp_dir.mkdir(parents=True)
    (store.tmp_dir / f"{SHA}.part").write_bytes(DATA)
    srv.add("/ok.bin", DATA)
    res = store.fetch(SHA, len(DATA), [srv.url("/ok.bin")], ctx)
    assert res.path.read_bytes() == DATA and srv.requests == []


@pytest.fixture
def https_srv(tmp_path: Path):
    """The fault server behind TLS with a self-signed certificate for 127.0.0.1."""
    import shutil
    import ssl
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    srv = FaultServer()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    srv.httpd.socket = tls.wrap_socket(srv.httpd.socket, server_side=True)
    with srv:
        yield srv, cert


def test_https_certificate_is_checked(https_srv, site, monkeypatch) -> None:
    srv, cert = https_srv
    settings, store, ctx = site
    srv.add("/a.bin", DATA)
    url = srv.url("/a.bin").replace("http://", "https://")
    with pytest.raises(ArtefactNotFound) as ei:
        store.fetch(SHA, len(DATA), [url], ctx)
    assert "TLS certificate check failed" in str(ei.value) and "after" not in str(ei.value)
    assert_clean(store)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert store.fetch(SHA, len(DATA), [url], ctx).path.read_bytes() == DATA
