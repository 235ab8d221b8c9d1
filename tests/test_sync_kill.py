"""kill -9 of `synthmed sync` at random points: the next sync completes, and the catalog
then equals a fresh `catalog rebuild`."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from synthmed.daemon.jobs import JobContext, mirror_job
from synthmed.daemon.rebuild import rebuild_catalog
from synthmed.daemon.sync import sync_all
from synthmed.registry.catalog import Catalog

from helpers import REPO_ROOT
from helpers.records import unverified, with_artefact, write_record
from helpers.repos import commit, init_repo
from helpers.sites import cli_env, write_site

TRIALS = 20


def _sync_cmd(home: Path) -> list[str]:
    return [sys.executable, "-m", "synthmed.cli", "-q", "--site", str(home), "sync"]


@pytest.mark.slow
def test_kill_sync_at_random_points(tmp_path: Path, make_record: Any) -> None:
    rng = random.Random(1234)
    repo = init_repo(tmp_path / "idx")
    root = Path(repo.working_dir)
    for i in range(20):
        write_record(root, unverified(f"base-{i:02d}"), subfolder="index")
    commit(repo, "base")
    settings = write_site(tmp_path / "site", [{"name": "public", "url": repo.working_dir, "subfolder": "index"}])

    # how long the interpreter and imports take, and one full sync process: the kills are
    # spread over the part of the process's life where it does the work
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "synthmed.cli", "--help"], cwd=REPO_ROOT, env=cli_env(), check=True,
                   capture_output=True)
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(_sync_cmd(settings.home), cwd=REPO_ROOT, env=cli_env(), check=True, capture_output=True)
    full = time.perf_counter() - t0

    killed_running = 0
    for trial in range(TRIALS):
        # an upstream change per trial: new records (some with artefacts), an edit, a deletion
        for j in range(8):
            if j % 3 == 0:
                write_record(root, with_artefact(root, f"t{trial:02d}-m{j}", subfolder="index"),
                           subfolder="index")
            else:
                write_record(root, unverified(f"t{trial:02d}-m{j}", title=f"trial {trial}"),
                           subfolder="index")
        write_record(root, unverified(f"base-{trial % 20:02d}", title=f"edited in trial {trial}"),
                   subfolder="index")
        if trial:
            (root / "index" / "models" / f"t{trial - 1:02d}-m1" / "1.0.0.json").unlink()
        commit(repo, f"trial {trial}")

        proc = subprocess.Popen(_sync_cmd(settings.home), cwd=REPO_ROOT, env=cli_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(min(0.9 * startup, 0.8 * full), 1.05 * full))
        if proc.poll() is None:
            killed_running += 1
        proc.send_signal(signal.SIGKILL)  # a no-op if it already finished
        proc.wait()

        # the next sync completes ...
        with Catalog.open(settings.catalog_path, readonly=False) as cat:
            results = sync_all(settings, cat)
            assert [r.status for r in results] == ["ok"], [r.reason for r in results]
            assert results[0].new_commit == repo.head.commit.hexsha
            mirror_job(JobContext(settings, cat))
            live = cat.snapshot()
        # ... and the catalog then equals a fresh rebuild
        fresh = tmp_path / f"rebuild-{trial}.db"
        rebuild_catalog(settings, fresh)
        with Catalog.open(fresh) as cat:
            assert cat.snapshot() == live, f"trial {trial}: the catalog differs from a rebuild"
        for suffix in ("", "-wal", "-shm"):
            Path(str(fresh) + suffix).unlink(missing_ok=True)
    assert killed_running >= TRIALS // 2  # most kills hit a running sync


def test_a_fetch_waits_for_a_git_left_running_by_a_killed_sync(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 of a sync leaves its git child running; the next sync's fetch finds the ref
    locked ("cannot lock ref" / ".lock: File exists") and waits for it instead of failing."""
    import threading

    from synthmed.daemon import upstreams
    from synthmed.daemon.upstreams import FETCHED_REF, UpstreamRepo
    from synthmed.registry.errors import SyncRefused

    src = init_repo(tmp_path / "idx")
    head = commit(src, "one")
    mirror = UpstreamRepo(tmp_path / "mirror").ensure()
    lock = mirror.path / (FETCHED_REF + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")  # what a git that is still updating the ref holds
    release = threading.Timer(1.0, lock.unlink)
    release.start()
    try:
        assert mirror.fetch(str(src.working_dir), "main") == head
    finally:
        release.cancel()
    # a lock nobody releases: a clear refusal naming the file, after a bounded wait
    commit(src, "two")  # something to update
    lock.write_text("")
    monkeypatch.setattr(upstreams, "LOCK_RETRY_TOTAL_S", 0.5)
    with pytest.raises(SyncRefused) as ei:
        mirror.fetch(str(src.working_dir), "main")
    assert "remove the stale .lock file" in str(ei.value) and ".lock" in str(ei.value)
