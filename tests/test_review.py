"""`synthmed index review`: the gate, then a throwaway site synced from a pull request's
head that model-tests what it adds or changes; the reviewed repository is not touched."""

from __future__ import annotations

import pytest

import json
from pathlib import Path

import git

from helpers.packages import index_model
from helpers.records import write_record
from helpers.repos import commit, init_repo
from helpers.sites import run_cli
from synthmed.daemon.review import review


def _pr(tmp: Path) -> tuple[git.Repo, str]:
    """An index with one good model on main, and a branch `pr` adding a good and a broken one."""
    repo = init_repo(tmp / "index")
    root = Path(repo.working_dir)
    index_model(root, "model-base", "good")
    base = commit(repo, "base model")
    repo.git.checkout("-q", "-b", "pr")
    index_model(root, "model-new", "good")
    index_model(root, "model-nan", "nan", output={"name": "image", "kind": "image", "dims": 2, "shape": [8, 8],
                                                  "dtype": "float32", "channels": 1, "value_range": [0, 1]})
    commit(repo, "two new models")
    return repo, base


@pytest.mark.slow
def test_review_tests_what_the_pull_request_adds_and_touches_nothing(tmp_path: Path) -> None:
    repo, base = _pr(tmp_path)
    refs_before = {r.path: r.commit.hexsha for r in repo.refs}
    result = review(Path(repo.working_dir), base, "HEAD", tmp_path / "review")
    assert result.check.ok and not result.sync_problems
    assert sorted(result.tested) == ["model-nan@1.0.0", "model-new@1.0.0"]  # model-base is not the PR's
    status = {r.ref: r.status for r in (result.run.results if result.run else [])}
    assert status == {"model-nan@1.0.0": "failed", "model-new@1.0.0": "passed"}
    assert not result.ok
    assert result.run and result.run.report_path and result.run.report_path.is_file()
    assert {r.path: r.commit.hexsha for r in repo.refs} == refs_before  # a bare copy was reviewed


def test_review_stops_at_the_gate_and_runs_nothing(tmp_path: Path) -> None:
    repo, base = _pr(tmp_path)
    root = Path(repo.working_dir)
    data = json.loads((root / "models" / "model-base" / "1.0.0.json").read_text())
    data["package"]["entry_point"] = "other:build"  # an immutable field of a merged version
    write_record(root, data)
    commit(repo, "rewrite a merged version")
    out = tmp_path / "review"
    result = review(root, base, "HEAD", out)
    assert not result.check.ok and not result.ok
    assert result.run is None and not (out / "site").exists()


@pytest.mark.slow
def test_cli_review_json_and_exit_code(tmp_path: Path) -> None:
    repo, base = _pr(tmp_path)
    r = run_cli(["index", "review", "--repo", repo.working_dir, "--base", base, "--out", str(tmp_path / "rv"),
                 "--json"])
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert {x["ref"]: x["status"] for x in doc["results"]} == {"model-nan@1.0.0": "failed",
                                                              "model-new@1.0.0": "passed"}
    again = run_cli(["index", "review", "--repo", repo.working_dir, "--base", base, "--out", str(tmp_path / "rv")])
    assert again.returncode == 1 and "is not empty" in again.stderr


def test_the_pr_workflow_runs_the_base_branchs_checker_on_the_pull_requests_data() -> None:
    import yaml

    wf = yaml.safe_load((Path(__file__).resolve().parent.parent / ".github" / "workflows" / "index-pr.yml").read_text())
    steps = wf["jobs"]["check-records"]["steps"]
    checkouts = [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout")]
    base = [s for s in checkouts if s["with"]["path"] == "base"]
    assert base and base[0]["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    runs = [s["run"] for s in steps if "run" in s]
    assert any(r.strip() == "bash base/scripts/setup.sh" for r in runs)
    commands = [r for r in runs if "synthmed" in r]
    assert commands and all("base/.venv/bin/synthmed" in r for r in commands)
    assert not any("pr/scripts" in r or "pip install" in r for r in runs)  # nothing of the PR is installed
    assert any("index review" in r and "--repo pr" in r for r in commands)
    assert "pull_request_target" not in (wf.get(True) or wf.get("on") or {})
