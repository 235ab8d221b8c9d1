"""The nightly test job and `synthmed test` on a real site: an index repository in
tmp_path with a good, a broken and an unverified model; sync, mirror, test; results in
the catalog, in `synthmed status` and beside search results."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from synthmed.registry.errors import ModelRunError
from helpers.records import write_record
from helpers.repos import commit, init_repo
from helpers.sites import write_site
from synthmed.cli import main
from synthmed.daemon.jobs import JobContext
from synthmed.daemon.nightly import JOB_NAME, nightly_test_job, parse_time
from synthmed.daemon.service import Daemon
from synthmed.registry.catalog import Catalog
from synthmed.registry.errors import ConfigError
from synthmed.registry.checks.modeltest_site import (
    due_for_test,
    failing_models,
    last_test_flags,
)
from synthmed.registry.checks.report import (
    environment,
    load_report,
    run_fingerprint,
    synthmed_version,
)
from synthmed.registry.settings import Settings
from helpers.packages import FLOAT_IMAGE, contribution_metadata, index_model, model_record, package_folder


@pytest.fixture
def site(tmp_path: Path) -> Settings:
    root = tmp_path / "index"
    repo = init_repo(root)
    index_model(root, "good-model", "good")
    index_model(root, "nan-model", "nan", output=FLOAT_IMAGE)
    unv = model_record("unpinned-model")
    unv["package"]["artefact"] = {"media_type": "application/zip", "sources": ["https://example.org/x.zip"]}
    write_record(root, unv)
    commit(repo, "three models")
    settings = write_site(tmp_path / "site", [{"name": "public", "url": str(root)}],
                          schedules={"nightly_test_time": "03:15"}, runner={"device": "cpu"})
    daemon = Daemon(settings)
    daemon.register_default_jobs()
    assert daemon.run_job("sync") and daemon.run_job("mirror")
    return settings


def run_nightly(settings: Settings, now: datetime | None = None) -> str:
    with Catalog.open(settings.catalog_path, readonly=False) as cat:
        return nightly_test_job(JobContext(settings, cat), now=now)


def test_nightly_job_is_registered_at_the_configured_time(site: Settings) -> None:
    daemon = Daemon(site)
    daemon.register_default_jobs()
    job = daemon.jobs[JOB_NAME]
    assert job.func is nightly_test_job
    assert "hour='3'" in str(job.trigger) and "minute='15'" in str(job.trigger)


def test_parse_time_refuses_nonsense() -> None:
    assert parse_time("02:30") == (2, 30)
    for bad in ("2", "25:00", "aa:bb", "12:60"):
        with pytest.raises(ConfigError, match="nightly_test_time"):
            parse_time(bad)


@pytest.mark.slow
def test_nightly_tests_mirrored_models_and_flags_the_failing_one(site: Settings, capsys: Any) -> None:
    daemon = Daemon(site)
    daemon.register_default_jobs()
    assert daemon.run_job(JOB_NAME)  # a failing model never fails the job itself
    with Catalog.open(site.catalog_path) as cat:
        last = {t["ref"]: t for t in cat.tests.last_tests()}
        runs = cat.jobs.runs(job=JOB_NAME)
        assert set(last) == {"good-model@1.0.0", "nan-model@1.0.0"}  # the unverified one is not mirrored
        assert last["good-model@1.0.0"]["passed"] == 1
        assert last["nan-model@1.0.0"]["passed"] == 0
        assert "finite: output 'image' has 1 non-finite value(s)" in last["nan-model@1.0.0"]["reason"]
        assert last["good-model@1.0.0"]["throughput"] > 0 and last["good-model@1.0.0"]["peak_memory_mb"] > 0
        assert last["good-model@1.0.0"]["runner_version"] == synthmed_version()
        report = Path(last["good-model@1.0.0"]["report_path"])
        assert load_report(report)["results"][0]["ref"] == "good-model@1.0.0"
        assert (report.parent.parent.parent / "summary.md").is_file()
        assert runs[0]["status"] == "failed" and "1 passed, 1 failed" in runs[0]["reason"]
        # search listings get the flag from the tests table
        found = cat.models.search("model")
        flags = last_test_flags(cat, found)
        assert flags["public/nan-model@1.0.0"]["passed"] is False
        assert flags["public/good-model@1.0.0"]["passed"] is True
        assert "public/unpinned-model@1.0.0" not in flags
        assert list(failing_models(cat)) == ["public/nan-model@1.0.0"]
    # status shows it
    assert main(["--site", str(site.home), "status", "--json"]) == 3  # the health check: a model fails
    status = json.loads(capsys.readouterr().out)
    assert [t["ref"] for t in status["failing_models"]] == ["nan-model@1.0.0"]
    assert main(["--site", str(site.home), "status"]) == 3
    out = capsys.readouterr().out
    assert "nan-model@1.0.0" in out and "non-finite" in out
    # and `synthmed search` flags it
    assert main(["--site", str(site.home), "search", "model"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("nan-model@1.0.0" in line and "FAILING" in line for line in lines)
    assert any("good-model@1.0.0" in line and "passed" in line for line in lines)
    assert main(["--site", str(site.home), "search", "model", "--json"]) == 0
    found = {e["ref"]: e["last_test"] for e in json.loads(capsys.readouterr().out)}
    assert found["public/nan-model@1.0.0"]["passed"] is False


@pytest.mark.slow
def test_nightly_retests_only_what_is_due(site: Settings) -> None:
    first = run_nightly(site)
    assert "2 model version(s) tested" in first
    assert run_nightly(site) == "no mirrored model is due for a test"
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1, minutes=1)
    assert "2 model version(s) tested" in run_nightly(site, now=tomorrow)
    # a changed environment (or artefact, or runner) makes the fingerprint differ
    with Catalog.open(site.catalog_path, readonly=False) as cat, cat.transaction():
        cat.conn.execute("UPDATE tests SET env_hash = 'other' WHERE model_id = 'good-model'")
    assert "1 model version(s) tested" in run_nightly(site)
    with Catalog.open(site.catalog_path, readonly=False) as cat, cat.transaction():
        cat.conn.execute("UPDATE tests SET runner_version = '0.0.1' WHERE model_id = 'nan-model'")
    assert "1 model version(s) tested" in run_nightly(site)


def test_due_for_test_reasons(site: Settings) -> None:
    env = environment()
    with Catalog.open(site.catalog_path) as cat:
        entry = cat.models.resolve("good-model")
    now = datetime.now(timezone.utc)
    fp = run_fingerprint(entry.record.sha256, env["fingerprint"], [])
    fresh = {"env_hash": fp, "runner_version": synthmed_version(), "finished": now.isoformat()}
    assert due_for_test(entry, None, env, now) == "never tested"
    assert due_for_test(entry, fresh, env, now) is None
    assert "older than a day" in str(due_for_test(entry, {**fresh, "finished": (now - timedelta(days=2)).isoformat()},
                                                  env, now))
    assert "changed" in str(due_for_test(entry, {**fresh, "env_hash": "x"}, env, now))
    assert "runner changed" in str(due_for_test(entry, {**fresh, "runner_version": "0.0.0"}, env, now))


@pytest.mark.slow
def test_cli_test_all_writes_a_report_and_fails_on_a_failing_model(site: Settings, tmp_path: Path,
                                                                  capsys: Any) -> None:
    report = tmp_path / "reports"
    rc = main(["--site", str(site.home), "test", "--all", "--report", str(report)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "nan-model@1.0.0" in out and "failed" in out and "unpinned-model@1.0.0" in out and "skipped" in out
    doc = load_report(report / "report.json")
    assert doc["summary"] == {"total": 3, "passed": 1, "failed": 1, "skipped": 1, "error": 0}
    skipped = [r for r in doc["results"] if r["status"] == "skipped"][0]
    assert "unverified" in skipped["reason"] and "synthmed index pin unpinned-model@1.0.0" in skipped["reason"]
    assert (report / "summary.md").is_file()
    assert (report / "samples" / "good-model@1.0.0.png").is_file()
    with Catalog.open(site.catalog_path) as cat:
        assert {t["ref"] for t in cat.tests.last_tests()} == {"good-model@1.0.0", "nan-model@1.0.0"}
        skips = [r for r in cat.jobs.runs(job="test") if r["status"] == "skipped"]
        assert skips and skips[0]["subject"] == "unpinned-model@1.0.0"


def test_cli_test_one_ref_json(site: Settings, tmp_path: Path, capsys: Any) -> None:
    rc = main(["--site", str(site.home), "test", "good-model@1.0.0", "--report", str(tmp_path / "r"), "--json",
               "--no-record"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["ref"] for r in doc["results"]] == ["good-model@1.0.0"]
    with Catalog.open(site.catalog_path) as cat:
        assert cat.tests.last_tests() == []


def test_cli_test_needs_refs_or_all(site: Settings, capsys: Any) -> None:
    assert main(["--site", str(site.home), "test"]) == 1
    assert "name the models to test (REF...) or give --all" in capsys.readouterr().err


@pytest.mark.slow
def test_generators_test_model_maps_onto_the_model_test(site: Settings, tmp_path: Path) -> None:
    from synthmed import Generators

    gens = Generators(site.home)
    try:
        good = gens.test_model("good-model", report_dir=tmp_path / "r")
        with pytest.raises(ModelRunError, match="finite"):  # medigan's test_model raises on a failed test
            gens.test_model("nan-model@1.0.0", record_in_catalog=True)
    finally:
        gens.close()
    assert good.status == "passed" and good.samples is not None
    assert load_report(tmp_path / "r" / "report.json")["results"][0]["ref"] == "good-model@1.0.0"
    with Catalog.open(site.catalog_path) as cat:
        assert list(failing_models(cat)) == ["public/nan-model@1.0.0"]


@pytest.mark.slow
def test_generators_contribute_maps_onto_contribute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthmed import Generators
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "site"))
    root = tmp_path / "index"
    repo = init_repo(root)
    result = Generators().contribute(package_dir=package_folder(tmp_path), model_id="via-sdk", version="1.0.0",
                                     metadata=contribution_metadata(tmp_path), index=root, store="index")
    assert result.branch == "contribute/via-sdk-1.0.0"
    assert "models/via-sdk/1.0.0.json" in repo.git.ls_tree("-r", "--name-only", result.branch)


def test_models_of_an_upstream_without_code_are_skipped(site: Settings, tmp_path: Path, capsys: Any) -> None:
    from dataclasses import replace

    from synthmed.registry.checks.modeltest_site import run_tests, select_entries

    locked = replace(site, upstreams=tuple(replace(u, allow_code=False) for u in site.upstreams))
    with Catalog.open(site.catalog_path) as cat:
        entries = select_entries(cat, ["good-model"])
    run = run_tests(locked, entries, report_dir=None)
    assert run.results[0].status == "skipped"
    assert "does not run code from upstream 'public' (allow_code = false" in str(run.results[0].reason)
