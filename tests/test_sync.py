"""Upstream sync against real git repositories: fast-forward only, signatures, invalid
records, diff-based updates, failures that never stop the other upstreams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import git
import pytest

from synthmed.daemon.rebuild import rebuild_catalog
from synthmed.daemon.state import read_state
from synthmed.daemon.status import site_status
from synthmed.daemon.upstreams import ACCEPTED_REF, UpstreamRepo
from synthmed.registry.catalog import Catalog

from helpers.records import unverified, with_artefact, write_record
from helpers.repos import commit, init_repo, signed_commit, ssh_key
from helpers.sites import catalog, sync, write_site


@pytest.fixture
def upstream(tmp_path: Path, make_record: Any) -> git.Repo:
    repo = init_repo(tmp_path / "idx")
    root = Path(repo.working_dir)
    for i in range(5):
        write_record(root, unverified(f"model-{i}", title=f"Model number {i}"), subfolder="index")
    commit(repo, "five models")
    return repo


def _settings(tmp_path: Path, repo: git.Repo, **extra: Any) -> Any:
    return write_site(tmp_path / "site", [{"name": "public", "url": repo.working_dir, "subfolder": "index", **extra}])


def _ids(settings: Any) -> list[str]:
    with catalog(settings) as cat:
        return sorted(e.ref for e in cat.models.list_models(all_versions=True))


def test_diff_based_updates(tmp_path: Path, upstream: git.Repo, make_record: Any) -> None:
    settings = _settings(tmp_path, upstream)
    [r] = sync(settings)
    assert (r.status, r.changed, r.old_commit) == ("ok", 5, None)
    root = Path(upstream.working_dir) / "index"
    write_record(root, unverified("model-9", title="Model nine"))
    write_record(root, unverified("model-1", title="Model one, renamed"))
    (root / "models" / "model-2" / "1.0.0.json").unlink()
    head = commit(upstream)
    [r] = sync(settings)
    assert (r.status, r.changed, r.new_commit) == ("ok", 3, head)
    assert _ids(settings) == ["model-0@1.0.0", "model-1@1.0.0", "model-3@1.0.0", "model-4@1.0.0", "model-9@1.0.0"]
    with catalog(settings) as cat:
        assert cat.models.resolve("model-1").record.data["title"] == "Model one, renamed"
        assert [e.id for e in cat.models.search("renamed")] == ["model-1"]
    # a no-op sync changes nothing and says so
    [r] = sync(settings)
    assert (r.status, r.changed) == ("ok", 0)
    # the explicit, resumable state: the state file and the accepted ref agree with the catalog
    assert read_state(settings, "public")["accepted_commit"] == head  # type: ignore[index]
    assert UpstreamRepo(settings.upstreams_dir / "public").rev(ACCEPTED_REF) == head


def test_force_push_is_refused_and_old_state_serves(tmp_path: Path, upstream: git.Repo, make_record: Any) -> None:
    settings = _settings(tmp_path, upstream)
    sync(settings)
    accepted = upstream.head.commit.hexsha
    # rewrite history: drop the last commit and commit something else in its place
    upstream.git.reset("--hard", "HEAD~1")
    write_record(Path(upstream.working_dir) / "index", unverified("evil-gan", title="Substituted"))
    rewritten = commit(upstream, "rewritten")
    [r] = sync(settings)
    assert r.status == "refused"
    assert "does not descend" in (r.reason or "") and accepted[:12] in (r.reason or "")
    with catalog(settings) as cat:
        assert len(cat.models.list_models()) == 5 and not cat.models.search("Substituted")
        st = site_status(settings, cat)
        row = cat.federation.upstream_row("public")
        assert row is not None and row["accepted_commit"] == accepted
    [u] = st["upstreams"]
    assert u["last_status"] == "refused" and u["head"] == accepted
    assert any("refused" in w for w in st["warnings"])
    assert any(f["status"] == "refused" for f in st["failures"])
    # the admin may accept it explicitly
    [r] = sync(settings, accept_rewrite=("public",))
    assert (r.status, r.new_commit) == ("ok", rewritten)
    assert _ids(settings) == ["evil-gan@1.0.0"]


def test_invalid_record_is_skipped_rest_syncs(tmp_path: Path, upstream: git.Repo, make_record: Any) -> None:
    settings = _settings(tmp_path, upstream)
    sync(settings)
    root = Path(upstream.working_dir) / "index"
    write_record(root, unverified("good-one", title="Fine"))
    bad = unverified("bad-one")
    bad["modality"] = "CT"  # must be a list
    write_record(root, bad)
    (root / "models" / "broken").mkdir()
    (root / "models" / "broken" / "1.0.0.json").write_text("{not json")
    commit(upstream)
    [r] = sync(settings)
    assert r.status == "ok" and r.changed == 3
    skipped = dict(r.skipped)
    assert set(skipped) == {"models/bad-one/1.0.0.json", "models/broken/1.0.0.json"}
    assert "$.modality" in skipped["models/bad-one/1.0.0.json"]
    assert "not valid JSON" in skipped["models/broken/1.0.0.json"]
    assert "good-one@1.0.0" in _ids(settings) and "bad-one@1.0.0" not in _ids(settings)
    with catalog(settings) as cat:
        assert {p["path"] for p in cat.models.problems()} == set(skipped)
        assert any(x["status"] == "skipped" for x in cat.jobs.runs("sync"))
    # fixing the record later brings it in and clears the problem
    write_record(root, unverified("bad-one"))
    commit(upstream)
    sync(settings)
    assert "bad-one@1.0.0" in _ids(settings)
    with catalog(settings) as cat:
        assert [p["path"] for p in cat.models.problems()] == ["models/broken/1.0.0.json"]


def test_require_signed(tmp_path: Path, upstream: git.Repo, make_record: Any) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    good_key, good_pub = ssh_key(keys, "maintainer")
    other_key, _ = ssh_key(keys, "stranger")
    root = Path(upstream.working_dir) / "index"
    first = signed_commit(upstream, good_key, "signed start")
    settings = _settings(tmp_path, upstream, require_signed=True,
                         allowed_signers=[f'maintainer@example.org namespaces="git" {good_pub}'])
    [r] = sync(settings)
    assert (r.status, r.new_commit) == ("ok", first)
    # an unsigned commit is refused
    write_record(root, unverified("unsigned-gan"))
    unsigned = commit(upstream, "unsigned")
    [r] = sync(settings)
    assert r.status == "refused" and unsigned[:12] in (r.reason or "") and "not signed" in (r.reason or "")
    assert "unsigned-gan@1.0.0" not in _ids(settings)
    # a correctly signed commit on top of it still carries the unsigned one: refused
    signed_commit(upstream, good_key, "signed on top")
    [r] = sync(settings)
    assert r.status == "refused"
    # drop the unsigned commit; a commit signed by a key that is not allowed is refused
    upstream.git.reset("--hard", first)
    write_record(root, unverified("stranger-gan"))
    signed_commit(upstream, other_key, "by a stranger")
    [r] = sync(settings)
    assert r.status == "refused" and "not in the allowed signers" in (r.reason or "")
    # a correctly signed commit is accepted
    upstream.git.reset("--hard", first)
    write_record(root, unverified("signed-gan"))
    good = signed_commit(upstream, good_key, "properly signed")
    [r] = sync(settings)
    assert (r.status, r.new_commit) == ("ok", good)
    assert "signed-gan@1.0.0" in _ids(settings)


def test_failing_upstream_never_stops_the_others(tmp_path: Path, upstream: git.Repo) -> None:
    settings = write_site(tmp_path / "site", [
        {"name": "broken", "url": str(tmp_path / "no-such-repo"), "priority": 1},
        {"name": "wrongbranch", "url": upstream.working_dir, "branch": "nope", "priority": 2},
        {"name": "public", "url": upstream.working_dir, "subfolder": "index", "priority": 3},
    ])
    results = {r.upstream: r for r in sync(settings)}
    assert results["broken"].status == "failed" and "cannot fetch" in (results["broken"].reason or "")
    assert results["wrongbranch"].status == "failed"
    assert results["public"].status == "ok" and len(_ids(settings)) == 5
    with catalog(settings) as cat:
        failed = {r["upstream"]: r["reason"] for r in cat.jobs.runs("sync") if r["status"] == "failed"}
        assert set(failed) == {"broken", "wrongbranch"}


def test_removed_upstream_is_dropped(tmp_path: Path, upstream: git.Repo) -> None:
    settings = _settings(tmp_path, upstream)
    sync(settings)
    settings = write_site(tmp_path / "site", [])
    sync(settings)
    assert _ids(settings) == []


def test_lost_catalog_recovers_and_equals_rebuild(tmp_path: Path, upstream: git.Repo, make_record: Any) -> None:
    settings = _settings(tmp_path, upstream)
    sync(settings)
    for suffix in ("", "-wal", "-shm"):
        Path(str(settings.catalog_path) + suffix).unlink(missing_ok=True)
    # the state file still holds the accepted commit, so a rewrite is still refused
    upstream.git.reset("--hard", "HEAD~1")
    commit(upstream, "rewritten")
    [r] = sync(settings)
    assert r.status == "refused"
    assert _ids(settings) == []  # nothing accepted yet in this catalog; rebuild restores it
    rebuild_catalog(settings)
    assert len(_ids(settings)) == 5
    with Catalog.open(settings.catalog_path) as cat:
        assert any(x["status"] == "refused" for x in cat.jobs.runs("sync"))  # history carried over


def test_rebuild_equals_incremental(tmp_path: Path, upstream: git.Repo, make_record: Any) -> None:
    settings = _settings(tmp_path, upstream)
    sync(settings)
    root = Path(upstream.working_dir) / "index"
    for i in range(3):
        write_record(root, unverified(f"extra-{i}", version=f"1.{i}.0"))
        write_record(root, unverified("model-0", version=f"2.{i}.0", status="yanked", status_reason="superseded by a fix"))
        commit(upstream)
        sync(settings)
    (root / "models" / "model-3" / "1.0.0.json").write_text(json.dumps({"id": "model-3"}))
    commit(upstream)
    sync(settings)
    with catalog(settings) as cat:
        incremental = cat.snapshot()
    fresh = tmp_path / "fresh.db"
    rebuild_catalog(settings, fresh)
    with Catalog.open(fresh) as cat:
        assert cat.snapshot() == incremental


def test_substituted_artefact_is_skipped_rest_syncs(tmp_path: Path, upstream: git.Repo, make_record: Any) -> None:
    root = Path(upstream.working_dir) / "index"
    write_record(root, with_artefact(root, "pinned-gan"))
    commit(upstream, "a pinned model")
    settings = _settings(tmp_path, upstream)
    sync(settings)
    with catalog(settings) as cat:
        pinned = cat.models.resolve("pinned-gan").record.sha256
    rec = json.loads((root / "models/pinned-gan/1.0.0.json").read_text())
    rec["package"]["artefact"]["sha256"] = "ab" * 32  # the same version, another artefact
    rec["description"] = "description may change"
    write_record(root, rec)
    write_record(root, unverified("innocent-bystander"))
    commit(upstream, "swap the artefact")
    [r] = sync(settings)
    # the substituted record is skipped (withheld, never served with the new package), the
    # version as accepted keeps being served (issue 22, item 8); the rest syncs
    assert r.status == "ok" and [p for p, _ in r.skipped] == ["models/pinned-gan/1.0.0.json"]
    why = r.skipped[0][1]
    assert "pinned-gan@1.0.0" in why and "package" in why and "immutable" in why and "keeps being served" in why
    assert "innocent-bystander@1.0.0" in _ids(settings) and "pinned-gan@1.0.0" in _ids(settings)
    with catalog(settings) as cat:
        assert cat.models.resolve("pinned-gan").record.sha256 == pinned
    with catalog(settings) as cat:
        assert [p["path"] for p in cat.models.problems()] == ["models/pinned-gan/1.0.0.json"]
    # a mutable field alone is fine once the substitution is reverted
    rec["package"]["artefact"]["sha256"] = pinned
    write_record(root, rec)
    commit(upstream, "revert the swap")
    [r] = sync(settings)
    assert r.status == "ok" and not r.skipped
    with catalog(settings) as cat:
        entry = cat.models.resolve("pinned-gan")
        assert entry.record.sha256 == pinned and entry.record.data["description"] == "description may change"
        assert cat.models.problems() == []


def test_pinning_an_unverified_version_syncs(tmp_path: Path, upstream: git.Repo, make_record: Any) -> None:
    settings = _settings(tmp_path, upstream)
    sync(settings)
    root = Path(upstream.working_dir) / "index"
    rec = json.loads((root / "models/model-1/1.0.0.json").read_text())
    rec["package"]["artefact"]["sha256"] = "ab" * 32  # a pin: sha256 added, nothing else of package changed
    write_record(root, rec)
    commit(upstream, "pin model-1")
    [r] = sync(settings)
    assert r.status == "ok" and not r.skipped
    with catalog(settings) as cat:
        assert cat.models.resolve("model-1").record.sha256 == "ab" * 32
    # once pinned, the pin is what is bound: another sha256 is a substitution
    rec["package"]["artefact"]["sha256"] = "cd" * 32
    write_record(root, rec)
    commit(upstream, "re-pin model-1")
    [r] = sync(settings)
    assert [p for p, _ in r.skipped] == ["models/model-1/1.0.0.json"]


def test_incremental_sync_reads_only_the_versions_it_touches(tmp_path: Path, upstream: git.Repo,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An incremental sync reads from ``accepted_versions`` only the versions its new
    commits touch (the cost follows the change, not the index size), and still refuses a
    version deleted earlier and re-added with another package."""
    from synthmed.registry.catalog.federation import FederationStore

    root = Path(upstream.working_dir) / "index"
    write_record(root, with_artefact(root, "pinned-gan"))
    commit(upstream, "a pinned model")
    settings = _settings(tmp_path, upstream)
    sync(settings)
    rec = json.loads((root / "models/pinned-gan/1.0.0.json").read_text())
    (root / "models/pinned-gan/1.0.0.json").unlink()
    commit(upstream, "delete it")
    sync(settings)
    asked: list[Any] = []
    real = FederationStore.accepted_versions

    def spy(self: FederationStore, upstream_name: str, keys: Any = None) -> Any:
        asked.append(None if keys is None else sorted(keys))
        return real(self, upstream_name, keys)

    monkeypatch.setattr(FederationStore, "accepted_versions", spy)
    rec["package"]["artefact"]["sha256"] = "cd" * 32  # re-added with another package
    write_record(root, rec)
    write_record(root, unverified("model-1", title="changed"))
    commit(upstream, "re-add with another package")
    [r] = sync(settings)
    assert asked == [[("model-1", "1.0.0"), ("pinned-gan", "1.0.0")]]
    assert r.status == "ok" and [p for p, _ in r.skipped] == ["models/pinned-gan/1.0.0.json"]
    assert "immutable" in r.skipped[0][1]
    with catalog(settings) as cat:
        assert cat.models.resolve("model-1").record.data["title"] == "changed"


def test_a_fresh_sync_of_this_repository_logs_what_an_admin_needs(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh sync of this repository's own index: no warning about its resolved history
    (models/retina-patch-ddpm/1.0.0.json was changed at df0ba45 and reverted), one INFO line
    per download with its rate, and the unverified records counted once, not one line each
    (issue #26)."""
    import logging
    import re

    from synthmed.cli import main
    from helpers import REPO_ROOT

    home = tmp_path / "site"
    assert main(["init", str(home), "--upstream", f"public={REPO_ROOT}", "--subfolder", "index"]) == 0
    with caplog.at_level(logging.DEBUG, logger="synthmed"):
        assert main(["--site", str(home), "sync"]) == 0
    info = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert not [r.getMessage() for r in info if r.levelno >= logging.WARNING]
    history = [r for r in caplog.records if "history:" in r.getMessage()]
    assert history and all(r.levelno == logging.INFO for r in history)  # said, as history, not as a warning
    fetched = [r.getMessage() for r in info if r.getMessage().startswith("fetched ")]
    assert fetched and all(re.search(r"\(\d+\.?\d* (MB|kB|B)/s", m) and " 0.00 " not in m for m in fetched)
    assert len(fetched) == len({m.split(":")[0] for m in fetched})  # one line per download
    assert not [r for r in info if "MB/s" in r.getMessage() and not r.getMessage().startswith("fetched ")]
    assert not [r for r in info if "skipping" in r.getMessage() and "unverified" in r.getMessage()]
    out = capsys.readouterr().out  # the run's summary counts them
    assert "mirror:" in out and "unverified record(s) skipped" in out


def test_a_noop_sync_imports_no_gitpython(tmp_path: Path, upstream: git.Repo) -> None:
    import subprocess
    import sys

    settings = _settings(tmp_path, upstream)
    sync(settings)
    code = ("import sys\nfrom synthmed.registry.settings import load_settings\n"
            "from synthmed.registry.catalog import Catalog\nfrom synthmed.daemon.sync import sync_all\n"
            f"s = load_settings({str(settings.home)!r}, environ={{}})\n"
            "with Catalog.open(s.catalog_path, readonly=False) as cat:\n"
            "    [r] = sync_all(s, cat)\n"
            "print(r.status, r.changed, 'git' in sys.modules, 'jsonschema' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["ok", "0", "False", "False"], out.stderr


def test_git_run_directly_is_stopped_at_its_timeout(tmp_path: Path, upstream: git.Repo) -> None:
    from synthmed.daemon.upstreams import GitFailed

    settings = _settings(tmp_path, upstream)
    sync(settings)
    repo = UpstreamRepo.for_upstream(settings.upstreams_dir, "public")
    assert repo.rev(ACCEPTED_REF) == upstream.head.commit.hexsha
    with pytest.raises(GitFailed, match="git rev-parse killed after") as info:
        repo._run(["-c", "core.quotePath=false", "rev-parse", ACCEPTED_REF], timeout=1e-6)
    assert info.value.status == -9
    with pytest.raises(GitFailed, match="git cat-file exited 128") as failed:
        repo._run(["cat-file", "-t", "--end-of-options", "0" * 40])
    assert failed.value.stderr
