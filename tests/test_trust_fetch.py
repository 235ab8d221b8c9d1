"""Issue 11, findings 5, 6 and 7: what a hostile download server, Zenodo record or record
source can do to a site, and what it can no longer do.

5. every download is bounded: a total deadline, a minimum rate, a cap for artefacts whose
   record declares no size (settings ``[sources]`` in site.toml);
6. the Zenodo token goes to the configured Zenodo host only;
7. local files are read for an upstream's records only under that upstream's
   ``file_roots``, and quarantined bytes are readable by the site's user only.

Plus adversarial HTTP cases (lying headers, bad resumes, redirects, gzip). Each fetch runs
in a thread with a generous bound, so a regression fails instead of hanging.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pytest

from helpers.packages import catalog_entry
from helpers.records import make_record, to_record
from helpers.servers import FaultServer
from helpers.sites import fast_settings, write_site
from helpers.zenodo import ZenodoEmulator
from synthmed.registry.errors import ArtefactNotFound, ConfigError
from synthmed.registry.packages import prepare
from synthmed.registry.settings import Settings, SourceOverrides, load_settings
from synthmed.registry.artefacts.sources.base import SourceContext
from synthmed.registry.artefacts.store import Store

DATA = os.urandom(200_000)
SHA = hashlib.sha256(DATA).hexdigest()
#: generous: every bounded case here ends in a few seconds; the old code never ended
BOUND_S = 30.0


def bounded(fn: Callable[[], Any], limit: float = BOUND_S) -> Any:
    """``fn()`` in a thread; fail (instead of hanging) when it runs past ``limit``."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    if t.is_alive():
        pytest.fail(f"still running after {limit:g}s: the download is not bounded")
    if "error" in box:
        raise box["error"]
    return box["value"]


def fails(store: Store, ctx: SourceContext, uris: list[str], sha: str = SHA, size: int | None = len(DATA)) -> str:
    """The fetch fails (bounded); returns its message, after checking nothing is left behind."""
    with pytest.raises(ArtefactNotFound) as ei:
        bounded(lambda: store.fetch(sha, size, uris, ctx))
    assert_clean(store)
    return str(ei.value)


def assert_clean(store: Store) -> None:
    """No blob, no partial file, no lock left (the per-blob lock was released)."""
    assert not any(p.is_file() for p in store.blobs_dir.rglob("*")) if store.blobs_dir.exists() else True
    assert not list(store.tmp_dir.iterdir()) if store.tmp_dir.exists() else True
    assert not list(store.locks_dir.iterdir()) if store.locks_dir.exists() else True


def site(tmp_path: Path, **sources: Any) -> tuple[Settings, Store, SourceContext]:
    settings = fast_settings(tmp_path / "site", **sources)
    return settings, Store(settings.store_dir, chunk_size=64 * 1024), SourceContext(settings=settings)


@pytest.fixture
def srv():
    with FaultServer() as s:
        yield s


# --- 5: deadlines, minimum rate, a cap for unsized artefacts -------------------------------


@pytest.mark.slow
def test_trickling_server_is_cut_by_the_minimum_rate(tmp_path: Path, srv) -> None:
    # one byte every 20 ms: every read succeeds well inside the read timeout, for hours
    srv.add("/t.bin", DATA, send_chunk=1, pace_s=0.02)
    _, store, ctx = site(tmp_path, min_rate_bytes_per_s=1000.0, min_rate_window_s=1.0)
    t0 = time.monotonic()
    msg = fails(store, ctx, [srv.url("/t.bin")])
    assert "below the minimum of 1000" in msg and "sources.min_rate_bytes_per_s" in msg
    assert time.monotonic() - t0 < 15


@pytest.mark.slow
def test_trickle_above_the_minimum_rate_is_cut_at_the_deadline(tmp_path: Path, srv) -> None:
    srv.add("/t.bin", DATA, send_chunk=64, pace_s=0.01)  # ~6 kB/s: a 200 kB file would take 30 s
    _, store, ctx = site(tmp_path, min_rate_bytes_per_s=0.0, download_deadline_s=1.5)
    t0 = time.monotonic()
    msg = fails(store, ctx, [srv.url("/t.bin")])
    assert "took longer than 1.5s" in msg and "sources.download_deadline_s" in msg
    assert time.monotonic() - t0 < 15


@pytest.mark.slow
def test_a_cut_source_falls_over_to_the_next(tmp_path: Path, srv) -> None:
    srv.add("/t.bin", DATA, send_chunk=1, pace_s=0.02)
    srv.add("/good.bin", DATA)
    _, store, ctx = site(tmp_path, download_deadline_s=1.0)
    res = bounded(lambda: store.fetch(SHA, len(DATA), [srv.url("/t.bin"), srv.url("/good.bin")], ctx))
    assert res.source == srv.url("/good.bin") and res.path.read_bytes() == DATA
    assert not list(store.tmp_dir.iterdir()) and not list(store.locks_dir.iterdir())


def test_endless_body_of_an_unsized_artefact_is_cut_at_the_cap(tmp_path: Path, srv) -> None:
    srv.add("/endless.bin", b"A" * 4096, endless=True)
    _, store, ctx = site(tmp_path, max_unsized_bytes=1 << 20)
    msg = fails(store, ctx, [srv.url("/endless.bin")], size=None)
    assert "more than 1048576 bytes" in msg and "sources.max_unsized_bytes" in msg
    assert not store.quarantined()  # nothing of it was kept anywhere


def test_endless_body_while_pinning_is_cut_at_the_cap(tmp_path: Path, srv) -> None:
    """``index pin`` knows neither hash nor size: the cap bounds it too."""
    srv.add("/endless.bin", b"B" * 4096, endless=True)
    _, store, ctx = site(tmp_path, max_unsized_bytes=1 << 20)
    with pytest.raises(ArtefactNotFound, match="sources.max_unsized_bytes"):
        bounded(lambda: store.add_from_sources([srv.url("/endless.bin")], ctx))
    assert_clean(store)


def test_declared_length_over_the_cap_is_refused_before_reading(tmp_path: Path, srv) -> None:
    big = os.urandom(3 << 20)
    srv.add("/big.bin", big)
    _, store, ctx = site(tmp_path, max_unsized_bytes=1 << 20)
    msg = fails(store, ctx, [srv.url("/big.bin")], sha=hashlib.sha256(big).hexdigest(), size=None)
    assert f"declares {len(big)} bytes" in msg and "sources.max_unsized_bytes" in msg


def test_an_unsized_artefact_at_most_the_cap_is_stored(tmp_path: Path, srv) -> None:
    srv.add("/a.bin", DATA)
    _, store, ctx = site(tmp_path, max_unsized_bytes=len(DATA))
    assert bounded(lambda: store.fetch(SHA, None, [srv.url("/a.bin")], ctx)).path.read_bytes() == DATA


def test_a_sized_artefact_is_not_capped(tmp_path: Path, srv) -> None:
    srv.add("/a.bin", DATA)
    _, store, ctx = site(tmp_path, max_unsized_bytes=1000)
    assert bounded(lambda: store.fetch(SHA, len(DATA), [srv.url("/a.bin")], ctx)).size == len(DATA)


def test_file_source_bigger_than_the_cap_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "big.bin"
    f.write_bytes(DATA)
    _, store, ctx = site(tmp_path, max_unsized_bytes=1000)
    assert "sources.max_unsized_bytes" in fails(store, ctx, [f.as_uri()], size=None)


def test_device_file_source_is_refused(tmp_path: Path) -> None:
    """/dev/zero never ends; it is not a regular file."""
    _, store, ctx = site(tmp_path)
    msg = fails(store, ctx, ["file:///dev/zero"], size=None)
    assert "not a regular file" in msg


def test_fifo_file_source_does_not_block(tmp_path: Path) -> None:
    """Opening a FIFO waits for a writer; the source refuses it without waiting."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _, store, ctx = site(tmp_path)
    try:
        msg = fails(store, ctx, [fifo.as_uri()], size=None, )
    finally:
        # unblock an open() that a regression left waiting
        with open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK) if _has_reader(fifo) else os.devnull, "wb"):
            pass
    assert "not a regular file" in msg


def _has_reader(fifo: Path) -> bool:
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        return True
    except OSError:
        return False


def test_limits_are_read_from_site_toml(tmp_path: Path) -> None:
    s = write_site(tmp_path / "a", [], sources={"download_deadline_s": 120, "min_rate_bytes_per_s": 10,
                                                "min_rate_window_s": 5, "max_unsized_bytes": 12345})
    assert (s.sources.download_deadline_s, s.sources.min_rate_bytes_per_s, s.sources.min_rate_window_s,
            s.sources.max_unsized_bytes) == (120.0, 10.0, 5.0, 12345)
    d = load_settings(tmp_path / "none", environ={}).sources
    assert (d.download_deadline_s, d.min_rate_bytes_per_s, d.min_rate_window_s, d.max_unsized_bytes) == \
        (3600.0, 1024.0, 60.0, 2 << 30)
    with pytest.raises(ConfigError, match="max_unsized_bytes"):
        write_site(tmp_path / "b", [], sources={"max_unsized_bytes": 0})


# --- 6: the Zenodo token goes to the configured host only ----------------------------------


def test_zenodo_token_is_not_sent_to_a_file_link_on_another_host(tmp_path: Path, srv) -> None:
    srv.add("/elsewhere/w.pt", DATA)
    with ZenodoEmulator(tokens={"tok-secret"}) as zen:
        rid = zen.publish_record({"w.pt": DATA})
        zen.link_file(rid, "w.pt", srv.url("/elsewhere/w.pt"))  # same 127.0.0.1, another port
        settings, store, _ = site(tmp_path)
        settings = replace(settings, sources=replace(settings.sources, zenodo_host=zen.base,
                                                     zenodo_token="tok-secret"))
        res = bounded(lambda: store.fetch(SHA, len(DATA), [f"zenodo:{rid}/w.pt"], SourceContext(settings=settings)))
        assert res.path.read_bytes() == DATA
    got = srv.headers_for("/elsewhere/w.pt")
    assert got, "the file was fetched from the linked host"
    for h in got:
        assert "tok-secret" not in " ".join(h.values()) and "Authorization" not in h
    assert not any("tok-secret" in p or "access_token" in p for p in srv.raw_paths)


def test_zenodo_token_is_not_sent_to_a_host_a_file_link_redirects_to(tmp_path: Path, srv) -> None:
    with FaultServer() as other:
        other.add("/w.pt", DATA)
        srv.add("/hop", b"", redirect_to=other.url("/w.pt"))
        with ZenodoEmulator(tokens={"tok-secret"}) as zen:
            rid = zen.publish_record({"w.pt": DATA})
            zen.link_file(rid, "w.pt", srv.url("/hop"))
            settings, store, _ = site(tmp_path)
            settings = replace(settings, sources=replace(settings.sources, zenodo_host=zen.base,
                                                         zenodo_token="tok-secret"))
            bounded(lambda: store.fetch(SHA, len(DATA), [f"zenodo:{rid}/w.pt"], SourceContext(settings=settings)))
        for server in (srv, other):
            assert all("Authorization" not in h for _, h in server.requests)


def test_zenodo_file_link_to_a_local_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"password=hunter2\n")
    with ZenodoEmulator() as zen:
        rid = zen.publish_record({"w.pt": DATA})
        zen.link_file(rid, "w.pt", secret.as_uri())
        settings, store, _ = site(tmp_path)
        settings = replace(settings, sources=replace(settings.sources, zenodo_host=zen.base))
        msg = fails(store, SourceContext(settings=settings), [f"zenodo:{rid}/w.pt"])
    assert "not an http(s) URL" in msg and not store.quarantined()


# --- 7: file:// sources of an upstream's records; quarantine permissions ----------------------


def secret_record(uri: str, sha: str = SHA, size: int = len(DATA)) -> Any:
    data = make_record(**{"package.artefact.sha256": sha, "package.artefact.size": size,
                          "package.artefact.sources": [uri]})
    return to_record(data)


def assert_nothing_of(store_root: Path, secret: bytes) -> None:
    for p in store_root.rglob("*") if store_root.exists() else []:
        if p.is_file():
            assert secret not in p.read_bytes(), f"{p} holds the secret"


def test_file_source_of_a_network_upstream_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "home" / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(b"-----BEGIN PRIVATE KEY----- hospital\n")
    settings = write_site(tmp_path / "site", [{"name": "public", "url": "https://example.org/index.git"}])
    entry = catalog_entry(secret_record(secret.as_uri()), upstream="public")
    with pytest.raises(ArtefactNotFound) as ei:
        bounded(lambda: prepare(entry, settings, purpose="mirror"))
    msg = str(ei.value)
    assert "refused to read the local path" in msg and "upstream 'public'" in msg and "file_roots" in msg
    assert_nothing_of(settings.store_dir, b"hospital")
    assert not Store(settings.store_dir).quarantined()


def test_file_source_of_an_upstream_not_in_site_toml_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret of the site\n")
    settings = Settings(home=tmp_path / "site")
    with pytest.raises(ArtefactNotFound, match="from no local folder"):
        bounded(lambda: prepare(catalog_entry(secret_record(secret.as_uri()), upstream="gone"), settings,
                                purpose="mirror"))
    assert_nothing_of(settings.store_dir, b"secret of the site")


def _rooted(tmp_path: Path) -> tuple[Settings, Path, Path]:
    root = tmp_path / "weights"
    root.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the root\n")
    settings = write_site(tmp_path / "site", [{"name": "public", "url": "https://example.org/index.git",
                                                "file_roots": [str(root)]}])
    return settings, root, secret


def test_file_source_escaping_its_root_by_dotdot_is_refused(tmp_path: Path) -> None:
    settings, root, secret = _rooted(tmp_path)
    uri = f"file://{root}/../secret.txt"
    with pytest.raises(ArtefactNotFound, match=f"only under {root}"):
        bounded(lambda: prepare(catalog_entry(secret_record(uri)), settings, purpose="mirror"))
    assert_nothing_of(settings.store_dir, b"outside the root")


def test_file_source_escaping_its_root_by_a_link_is_refused(tmp_path: Path) -> None:
    settings, root, secret = _rooted(tmp_path)
    (root / "w.bin").symlink_to(secret)
    (root / "sub").symlink_to(tmp_path, target_is_directory=True)
    for uri in ((root / "w.bin").as_uri(), (root / "sub" / "secret.txt").as_uri()):
        with pytest.raises(ArtefactNotFound, match=r"refused to read the local path .* \(-> "):
            bounded(lambda: prepare(catalog_entry(secret_record(uri)), settings, purpose="mirror"))
    assert_nothing_of(settings.store_dir, b"outside the root")


def test_file_source_inside_its_root_is_read(tmp_path: Path) -> None:
    settings, root, _ = _rooted(tmp_path)
    (root / "w.bin").write_bytes(DATA)
    store = Store(settings.store_dir)
    ctx = SourceContext(settings=settings, local_roots=settings.file_roots("public"), upstream="public")
    assert bounded(lambda: store.fetch(SHA, len(DATA), [(root / "w.bin").as_uri()], ctx)).path.read_bytes() == DATA


def test_local_folder_upstream_reads_its_own_folder_only(tmp_path: Path) -> None:
    index = tmp_path / "index"
    (index / "artefacts").mkdir(parents=True)
    (index / "artefacts" / "w.bin").write_bytes(DATA)
    other = tmp_path / "other.bin"
    other.write_bytes(DATA)
    settings = write_site(tmp_path / "site", [{"name": "local", "url": str(index)}])
    assert settings.file_roots("local") == (index.resolve(),)
    ctx = SourceContext(settings=settings, local_roots=settings.file_roots("local"), upstream="local")
    store = Store(settings.store_dir)
    assert "refused to read the local path" in fails(store, ctx, [other.as_uri()])
    res = bounded(lambda: store.fetch(SHA, len(DATA), [(index / "artefacts" / "w.bin").as_uri()], ctx))
    assert res.path.read_bytes() == DATA


def test_folder_mirror_named_by_a_record_obeys_the_roots(tmp_path: Path) -> None:
    up = tmp_path / "elsewhere"
    blob = up / "blobs" / "sha256" / SHA[:2] / SHA[2:]
    blob.parent.mkdir(parents=True)
    blob.write_bytes(DATA)
    settings, store, _ = site(tmp_path)
    ctx = SourceContext(settings=settings, local_roots=(), upstream="public")
    assert "refused to read the local path" in fails(store, ctx, [f"mirror:{up}"])
    # the same folder configured by the site itself is the site's own choice
    mine = replace(settings, sources=replace(settings.sources, mirrors=(str(up),)))
    res = bounded(lambda: store.fetch(SHA, len(DATA), [], SourceContext(settings=mine, local_roots=())))
    assert res.source == f"mirror:{up}"


def test_maintainer_machine_reads_any_file(tmp_path: Path) -> None:
    """No upstream (``index pin``, ``contribute``): local files anywhere are allowed."""
    f = tmp_path / "anywhere.bin"
    f.write_bytes(DATA)
    settings, store, ctx = site(tmp_path)
    assert ctx.local_roots is None and settings.file_roots(None) is None
    assert bounded(lambda: store.fetch(SHA, len(DATA), [f.as_uri()], ctx)).path.read_bytes() == DATA


def test_relative_file_roots_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_site(tmp_path / "site", [{"name": "u", "url": "https://x.org/i.git", "file_roots": ["weights"]}])


def test_quarantine_is_readable_by_the_site_user_only(tmp_path: Path, srv) -> None:
    srv.add("/bad.bin", DATA, tamper=True)
    settings, store, ctx = site(tmp_path)
    old = os.umask(0o022)
    try:
        fails(store, ctx, [srv.url("/bad.bin")])
    finally:
        os.umask(old)
    q = store.quarantine_dir
    assert stat.S_IMODE(q.stat().st_mode) == 0o700
    files = list(q.iterdir())
    assert len(files) == 2  # the bytes and the note
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_partial_download_is_not_world_readable(tmp_path: Path, srv) -> None:
    route = srv.add("/s.bin", DATA, stall_at=100_000)
    settings, store, ctx = site(tmp_path, http_read_timeout_s=10.0)
    t = threading.Thread(target=lambda: store.fetch(SHA, len(DATA), [srv.url("/s.bin")], ctx), daemon=True)
    t.start()
    try:
        assert route.reached.wait(10)
        part = store.tmp_dir / f"{SHA}.part"
        deadline = time.monotonic() + 10
        while not part.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stat.S_IMODE(part.stat().st_mode) & 0o077 == 0
    finally:
        route.release.set()
        t.join(10)
    assert store.has(SHA)


# --- adversarial HTTP: lying headers, resumes, redirects, encodings ------------------------


def test_content_length_larger_than_the_body_fails_cleanly(tmp_path: Path, srv) -> None:
    srv.add("/short.bin", DATA[:1000], headers={"Content-Length": str(len(DATA))})
    _, store, ctx = site(tmp_path)
    msg = fails(store, ctx, [srv.url("/short.bin")])
    assert "byte 1000" in msg  # closed early; the resume from there is refused (416)


def test_content_length_smaller_than_the_body_fails_cleanly(tmp_path: Path, srv) -> None:
    srv.add("/long.bin", DATA, headers={"Content-Length": "1000"}, ranges=False)
    _, store, ctx = site(tmp_path)
    msg = fails(store, ctx, [srv.url("/long.bin")])
    assert "the source has 1000 bytes but the record declares" in msg


def _prefix(store: Store, n: int) -> None:
    store.tmp_dir.mkdir(parents=True, exist_ok=True)
    (store.tmp_dir / f"{SHA}.part").write_bytes(DATA[:n])


def test_content_range_not_at_the_requested_offset_is_refused(tmp_path: Path, srv) -> None:
    srv.add("/r.bin", DATA, headers={"Content-Range": f"bytes 0-{len(DATA) - 1}/{len(DATA)}"})
    srv.add("/good.bin", DATA)
    _, store, ctx = site(tmp_path)
    _prefix(store, 50_000)
    with pytest.raises(ArtefactNotFound, match="bad Content-Range"):
        bounded(lambda: store.fetch(SHA, len(DATA), [srv.url("/r.bin")], ctx))
    # the good prefix survives for the next source, which resumes it
    res = bounded(lambda: store.fetch(SHA, len(DATA), [srv.url("/good.bin")], ctx))
    assert res.path.read_bytes() == DATA and res.resumed_from == 50_000


def test_200_with_another_body_to_a_range_request_is_caught_by_the_hash(tmp_path: Path, srv) -> None:
    other = os.urandom(len(DATA))
    srv.add("/x.bin", DATA, ranges=False, range_body=other)
    _, store, ctx = site(tmp_path)
    _prefix(store, 50_000)
    msg = fails(store, ctx, [srv.url("/x.bin")])
    assert "hash" in msg and not store.has(SHA)
    assert store.quarantined() and store.quarantined()[0]["actual_sha256"] == hashlib.sha256(other).hexdigest()


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/x",
                                    "data:application/octet-stream,abc"])
def test_redirect_to_a_non_http_scheme_is_refused(tmp_path: Path, srv, target: str) -> None:
    srv.add("/r.bin", b"", redirect_to=target)
    _, store, ctx = site(tmp_path)
    assert "redirect to a non-HTTP URL" in fails(store, ctx, [srv.url("/r.bin")])


def test_credentials_do_not_follow_a_redirect_to_another_host(tmp_path: Path, srv) -> None:
    with FaultServer() as other:
        other.add("/w.bin", DATA)
        srv.add("/r.bin", b"", redirect_to=other.url("/w.bin"))
        _, store, ctx = site(tmp_path)
        bounded(lambda: store.fetch(SHA, len(DATA), [srv.url("/r.bin", userinfo="u:pw")], ctx))
        assert srv.headers_for("/r.bin")[0].get("Authorization", "").startswith("Basic ")
        assert all("Authorization" not in h for h in other.headers_for("/w.bin"))


def test_gzip_content_encoding_is_never_decompressed(tmp_path: Path, srv) -> None:
    """A 64 MiB gzip bomb declared as the artefact: the bytes hashed are the bytes sent."""
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    srv.add("/bomb.bin", bomb, headers={"Content-Encoding": "gzip"})
    _, store, ctx = site(tmp_path)
    msg = fails(store, ctx, [srv.url("/bomb.bin")], size=None)
    assert "hash" in msg
    assert store.quarantined()[0]["size"] == len(bomb)
    assert all(h.get("Accept-Encoding") == "identity" for h in srv.headers_for("/bomb.bin"))


def test_defaults_are_documented_and_sane() -> None:
    d = SourceOverrides()
    assert d.download_deadline_s >= 600 and d.min_rate_bytes_per_s > 0 and d.max_unsized_bytes >= 1 << 30
    docs = (Path(__file__).resolve().parent.parent / "docs" / "sites.md").read_text()
    for key in ("download_deadline_s", "min_rate_bytes_per_s", "min_rate_window_s", "max_unsized_bytes",
                "file_roots"):
        assert key in docs, key
