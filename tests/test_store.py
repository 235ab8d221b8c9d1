"""The store: file, index and mirror sources, verify-on-open, `synthmed verify`."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from helpers.repos import commit
from helpers.servers import FaultServer, serve_folder
from helpers.sites import fast_settings
from synthmed.cli import main as cli_main
from synthmed.registry.errors import ArtefactError, ArtefactNotFound, BlobCorrupt, SourceError
from synthmed.registry.artefacts.sources import SourceContext, last_path_part, source_for_uri
from synthmed.registry.artefacts.store import Store

DATA = os.urandom(200_000)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def site(tmp_path: Path):
    settings = fast_settings(tmp_path / "site")
    return settings, Store(settings.store_dir), SourceContext(settings=settings)


def put(store: Store, ctx: SourceContext, tmp_path: Path, data: bytes = DATA) -> str:
    p = tmp_path / f"src-{hashlib.sha256(data).hexdigest()[:8]}.bin"
    p.write_bytes(data)
    return store.fetch(hashlib.sha256(data).hexdigest(), len(data), [p.as_uri()], ctx).sha256


def corrupt(path: Path, keep_mtime: bool = False) -> None:
    st = path.stat()
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(10)
        b = fh.read(1)
        fh.seek(10)
        fh.write(bytes([b[0] ^ 1]))
    os.chmod(path, 0o444)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_file_source_and_layout(site, tmp_path: Path) -> None:
    settings, store, ctx = site
    sha = put(store, ctx, tmp_path)
    assert store.blob_path(sha) == settings.store_dir / "blobs" / "sha256" / sha[:2] / sha[2:]
    assert list(store.iter_blobs()) == [sha]
    with store.open_verified(sha) as fh:
        assert fh.read() == DATA
    store.remove(sha)
    assert not store.has(sha) and list(store.iter_blobs()) == []


def test_missing_file_source_names_the_path(site, tmp_path: Path) -> None:
    settings, store, ctx = site
    uri = (tmp_path / "nope.bin").as_uri()
    with pytest.raises(ArtefactNotFound) as ei:
        store.fetch(SHA, len(DATA), [uri, "gopher://x/y"], ctx)
    msg = str(ei.value)
    assert f"{uri}: no such file" in msg and "gopher://x/y: unknown source scheme" in msg
    assert "2 tried" in msg


def test_corrupt_blob_refused_on_open_and_quarantined_by_verify(site, tmp_path: Path, capsys) -> None:
    settings, store, ctx = site
    sha = put(store, ctx, tmp_path)
    other = put(store, ctx, tmp_path, b"another blob")
    with store.open_verified(sha):
        pass
    corrupt(store.blob_path(sha))
    with pytest.raises(BlobCorrupt) as ei:
        store.open_verified(sha)
    assert str(store.blob_path(sha)) in str(ei.value) and "synthmed verify" in str(ei.value)
    rc = cli_main(["--site", str(settings.home), "verify", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert out["checked"] == 2 and out["ok"] == 1 and out["corrupt"][0]["sha256"] == sha
    assert not store.has(sha) and store.has(other)
    notes = store.quarantined()
    assert notes[0]["expected_sha256"] == sha and notes[0]["reason"] == "blob corrupt on disk"
    assert cli_main(["--site", str(settings.home), "verify"]) == 0
    # it can be fetched again
    assert put(store, ctx, tmp_path) == sha


def test_verify_finds_corruption_that_kept_size_and_mtime(site, tmp_path: Path) -> None:
    settings, store, ctx = site
    sha = put(store, ctx, tmp_path)
    with store.open_verified(sha):
        pass
    corrupt(store.blob_path(sha), keep_mtime=True)
    # the remembered (inode, size, mtime) still match: open trusts it; verify does not
    with store.open_verified(sha):
        pass
    report = store.verify_all()
    assert [c["sha256"] for c in report.corrupt] == [sha]


def test_open_verified_hashes_once(site, tmp_path: Path, monkeypatch) -> None:
    import synthmed.registry.artefacts.store as store_mod

    settings, store, ctx = site
    sha = put(store, ctx, tmp_path)
    Store(settings.store_dir).state_path.unlink()
    calls = []
    real = store_mod.hash_file
    monkeypatch.setattr(store_mod, "hash_file", lambda *a, **k: calls.append(1) or real(*a, **k))
    for _ in range(3):
        with store.open_verified(sha) as fh:
            assert fh.read(5) == DATA[:5]
    assert len(calls) == 1


def test_open_missing_blob(site) -> None:
    settings, store, ctx = site
    with pytest.raises(ArtefactNotFound):
        store.open_verified(SHA)


def test_stray_file_in_blobs_is_quarantined(site, tmp_path: Path) -> None:
    settings, store, ctx = site
    put(store, ctx, tmp_path)
    stray = store.blobs_dir / "zz" / "not-a-blob"
    stray.parent.mkdir()
    stray.write_bytes(b"x")
    report = store.verify_all()
    assert report.ok == 1 and len(report.corrupt) == 1 and not stray.exists()


def test_index_source_reads_the_commit_without_checkout(index_repo, site, tmp_path: Path) -> None:
    settings, store, _ = site
    root = Path(index_repo.working_tree_dir)
    art = root / "index" / "artefacts" / "toy" / "w.bin"
    art.parent.mkdir(parents=True)
    art.write_bytes(DATA)
    sha = commit(index_repo, "add artefact")
    art.write_bytes(b"changed in the working tree only")
    ctx = SourceContext(settings=settings, index_repo=root, index_commit=sha, index_subfolder="index")
    res = store.fetch(SHA, len(DATA), ["index:artefacts/toy/w.bin"], ctx)
    assert res.path.read_bytes() == DATA
    with pytest.raises(SourceError, match="no file index/artefacts/toy/nope.bin"):
        source_for_uri("index:artefacts/toy/nope.bin", ctx).open()
    with pytest.raises(SourceError, match="stay inside the index folder"):
        source_for_uri("index:../secret", ctx)


def test_index_source_working_tree_stays_inside(site, tmp_path: Path) -> None:
    settings, store, _ = site
    idx = tmp_path / "idx"
    (idx / "artefacts").mkdir(parents=True)
    (tmp_path / "outside.bin").write_bytes(b"secret")
    os.symlink(tmp_path / "outside.bin", idx / "artefacts" / "link.bin")
    ctx = SourceContext(settings=settings, index_dir=idx)
    with pytest.raises(SourceError, match="outside the index folder"):
        source_for_uri("index:artefacts/link.bin", ctx).open()


def test_mirror_sources_folder_and_http(tmp_path: Path) -> None:
    # an upstream site with the blob
    up = fast_settings(tmp_path / "upstream")
    up_store = Store(up.store_dir)
    put(up_store, SourceContext(settings=up), tmp_path)
    # a folder mirror named in the record
    down = fast_settings(tmp_path / "down")
    store = Store(down.store_dir)
    res = store.fetch(SHA, len(DATA), [f"mirror:{up.store_dir}"], SourceContext(settings=down))
    assert res.path.read_bytes() == DATA
    # an HTTP mirror configured by the site is tried before the record's sources
    store.remove(SHA)
    with serve_folder(up.store_dir) as base, FaultServer() as srv:
        srv.add("/orig.bin", DATA)
        site = replace(down, sources=replace(down.sources, mirrors=(base,)))
        res = store.fetch(SHA, len(DATA), [srv.url("/orig.bin")], SourceContext(settings=site))
        assert res.source == f"mirror:{base}" and srv.requests == []
        # a mirror that withholds the blob: the record's source is used
        store.remove(SHA)
        site2 = replace(down, sources=replace(down.sources, mirrors=(str(tmp_path / "empty-store"),)))
        res = store.fetch(SHA, len(DATA), [srv.url("/orig.bin")], SourceContext(settings=site2))
        assert res.source == srv.url("/orig.bin")

def test_mirror_substituting_bytes_is_caught(tmp_path: Path) -> None:
    up = fast_settings(tmp_path / "upstream")
    fake = Path(up.store_dir) / "blobs" / "sha256" / SHA[:2] / SHA[2:]
    fake.parent.mkdir(parents=True)
    fake.write_bytes(os.urandom(len(DATA)))
    down = fast_settings(tmp_path / "down")
    store = Store(down.store_dir)
    with pytest.raises(ArtefactNotFound, match="hash"):
        store.fetch(SHA, len(DATA), [f"mirror:{up.store_dir}"], SourceContext(settings=down))
    assert not store.has(SHA)


def test_add_file_and_last_path_part(site, tmp_path: Path) -> None:
    settings, store, ctx = site
    p = tmp_path / "w.bin"
    p.write_bytes(DATA)
    assert store.add_file(p).sha256 == SHA
    assert last_path_part("zenodo:123/model.pt") == "model.pt"
    assert last_path_part("dvc:https://g.org/r.git#models/w.pth@v1") == "w.pth"
    assert last_path_part("https://h.org/a/b.safetensors?dl=1") == "b.safetensors"
    assert last_path_part("index:artefacts/x/y.zip") == "y.zip"


def test_two_fetches_of_one_blob_download_it_once(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "site", http_read_timeout_s=10.0)
    ctx = SourceContext(settings=settings)
    results: list[object] = []
    with FaultServer() as srv:
        route = srv.add("/a.bin", DATA, stall_at=100_000)

        def fetch() -> None:
            try:
                results.append(Store(settings.store_dir).fetch(SHA, len(DATA), [srv.url("/a.bin")], ctx).source)
            except Exception as exc:  # pragma: no cover - reported below
                results.append(exc)

        first = threading.Thread(target=fetch)
        first.start()
        assert route.reached.wait(10)
        second = threading.Thread(target=fetch)
        second.start()
        route.release.set()
        first.join(10)
        second.join(10)
    assert sorted(map(str, results)) == sorted([srv.url("/a.bin"), "store"])
    assert len(srv.requests) == 1


def test_large_download_bypasses_the_page_cache(tmp_path: Path, monkeypatch) -> None:
    import synthmed.registry.artefacts.store as store_mod

    big = os.urandom(store_mod.DIRECT_MIN + 3 * 4096 + 123)  # an unaligned tail
    sha = hashlib.sha256(big).hexdigest()
    src = tmp_path / "big.bin"
    src.write_bytes(big)
    opened: list[int | None] = []
    real = store_mod.copy_pipeline.open_direct
    monkeypatch.setattr(store_mod.copy_pipeline, "open_direct", lambda p: opened.append(real(p)) or opened[-1])
    settings = fast_settings(tmp_path / "site")
    store = Store(settings.store_dir)
    ctx = SourceContext(settings=settings)
    assert store.fetch(sha, len(big), [src.as_uri()], ctx).path.read_bytes() == big
    with FaultServer() as srv:
        srv.add("/big.bin", big, truncate_at=5 * 4096 + 17, truncate_times=1)  # resume at an unaligned byte
        store.remove(sha)
        assert store.fetch(sha, len(big), [srv.url("/big.bin")], ctx).path.read_bytes() == big
    assert len(opened) == 2


def test_orphaned_unpinned_partials_are_removed(site, tmp_path: Path) -> None:
    settings, store, ctx = site
    store.tmp_dir.mkdir(parents=True)
    dead = subprocess_pid_that_exited()
    orphan = store.tmp_dir / f"new-{dead}-abc.part"
    orphan.write_bytes(b"x")
    mine = store.tmp_dir / f"new-{os.getpid()}-abc.part"
    mine.write_bytes(b"x")
    p = tmp_path / "w.bin"
    p.write_bytes(DATA)
    store.add_from_sources([p.as_uri()], ctx)
    assert not orphan.exists() and mine.exists()


def subprocess_pid_that_exited() -> int:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_bare_mirror_uses_the_site_mirrors(tmp_path: Path) -> None:
    from synthmed.registry.artefacts.sources.base import candidate_uris

    s = fast_settings(tmp_path / "site")
    assert candidate_uris(["mirror:", "https://x.org/a"], s, SHA) == ["mirror:", "https://x.org/a"]
    s2 = replace(s, sources=replace(s.sources, mirrors=("/srv/a/store",)))
    assert candidate_uris(["mirror:", "https://x.org/a"], s2, SHA) == ["mirror:/srv/a/store", "https://x.org/a"]
    assert candidate_uris(["https://x.org/a"], s2, None) == ["https://x.org/a"]


def test_a_failing_write_stops_the_pipeline_and_leaves_no_temp_file(site, tmp_path: Path, monkeypatch) -> None:
    import errno

    import synthmed.registry.artefacts.store as store_mod

    settings, _, ctx = site
    store = Store(settings.store_dir, chunk_size=64 * 1024)  # many chunks in flight
    big = os.urandom(40 * 64 * 1024)
    src = tmp_path / "big.bin"
    src.write_bytes(big)
    real = os.pwrite
    written: list[int] = []

    def pwrite(fd: int, data: object, pos: int) -> int:
        if pos >= 10 * 64 * 1024:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(pos)
        return real(fd, data, pos)  # type: ignore[arg-type]

    monkeypatch.setattr(store_mod.os, "pwrite", pwrite)
    with pytest.raises(ArtefactError) as ei:  # the store's own failure, not the source's
        store.fetch(hashlib.sha256(big).hexdigest(), len(big), [src.as_uri()], ctx)
    assert "No space left on device" in str(ei.value)
    assert written and not list(store.tmp_dir.iterdir()) and not list(store.iter_blobs())
