"""Operating a site's daemon: SIGTERM ends after the running job and starts no queued one;
SIGHUP re-reads site.toml (a bad file keeps the old settings and says why); ``status`` shows
the daemon and is a health check (exit 3 when an upstream is stale or failing or a model fails)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

from synthmed.cli import main
from synthmed.daemon import runstate, service
from synthmed.daemon.jobs import JobContext
from synthmed.daemon.status import site_status
from synthmed.registry.settings import Settings

from helpers.sites import write_site


def _wait(cond: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def _in_thread(fn: Callable[[], None]) -> threading.Thread:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            os.kill(os.getpid(), signal.SIGTERM)  # never leave the daemon running
    t = threading.Thread(target=run, daemon=True)
    t.errors = errors  # type: ignore[attr-defined]
    t.start()
    return t


def test_sigterm_finishes_the_running_job_and_starts_no_queued_one(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    settings = write_site(tmp_path / "site", [])
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow_sync(ctx: JobContext) -> str:
        ctx.report_download({"ref": "public/x@1.0.0", "sha256": "ab" * 32, "bytes": 10, "total": 20,
                             "rate_bytes_per_s": 5, "since": "now"})
        started.set()
        assert release.wait(30)
        ran.append("sync finished")
        return "done"

    def mirror(ctx: JobContext) -> str:
        ran.append("mirror")
        return "done"

    def provider(daemon: service.Daemon) -> None:  # both due at start; one worker thread: mirror queues
        daemon.register_job("sync", slow_sync, daemon.jobs["sync"].trigger)
        daemon.register_job("mirror", mirror, daemon.jobs["mirror"].trigger)

    monkeypatch.setattr(service, "JOB_PROVIDERS", [provider])

    def drive() -> None:
        assert started.wait(30)
        state = runstate.read(settings)
        assert state["running"] and state["pid"] == os.getpid() and state["job"] == "sync"
        assert state["download"]["bytes"] == 10  # the running download, as the mirror job reports it
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)  # the daemon has seen the signal before the running job ends
        release.set()

    t = _in_thread(drive)
    assert service.run_daemon(settings) == 0
    t.join(10)
    assert not t.errors, t.errors  # type: ignore[attr-defined]
    assert ran == ["sync finished"]  # the running job finished; the queued mirror never started
    assert not runstate.path(settings).exists()  # no stale daemon.json
    assert not runstate.read(settings)["running"]


def test_sighup_reloads_site_toml_and_keeps_the_old_settings_when_it_is_bad(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    settings = write_site(tmp_path / "site", [], schedules={"sync_interval_minutes": 60})
    toml = settings.site_file
    good_before = toml.read_text()
    seen: list[Settings] = []

    def record(ctx: JobContext) -> str:
        seen.append(ctx.settings)
        return "ok"

    def provider(daemon: service.Daemon) -> None:
        daemon.register_job("sync", record, daemon.jobs["sync"].trigger)
        daemon.register_job("mirror", record, daemon.jobs["mirror"].trigger)

    monkeypatch.setattr(service, "JOB_PROVIDERS", [provider])

    def next_sync_minutes() -> float:
        nxt = runstate.read(settings)["next_runs"]["sync"]
        return (datetime.fromisoformat(nxt) - datetime.now(timezone.utc)).total_seconds() / 60

    def drive() -> None:
        _wait(lambda: len(seen) >= 2 and runstate.read(settings).get("job") is None)
        assert 55 < next_sync_minutes() <= 60
        # a bad file: refused, logged, the old settings stay
        toml.write_text(good_before.replace("sync_interval_minutes = 60", "sync_interval_minutes = 'often'"))
        os.kill(os.getpid(), signal.SIGHUP)
        _wait(lambda: runstate.read(settings).get("reload_error") is not None)
        st = site_status(settings, None)
        assert st["daemon"]["running"] and "sync_interval_minutes" in st["daemon"]["reload_error"]
        assert 55 < next_sync_minutes() <= 60
        # a good one: used from now on (the schedule moves)
        toml.write_text(good_before.replace("sync_interval_minutes = 60", "sync_interval_minutes = 5")
                        + '\n[site]\nname = "renamed"\n')
        os.kill(os.getpid(), signal.SIGHUP)
        _wait(lambda: runstate.read(settings).get("reload_error") is None and next_sync_minutes() <= 5)
        os.kill(os.getpid(), signal.SIGTERM)

    t = _in_thread(drive)
    with caplog.at_level(logging.INFO, logger="synthmed.daemon.service"):
        assert service.run_daemon(settings) == 0
    t.join(10)
    assert not t.errors, t.errors  # type: ignore[attr-defined]
    refused = [r.getMessage() for r in caplog.records if "refused, keeping the previous settings" in r.getMessage()]
    assert len(refused) == 1 and "site.toml" in refused[0] and "sync_interval_minutes" in refused[0]
    assert any("reloaded" in r.getMessage() and "schedules" in r.getMessage() for r in caplog.records)
    assert all(s.name == settings.name for s in seen)  # the jobs before the reload kept the old settings


def test_status_is_a_health_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from helpers.repos import init_repo
    from helpers.records import make_record, write_record

    repo_dir = tmp_path / "index"
    repo = init_repo(repo_dir)
    write_record(repo_dir, make_record())
    repo.git.add(A=True)
    repo.index.commit("records")
    home = tmp_path / "site"
    assert main(["init", str(home), "--upstream", f"public={repo_dir}"]) == 0
    assert main(["--site", str(home), "sync", "--no-mirror"]) == 0
    capsys.readouterr()
    assert main(["--site", str(home), "status"]) == 0
    out = capsys.readouterr().out
    assert ": healthy" in out and "daemon: not running" in out and "last verify (scrub): never" in out
    assert main(["--site", str(home), "status", "--stale-after", "0.000001"]) == 3
    assert ": UNHEALTHY" in capsys.readouterr().out
    assert main(["--site", str(home), "status", "--json", "--stale-after", "0.000001"]) == 3
    st = json.loads(capsys.readouterr().out)
    assert st["health"]["ok"] is False and "stale" in st["health"]["problems"][0]
    # an upstream that fails to sync
    (home / "site.toml").write_text((home / "site.toml").read_text().replace(str(repo_dir), str(tmp_path / "gone")))
    assert main(["--site", str(home), "sync", "--no-mirror"]) == 1
    capsys.readouterr()
    assert main(["--site", str(home), "status", "--json"]) == 3
    st = json.loads(capsys.readouterr().out)
    assert st["health"]["problems"] == ["upstream public: last sync failed"]


def test_global_flags_after_the_subcommand_and_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = write_site(tmp_path / "site", [])
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("synthmed ")
    assert main(["status", "--site", str(settings.home), "-q", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["home"] == str(settings.home)
    # after the sub-command wins over before it; before it alone still works
    assert main(["--site", str(tmp_path / "elsewhere"), "status", "--site", str(settings.home), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["home"] == str(settings.home)
    assert main(["--site", str(settings.home), "daemon", "run", "--once", "--job", "gc", "-v"]) == 0


def test_init_writes_the_trust_settings_with_comments(tmp_path: Path) -> None:
    home = tmp_path / "site"
    assert main(["init", str(home), "--upstream", "public=https://example.org/index.git"]) == 0
    text = (home / "site.toml").read_text()
    for line in ("require_signed = false", "# allowed_signers = [", "allow_code = true", "# file_roots = []"):
        [hit] = [t for t in text.splitlines() if t.startswith(line)]
        assert "#" in hit[len(line):] or line.startswith("#"), hit  # each says what it does
    from synthmed.registry.settings import load_settings

    assert load_settings(home).upstreams[0].allow_code is True


def test_the_systemd_units_run_real_commands() -> None:
    """scripts/systemd/*.service: each ExecStart is a synthmed command line this CLI accepts,
    the daemon reloads with SIGHUP and stops with SIGTERM, the server binds loopback."""
    import configparser
    import shlex

    from synthmed.cli import build_parser

    from helpers import REPO_ROOT

    units = sorted((REPO_ROOT / "scripts" / "systemd").glob("*.service"))
    assert [u.name for u in units] == ["synthmed-daemon.service", "synthmed-serve.service"]
    parsed = {}
    for unit in units:
        cp = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"),
                                       inline_comment_prefixes=None)
        cp.optionxform = str  # type: ignore[assignment,method-assign]
        cp.read(unit)
        svc = cp["Service"]
        argv = shlex.split(svc["ExecStart"])
        assert argv[0].endswith("/bin/synthmed")
        args = build_parser().parse_args(argv[1:])
        assert callable(args.func)
        assert "SYNTHMED_HOME=" in svc["Environment"] and cp["Install"]["WantedBy"] == "multi-user.target"
        parsed[unit.name] = (svc, args)
    svc, args = parsed["synthmed-daemon.service"]
    assert args.command == "daemon" and svc["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert svc["KillSignal"] == "SIGTERM" and "TimeoutStopSec" in svc
    svc, args = parsed["synthmed-serve.service"]
    assert args.command == "serve" and args.host == "127.0.0.1" and svc["ReadOnlyPaths"] == "/srv/synthmed"


@pytest.mark.slow  # syncs and mirrors this repository's index, exports and imports it
def test_export_while_the_daemon_holds_the_lock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import git

    from synthmed.daemon.lock import SiteLock
    from synthmed.registry.catalog import Catalog

    from helpers import REPO_ROOT

    home = tmp_path / "site"
    assert main(["init", str(home), "--upstream", f"public={REPO_ROOT}"]) == 0
    assert main(["--site", str(home), "sync"]) == 0
    with Catalog.open(home / "catalog.db") as cat:
        accepted = cat.federation.upstream_row("public")["accepted_commit"]  # type: ignore[index]
    capsys.readouterr()
    assert main(["--site", str(home), "status", "--json"]) == 0
    sources = json.loads(capsys.readouterr().out)["blob_sources"]
    from helpers.serving import this_index

    n_blobs = this_index()[2]
    assert len(sources) == n_blobs and all(b["source"].startswith("index:artefacts/") for b in sources)
    with SiteLock(home, "synthmed daemon run"):  # the daemon is running
        assert main(["--site", str(home), "export", str(tmp_path / "usb")]) == 0
        err = capsys.readouterr().err
        assert "exporting a snapshot while it runs" in err
        manifest = json.loads((tmp_path / "usb" / "manifest.json").read_text())
        assert [u["commit"] for u in manifest["upstreams"]] == [accepted] and len(manifest["blobs"]) == n_blobs
        # an upstream that does not match the snapshot (the daemon moved it): never a mixed export
        mirror = git.Repo(home / "upstreams" / "public")
        tree = mirror.git.rev_parse(f"{accepted}^{{tree}}")
        mirror.git.update_ref("refs/synthmed/accepted", mirror.git.commit_tree(tree, "-p", accepted, "-m", "moved"))
        assert main(["--site", str(home), "export", str(tmp_path / "usb2")]) == 1
        assert "kept moving the upstreams" in capsys.readouterr().err
        assert not (tmp_path / "usb2").exists()
        mirror.git.update_ref("refs/synthmed/accepted", accepted)
    # the snapshot imports on another site
    other = tmp_path / "other"
    assert main(["init", str(other)]) == 0
    assert main(["--site", str(other), "import", str(tmp_path / "usb")]) == 0
    assert f"{n_blobs} blob(s) imported" in capsys.readouterr().out


def test_download_meter_reports_progress_with_a_true_rate_and_logs_nothing(caplog: pytest.LogCaptureFixture,
                                                                            tmp_path: Path) -> None:
    """While a download runs: bytes and a measured rate to the progress line and the status
    (never "0.00 MB/s": no rate before one is measured); nothing at INFO, and nothing at the
    end: the store logs the one line of a download, with its rate (issue #26)."""
    from synthmed.daemon.jobs import DownloadMeter

    seen: list[Any] = []
    said: list[str] = []
    ctx = JobContext(write_site(tmp_path / "site", []), None, said.append,  # type: ignore[arg-type]
                     report_download=seen.append)
    meter = DownloadMeter(ctx, "public/m@1.0.0", "ab" * 32, every_s=0)
    with caplog.at_level(logging.INFO, logger="synthmed.daemon"):
        meter(100, 1000)  # the first call starts the clock (a resumed download starts past 0): no rate yet
        meter(500, 1000)
        meter(1000, 1000)  # the end: the store's "fetched" line says it
    assert [d["bytes"] for d in seen] == [100, 500]
    assert seen[0]["rate_bytes_per_s"] is None and seen[1]["rate_bytes_per_s"] > 0
    assert said[0] == "mirror: public/m@1.0.0: 100 of 1000 bytes" and "MB/s" in said[1] and len(said) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    quiet = DownloadMeter(ctx, "public/m@1.0.0", "ab" * 32, every_s=3600)
    quiet(100, 1000)
    quiet(500, 1000)  # within every_s: quiet
    assert len(said) == 2


def test_health_does_not_count_a_bundle_upstream_as_stale() -> None:
    from synthmed.daemon.status import health

    def up(url: str) -> dict[str, Any]:
        return {"name": "n", "url": url, "head": "a" * 40, "stale": True, "age_hours": 99.0, "last_status": "ok"}

    assert health({"upstreams": [up("bundle:")], "failing_models": []}) == {"ok": True, "problems": []}
    assert health({"upstreams": [up("https://x.example/i.git")], "failing_models": []})["ok"] is False
