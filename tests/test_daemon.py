"""The daemon: --once, jobs (mirror, scrub, gc), register_job, one instance per site, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import git
import pytest
from apscheduler.triggers.interval import IntervalTrigger

from synthmed.daemon.jobs import JobContext
from synthmed.daemon.lock import SiteLock
from synthmed.daemon.service import JOB_PROVIDERS, Daemon, run_daemon
from synthmed.registry.errors import SiteLocked
from synthmed.registry.artefacts.store import Store

from helpers import REPO_ROOT
from helpers.records import unverified, with_artefact, write_record
from helpers.repos import commit, init_repo
from helpers.sites import catalog, cli_env, run_cli, write_site


#: the jobs of this issue (the nightly `test` job registers itself when its module is imported)
CORE = ["sync", "mirror", "scrub", "gc"]


@pytest.fixture
def site(tmp_path: Path, make_record: Any) -> tuple[Any, git.Repo]:
    repo = init_repo(tmp_path / "idx")
    root = Path(repo.working_dir)
    write_record(root, with_artefact(root, "lung-gan", modality=["CT"]))
    write_record(root, with_artefact(root, "brain-gan", modality=["MRI"]))
    write_record(root, unverified("draft-gan"))
    commit(repo)
    settings = write_site(tmp_path / "site", [{"name": "public", "url": repo.working_dir}])
    return settings, repo


def test_once_runs_every_job(site: Any) -> None:
    settings, repo = site
    assert run_daemon(settings, once=True, only=CORE) == 0
    store = Store(settings.store_dir)
    with catalog(settings) as cat:
        shas = {e.id: e.record.sha256 for e in cat.models.list_models()}
        assert all(store.has(shas[i]) for i in ("lung-gan", "brain-gan"))
        assert (settings.packages_dir / shas["lung-gan"]).is_dir()
        assert {a["sha256"]: a["state"] for a in cat.artefacts.rows()} == {shas["lung-gan"]: "verified",
                                                                           shas["brain-gan"]: "verified"}
        assert cat.models.resolve("lung-gan").artefact_state == "verified"
        assert cat.models.resolve("draft-gan").artefact_state == "unverified"
        jobs = {r["job"] for r in cat.jobs.last_runs()}
        assert jobs == set(CORE)
        mirror = [r for r in cat.jobs.last_runs() if r["job"] == "mirror"][0]
        assert "1 unverified record(s) skipped" in mirror["reason"]


def test_mirror_policy_select(tmp_path: Path, site: Any) -> None:
    settings, repo = site
    settings = write_site(settings.home, [{"name": "public", "url": repo.working_dir}],
                          mirror={"policy": "select", "modalities": ["mri"]})
    run_daemon(settings, once=True, only=["sync", "mirror"])
    with catalog(settings) as cat:
        assert {cat.models.resolve(r).id for r in ("brain-gan",) if cat.models.resolve(r).artefact_state == "verified"} == {"brain-gan"}
        assert cat.models.resolve("lung-gan").artefact_state == "missing"


def test_failing_model_never_stops_the_others(tmp_path: Path, make_record: Any) -> None:
    repo = init_repo(tmp_path / "idx")
    root = Path(repo.working_dir)
    good = with_artefact(root, "good-gan")
    bad = with_artefact(root, "bad-gan")
    bad["package"]["artefact"]["sources"] = ["index:artefacts/nowhere.bin"]
    write_record(root, good)
    write_record(root, bad)
    commit(repo)
    settings = write_site(tmp_path / "site", [{"name": "public", "url": repo.working_dir}])
    run_daemon(settings, once=True, only=["sync", "mirror"])
    with catalog(settings) as cat:
        assert cat.models.resolve("good-gan").artefact_state == "verified"
        assert cat.models.resolve("bad-gan").artefact_state == "missing"
        [fail] = [r for r in cat.jobs.runs("mirror") if r["subject"]]
        assert fail["subject"] == "public/bad-gan@1.0.0" and "nowhere.bin" in fail["reason"]


def test_scrub_refetches_and_gc_removes(site: Any, make_record: Any) -> None:
    settings, repo = site
    run_daemon(settings, once=True, only=CORE)
    store = Store(settings.store_dir)
    with catalog(settings) as cat:
        lung = cat.models.resolve("lung-gan").record.sha256
        brain = cat.models.resolve("brain-gan").record.sha256
    assert lung and brain
    blob = store.blob_path(lung)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"bit rot")
    run_daemon(settings, once=True, only=["scrub"])
    assert store.verify_blob(lung)
    with catalog(settings) as cat:
        subjects = [(r["subject"], r["reason"]) for r in cat.jobs.runs("scrub") if r["subject"]]
        assert {s for s, _ in subjects} == {lung}
        assert any(reason.startswith("blob corrupt") for _, reason in subjects)
        assert {a["sha256"]: a["state"] for a in cat.artefacts.rows()}[lung] == "verified"
    # the single-file (octet-stream) package was a hard link to the rotten blob: scrub removed
    # it too, and its repair (prepare) unpacked it again from the re-fetched blob
    assert any("unpacked package changed" in reason for _, reason in subjects)
    from synthmed.registry.artefacts.packages_folder import PackagesFolder

    assert (settings.packages_dir / lung).is_dir() and PackagesFolder(settings.packages_dir).check(lung) is None
    # yank brain-gan: gc removes its blob and package
    root = Path(repo.working_dir)
    rec = json.loads((root / "models/brain-gan/1.0.0.json").read_text())
    rec["status"], rec["status_reason"] = "yanked", "withdrawn for the test"
    write_record(root, rec)
    commit(repo)
    run_daemon(settings, once=True, only=["sync", "gc"])
    assert not store.has(brain) and store.has(lung)
    assert not (settings.packages_dir / brain).exists()


def test_register_job_and_a_failing_job(site: Any) -> None:
    settings, _ = site
    calls: list[str] = []

    def custom(ctx: JobContext) -> str:
        calls.append(ctx.settings.name)
        return "done"

    def broken(ctx: JobContext) -> str:
        raise RuntimeError("model exploded")

    daemon = Daemon(settings)
    daemon.register_default_jobs()
    daemon.register_job("broken", broken, IntervalTrigger(hours=1))
    daemon.register_job("custom", custom, IntervalTrigger(hours=24))
    daemon.jobs = {k: v for k, v in daemon.jobs.items() if k in {*CORE, "broken", "custom"}}
    results = daemon.run_once()
    assert results == {"sync": True, "mirror": True, "scrub": True, "gc": True, "broken": False, "custom": True}
    assert list(results)[:4] == CORE  # registration order
    assert calls == [settings.name]
    with catalog(settings) as cat:
        [row] = cat.jobs.runs("broken")
        assert row["status"] == "failed" and "model exploded" in row["reason"]


def test_job_providers_hook(site: Any) -> None:
    settings, _ = site
    seen = []
    JOB_PROVIDERS.append(lambda d: d.register_job("test", lambda ctx: seen.append(1), None))
    try:
        d = Daemon(settings)
        d.register_default_jobs()
        assert "test" in d.jobs
        d.run_job("test")
        assert seen == [1]
    finally:
        JOB_PROVIDERS.pop()


def test_lock_names_the_holder(tmp_path: Path) -> None:
    with SiteLock(tmp_path, "first holder"):
        with pytest.raises(SiteLocked, match=f"PID {os.getpid()}") as exc:
            SiteLock(tmp_path, "second").acquire()
        assert "first holder" in str(exc.value)
    with SiteLock(tmp_path, "again"):  # released cleanly
        pass


@pytest.mark.slow
def test_two_daemons_on_one_site(site: Any) -> None:
    settings, _ = site
    home = settings.home
    first = subprocess.Popen([sys.executable, "-m", "synthmed.cli", "--site", str(home), "daemon", "run"],
                             cwd=str(REPO_ROOT), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        lock = home / "site.lock"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for the lock, not for the scheduler
            if lock.exists() and lock.read_text().startswith(f"{first.pid} "):
                break
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        else:
            pytest.fail("the first daemon never took the lock")
        second = run_cli(["--site", str(home), "daemon", "run", "--once"], timeout=60)
        assert second.returncode == 1
        assert f"locked by PID {first.pid}" in second.stderr and "synthmed daemon run" in second.stderr
        sync = run_cli(["--site", str(home), "sync"], timeout=60)
        assert sync.returncode == 1 and f"PID {first.pid}" in sync.stderr
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
        assert "SIGTERM" in err or "stopping" in err or first.returncode == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # the lock is free again
    third = run_cli(["--site", str(home), "daemon", "run", "--once", "--job", "gc"], timeout=60)
    assert third.returncode == 0, third.stderr


@pytest.mark.slow
def test_sigint_stops_cleanly(site: Any) -> None:
    settings, _ = site
    p = subprocess.Popen([sys.executable, "-m", "synthmed.cli", "-v", "--site", str(settings.home), "daemon", "run"],
                         cwd=str(REPO_ROOT), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        lock = settings.home / "site.lock"
        while time.monotonic() < deadline and not (lock.exists() and lock.read_text().startswith(f"{p.pid} ")):
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert "daemon stopped" in err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
