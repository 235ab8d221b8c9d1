"""kill -9 of a download at several offsets, then a rerun: never a partial file under
blobs/, and the download completes, resuming with Range."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers.servers import FaultServer
from helpers.sites import fast_settings
from synthmed.registry.artefacts.sources.base import SourceContext
from synthmed.registry.artefacts.store import Store

pytestmark = pytest.mark.slow  # kill -9 fault injection

CHUNK = 64 * 1024
DATA = os.urandom(16 * CHUNK)
SHA = hashlib.sha256(DATA).hexdigest()

CHILD = textwrap.dedent(
    """
    import sys
    from dataclasses import replace
    from pathlib import Path
    from synthmed.registry.settings import load_settings
    from synthmed.registry.artefacts.sources.base import SourceContext
    from synthmed.registry.artefacts.store import Store

    home, url, sha, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    s = load_settings(home, environ={})
    s = replace(s, sources=replace(s.sources, http_read_timeout_s=20.0, http_retries=0))
    store = Store(s.store_dir, chunk_size=%d)
    store.fetch(sha, size, [url], SourceContext(settings=s),
                progress=lambda done, total: print(done, flush=True))
    print("done", flush=True)
    """
    % CHUNK
)


def blob_files(store: Store) -> list[Path]:
    return [p for p in store.root.joinpath("blobs").rglob("*") if p.is_file()] if store.root.joinpath("blobs").exists() else []


def test_kill_9_at_several_offsets_then_resume(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "site")
    store = Store(settings.store_dir, chunk_size=CHUNK)
    part = store.tmp_dir / f"{SHA}.part"
    with FaultServer() as srv:
        for kill_at in (3 * CHUNK, 7 * CHUNK, 12 * CHUNK):
            route = srv.add("/big.bin", DATA, stall_at=kill_at)
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(settings.home), srv.url("/big.bin"), SHA, str(len(DATA))],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                assert child.stdout is not None
                for line in child.stdout:  # the child reports each chunk it wrote
                    if line.strip() == "done" or int(line) >= kill_at:
                        break
                assert route.reached.wait(10), "the server never reached the stall point"
                os.kill(child.pid, signal.SIGKILL)
                child.wait(10)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
                route.release.set()
            assert child.returncode == -signal.SIGKILL, child.stderr.read() if child.stderr else ""
            assert blob_files(store) == [], "a killed download left a file under blobs/"
            assert part.exists() and part.stat().st_size == kill_at
        # the rerun resumes with Range from where the last one was killed
        srv.add("/big.bin", DATA)
        res = store.fetch(SHA, len(DATA), [srv.url("/big.bin")], SourceContext(settings=settings))
        assert res.resumed_from == 12 * CHUNK
        assert res.path.read_bytes() == DATA
        ranges = [h.get("Range") for h in srv.headers_for("/big.bin")]
        assert ranges == [None, f"bytes={3 * CHUNK}-", f"bytes={7 * CHUNK}-", f"bytes={12 * CHUNK}-"]
    assert not part.exists()
    assert blob_files(store) == [store.blob_path(SHA)]


def test_kill_9_while_streaming_from_a_throttled_server(tmp_path: Path) -> None:
    """Kills land while bytes are flowing (not at a pause): whatever the offset, nothing
    partial reaches blobs/, and the rerun completes from the prefix on disk."""
    import random

    settings = fast_settings(tmp_path / "site")
    store = Store(settings.store_dir, chunk_size=CHUNK)
    part = store.tmp_dir / f"{SHA}.part"
    rng = random.Random(7)
    with FaultServer() as srv:
        srv.add("/slow.bin", DATA, pace_s=0.002)  # about 30 MB/s: the child writes for ~0.5 s
        for _ in range(3):
            kill_after = rng.randrange(1, 12) * CHUNK + rng.randrange(CHUNK)
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(settings.home), srv.url("/slow.bin"), SHA, str(len(DATA))],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                assert child.stdout is not None
                for line in child.stdout:
                    if line.strip() == "done" or int(line) >= kill_after:
                        break
                os.kill(child.pid, signal.SIGKILL)
                child.wait(10)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            assert blob_files(store) in ([], [store.blob_path(SHA)])
            if not blob_files(store):
                assert part.exists() and part.stat().st_size <= len(DATA)
        res = store.fetch(SHA, len(DATA), [srv.url("/slow.bin")], SourceContext(settings=settings))
        assert res.path.read_bytes() == DATA
    assert not part.exists()
