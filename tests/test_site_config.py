"""site.toml: `synthmed init`, upstream specs, schema errors, precedence; CLI listings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from synthmed.cli import main
from synthmed.registry.errors import ConfigError
from synthmed.registry.settings import load_settings, read_site_toml
from synthmed.registry.authoring.site_config import init_site, parse_upstream_spec

from helpers.records import unverified, write_record
from helpers.repos import commit, init_repo
from helpers.sites import run_cli, write_site


@pytest.mark.parametrize("spec,expected", [
    ("public=https://github.com/o/i.git", ("public", "https://github.com/o/i.git", None, None)),
    ("public=https://github.com/o/i.git#dev", ("public", "https://github.com/o/i.git", "dev", None)),
    ("public=/srv/repo#main:index", ("public", "/srv/repo", "main", "index")),
    ("public=file:///srv/repo#:index/", ("public", "file:///srv/repo", None, "index")),
    ("h-1=git@host:org/repo.git", ("h-1", "git@host:org/repo.git", None, None)),
])
def test_parse_upstream_spec(spec: str, expected: tuple[Any, ...]) -> None:
    s = parse_upstream_spec(spec)
    assert (s.name, s.url, s.branch, s.subfolder) == expected


@pytest.mark.parametrize("spec", ["public", "=url", "Bad Name=url", "x="])
def test_parse_upstream_spec_rejects(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_upstream_spec(spec)


def test_init_detects_subfolder_and_branch(tmp_path: Path, make_record: Any, capsys: pytest.CaptureFixture[str]) -> None:
    repo = init_repo(tmp_path / "repo")
    repo.git.checkout("-q", "-b", "trunk")
    write_record(Path(repo.working_dir), unverified("toy-gan"), subfolder="index")
    commit(repo)
    site = tmp_path / "site"
    assert main(["init", str(site), "--upstream", f"public={repo.working_dir}",
                 "--upstream", "other=https://example.org/idx.git#dev:catalogue"]) == 0
    text = (site / "site.toml").read_text()
    assert text.startswith("# synthmed site configuration")
    settings = load_settings(site, {}, environ={})
    pub, other = settings.upstreams
    assert (pub.name, pub.branch, pub.subfolder, pub.priority) == ("public", "trunk", "index", 10)
    assert (other.branch, other.subfolder, other.priority) == ("dev", "catalogue", 20)
    for d in ("upstreams", "store", "packages", "envs", "reports"):
        assert (site / d).is_dir()
    with pytest.raises(ConfigError, match="already exists"):
        init_site(site, [])
    # the README's main job: init, then sync this kind of repository
    assert main(["--site", str(site), "sync", "--upstream", "public", "--no-mirror"]) == 0
    assert "public: ok" in capsys.readouterr().out


def test_init_flags_apply_to_upstreams_without_fragment(tmp_path: Path) -> None:
    init_site(tmp_path / "s", [parse_upstream_spec("a=https://x.org/a.git")], branch="stable", subfolder="idx")
    [u] = load_settings(tmp_path / "s", {}, environ={}).upstreams
    assert (u.branch, u.subfolder) == ("stable", "idx")


@pytest.mark.parametrize("toml,message", [
    ('[[upstreams]]\nname = "a"\nurl = "x"\nrequire_signed = true\n', "allowed_signers"),
    ('[[upstreams]]\nname = "a"\nurl = "x"\nallowed_signers = ["nonsense"]\n', "allowed-signers line"),
    ('[[upstreams]]\nname = "a"\nurl = "x"\nsubfolder = "../up"\n', "inside the repository"),
    ('[[upstreams]]\nname = "a"\nurl = "x"\n[[upstreams]]\nname = "a"\nurl = "y"\n', "declared twice"),
    ('[mirror]\npolicy = "some"\n', "policy"),
    ('[schedules]\nnightly_test_time = "25:00"\n', "time of day"),
    ('[site]\nstale_after_hours = 0\n', "stale_after_hours"),
])
def test_invalid_site_toml(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "site.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, {}, environ={})


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text("[site]\nstale_after_hours = 12\n[schedules]\nsync_interval_minutes = 30\n")
    assert load_settings(tmp_path, {}, environ={}).stale_after_hours == 12
    env = {"SYNTHMED_STALE_AFTER_HOURS": "6", "SYNTHMED_SYNC_INTERVAL_MINUTES": "5"}
    s = load_settings(tmp_path, {}, environ=env)
    assert (s.stale_after_hours, s.schedules.sync_interval_minutes) == (6, 5)
    s = load_settings(tmp_path, {"stale_after_hours": 1, "sync_interval_minutes": 2}, environ=env)
    assert (s.stale_after_hours, s.schedules.sync_interval_minutes) == (1, 2)
    (tmp_path / "site.toml").write_text("")
    assert load_settings(tmp_path, {}, environ={}).stale_after_hours == 48.0
    with pytest.raises(ConfigError, match="not a number"):
        load_settings(tmp_path, {}, environ={"SYNTHMED_STALE_AFTER_HOURS": "soon"})


def test_written_site_toml_validates(tmp_path: Path) -> None:
    init_site(tmp_path, [parse_upstream_spec("public=https://example.org/i.git#main:index")])
    data = read_site_toml(tmp_path / "site.toml")
    assert data["upstreams"][0]["subfolder"] == "index"


def test_cli_search_show_status(tmp_path: Path, make_record: Any, capsys: pytest.CaptureFixture[str]) -> None:
    repo = init_repo(tmp_path / "idx")
    root = Path(repo.working_dir)
    write_record(root, unverified("mass-gan", title="Mass-like lesions", modality=["MMG"]))
    write_record(root, unverified("lung-gan", title="Lung patches"))
    commit(repo)
    site = tmp_path / "site"
    write_site(site, [{"name": "public", "url": repo.working_dir}], site={"stale_after_hours": 1})
    assert main(["--site", str(site), "sync"]) == 0
    capsys.readouterr()
    assert main(["--site", str(site), "search", "mass-like", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [f["ref"] for f in found] == ["public/mass-gan@1.0.0"]
    for q in ('"AND', "*", "mass-like -x (", "NEAR("):
        assert main(["--site", str(site), "search", q]) == 0
    capsys.readouterr()
    assert main(["--site", str(site), "search", "--modality", "ct", "--rank", "FID"]) == 0
    out = capsys.readouterr().out
    assert "public/lung-gan@1.0.0" in out and "mass-gan" not in out and "SCORE" in out
    assert main(["--site", str(site), "show", "mass-gan", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["record"]["title"] == "Mass-like lesions" and shown["artefact_state"] == "unverified"
    assert shown["index_commit"] == repo.head.commit.hexsha
    assert main(["--site", str(site), "show", "public/mass-gan@1.0.0"]) == 0
    assert "Mass-like lesions" in capsys.readouterr().out
    assert main(["--site", str(site), "status", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["upstreams"][0]["head"] == repo.head.commit.hexsha and not st["upstreams"][0]["stale"]
    assert st["models"]["models"] == 2
    assert {j["job"] for j in st["jobs"]} >= {"sync", "mirror"}
    # flag > site.toml: a tiny stale age makes the upstream stale
    assert main(["--site", str(site), "status", "--stale-after", "0.000001"]) == 3  # unhealthy: stale
    assert "STALE" in capsys.readouterr().out
    assert main(["--site", str(site), "show", "nope-model"]) == 1
    assert "no model 'nope-model'" in capsys.readouterr().err


def test_cli_needs_a_site(tmp_path: Path) -> None:
    r = run_cli(["--site", str(tmp_path / "nothing"), "status"])
    assert r.returncode == 1 and "synthmed init" in r.stderr


def test_catalog_rebuild_cli(tmp_path: Path, make_record: Any, capsys: pytest.CaptureFixture[str]) -> None:
    repo = init_repo(tmp_path / "idx")
    write_record(Path(repo.working_dir), unverified("toy-gan"))
    commit(repo)
    site = tmp_path / "site"
    write_site(site, [{"name": "public", "url": repo.working_dir}])
    assert main(["--site", str(site), "sync", "--no-mirror"]) == 0
    (site / "catalog.db").write_bytes(b"garbage, not sqlite" * 100)
    for suffix in ("-wal", "-shm"):
        Path(str(site / "catalog.db") + suffix).unlink(missing_ok=True)
    assert main(["--site", str(site), "catalog", "rebuild"]) == 0
    capsys.readouterr()
    assert main(["--site", str(site), "search", "toy", "--json"]) == 0
    assert [f["id"] for f in json.loads(capsys.readouterr().out)] == ["toy-gan"]
