"""Issue 22, items 6, 7 and 8, and the exit codes of `synthmed sync` (issue 26): the gates
fail on what they could not check, and a refusal never takes away what was accepted.

6: one run per output folder at a time: a second run with another identity (seed,
   parameters, model ...) started while the first is still loading its model is refused,
   naming the folder; shards of one run still write into the folder together.
7: `synthmed index review` fails (exit 1, ``"ok": false``) when a new version's package
   could not be fetched (never model-tested); `synthmed test` fails on a pipeline whose
   pipeline file breaks its parser; policy refusals (unverified, ``allow_code = false``)
   stay *skipped*, labelled as such.
8: a fast-forward that rewrites a merged version's package (alone, or in a commit that
   also adds a version) is refused and the version keeps being served as accepted; the
   refusal shows: `sync` exits 4, `status` is unhealthy, the status page lists it.
#26: `synthmed sync` exits non-zero when an artefact could not be fetched (5) or a record
   was refused (4); a fresh sync of this repository's own index (whose history holds a
   reverted change to a merged version) exits 0.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import git
import pytest

from helpers.records import unverified, with_artefact, write_record
from helpers.repos import commit, init_repo
from helpers.serving import serving
from helpers.sites import REPO_ROOT, catalog, write_site
from synthmed.cli import main
from synthmed.daemon.rebuild import rebuild_catalog
from synthmed.registry.catalog import Catalog

# -- item 8 and the sync exit codes ------------------------------------------------------


@pytest.fixture
def index(tmp_path: Path) -> git.Repo:
    """An index (records at the repository root) with a pinned x-gan@1.0.0 and a bystander."""
    repo = init_repo(tmp_path / "idx")
    root = Path(repo.working_dir)
    write_record(root, with_artefact(root, "x-gan", content=b"the accepted weights\n" * 8))
    write_record(root, unverified("bystander"))
    commit(repo, "x-gan 1.0.0")
    return repo


def _served(home: Path) -> dict[str, str | None]:
    with Catalog.open(home / "catalog.db", readonly=True) as cat:
        return {e.qualified_ref: e.record.sha256 for e in cat.models.list_models(all_versions=True)}


def _rewrite_x(repo: git.Repo, *, with_new_version: bool) -> None:
    """A fast-forward commit that gives the merged x-gan@1.0.0 another package (and, when
    asked, also adds x-gan@1.1.0 in the same commit)."""
    root = Path(repo.working_dir)
    write_record(root, with_artefact(root, "x-gan", content=b"substituted weights\n" * 8))
    if with_new_version:
        write_record(root, with_artefact(root, "x-gan", version="1.1.0"))
    commit(repo, "x-gan: rebuilt package" + (" and 1.1.0" if with_new_version else ""))


@pytest.mark.parametrize("with_new_version", [False, True], ids=["rewrite-alone", "rewrite-with-a-new-version"])
def test_a_refused_rewrite_keeps_the_accepted_version_and_shows(tmp_path: Path, index: git.Repo,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 with_new_version: bool) -> None:
    settings = write_site(tmp_path / "site", [{"name": "public", "url": index.working_dir}])
    home = settings.home
    assert main(["--site", str(home), "sync"]) == 0
    accepted = _served(home)["public/x-gan@1.0.0"]
    assert accepted
    _rewrite_x(index, with_new_version=with_new_version)
    capsys.readouterr()
    assert main(["--site", str(home), "sync"]) == 4  # a record refused
    out = capsys.readouterr().out
    assert "skipped models/x-gan/1.0.0.json" in out and "keeps being served" in out
    served = _served(home)
    assert served["public/x-gan@1.0.0"] == accepted  # the accepted version is not withdrawn
    assert ("public/x-gan@1.1.0" in served) == with_new_version  # the rest of the commit applies
    with Catalog.open(home / "catalog.db", readonly=True) as cat:
        entry = cat.models.resolve("x-gan@1.0.0")
        assert entry.record.sha256 == accepted
    # status: unhealthy, naming the refused rewrite
    capsys.readouterr()
    assert main(["--site", str(home), "status", "--json"]) == 3
    st = json.loads(capsys.readouterr().out)
    assert any("x-gan/1.0.0.json" in p and "rewrite of a merged version was refused" in p
               for p in st["health"]["problems"]), st["health"]
    # the status page shows it
    with serving(settings) as url:
        with urllib.request.urlopen(f"{url}/status") as resp:
            page = resp.read().decode()
    assert "UNHEALTHY" in page and 'data-problem="public/models/x-gan/1.0.0.json"' in page
    assert "rewrite of a merged version was refused" in page
    # a fresh catalog built from the same mirrors serves the same (rebuild == incremental)
    fresh = tmp_path / "fresh.db"
    rebuild_catalog(settings, fresh)
    with Catalog.open(fresh, readonly=True) as cat:
        rebuilt = {e.qualified_ref: e.record.sha256 for e in cat.models.list_models(all_versions=True)}
    assert rebuilt == served
    # a sync with nothing new refuses nothing new (exit 0); status keeps showing the problem
    # until the upstream reverts the rewrite
    assert main(["--site", str(home), "sync"]) == 0
    assert main(["--site", str(home), "status"]) == 3


def test_a_fresh_site_serves_a_rewritten_version_as_the_index_accepted_it(
        tmp_path: Path, index: git.Repo) -> None:
    accepted = json.loads((Path(index.working_dir) / "models/x-gan/1.0.0.json").read_text())
    accepted = accepted["package"]["artefact"]["sha256"]
    _rewrite_x(index, with_new_version=False)
    settings = write_site(tmp_path / "site", [{"name": "public", "url": index.working_dir}])
    assert main(["--site", str(settings.home), "sync", "--no-mirror"]) == 4
    with catalog(settings) as cat:  # the record as the index accepted it, never the rewrite
        assert cat.models.resolve("x-gan@1.0.0").record.sha256 == accepted
    # a revert upstream clears the problem
    root = Path(index.working_dir)
    write_record(root, with_artefact(root, "x-gan", content=b"the accepted weights\n" * 8))
    commit(index, "revert the rebuilt package")
    assert main(["--site", str(settings.home), "sync"]) == 0
    assert main(["--site", str(settings.home), "status"]) == 0


def test_sync_exits_5_when_an_artefact_cannot_be_fetched(tmp_path: Path, index: git.Repo,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(index.working_dir)
    write_record(root, with_artefact(root, "lost-gan"))
    (root / "artefacts" / "lost-gan" / "1.0.0.bin").unlink()  # the record names a file the index lacks
    commit(index, "lost-gan")
    settings = write_site(tmp_path / "site", [{"name": "public", "url": index.working_dir}])
    assert main(["--site", str(settings.home), "sync", "--no-mirror"]) == 0  # the records are fine
    capsys.readouterr()
    assert main(["--site", str(settings.home), "sync", "--json"]) == 5
    doc = json.loads(capsys.readouterr().out)
    assert doc["not_mirrored"] == ["public/lost-gan@1.0.0"] and doc["exit_status"] == 5


def test_sync_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sync", "--help"])
    text = capsys.readouterr().out
    assert "exit status:" in text and "\n  4  a record was refused" in text and "\n  5  an artefact" in text


def test_a_fresh_sync_of_this_repositorys_index_exits_0(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """index/models/retina-patch-ddpm/1.0.0.json changed immutable fields at df0ba45 and was
    restored later: resolved history, logged, but neither a refused record nor a failure."""
    branch = git.Repo(REPO_ROOT).active_branch.name if not git.Repo(REPO_ROOT).head.is_detached else None
    if branch is None:
        pytest.skip("a detached checkout: no branch to follow")
    home = tmp_path / "site"
    assert main(["init", str(home), "--upstream", f"public={REPO_ROOT}", "--subfolder", "index",
                 "--branch", branch]) == 0
    assert main(["--site", str(home), "sync", "--no-mirror"]) == 0
    with Catalog.open(home / "catalog.db", readonly=True) as cat:
        assert cat.models.problems() == []


# -- item 6: one run per output folder at a time -------------------------------------------


def _paused_first_run(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make the next run that reaches its model pause there (after its folder is open,
    before any sample is made), as a run loading a large model would."""
    import synthmed.site as site_mod

    real = site_mod.write_run
    reached, go = threading.Event(), threading.Event()
    first = [True]

    def paused(*args: Any, **kw: Any) -> Any:
        if first[0]:
            first[0] = False
            reached.set()
            assert go.wait(60)
        return real(*args, **kw)

    monkeypatch.setattr(site_mod, "write_run", paused)
    return reached, go


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, box


def test_a_second_run_with_another_seed_is_refused_while_the_first_loads(
        tmp_path: Path, toy_gan: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthmed.registry.errors import ConfigError
    from synthmed.registry.runner import RunnerOptions
    from synthmed.run_manifest import verify_output
    from synthmed.site import Model

    _, pkg, _ = toy_gan
    folder = tmp_path / "out"
    reached, go = _paused_first_run(monkeypatch)
    a = Model(pkg, RunnerOptions(batch_size=4, mode="inline"))
    b = Model(pkg, RunnerOptions(batch_size=4, mode="inline"))
    t, box = _in_thread(lambda: a.generate_to(folder, 6, format="npy", seed=0))
    assert reached.wait(60)  # run A holds the folder and is "loading its model"
    with pytest.raises(ConfigError) as err:
        b.generate_to(folder, 6, format="npy", seed=1000)
    assert str(folder) in str(err.value) and "another run" in str(err.value) and "seed" in str(err.value)
    go.set()
    t.join(60)
    assert "error" not in box and box["result"].complete
    side = json.loads((folder / "synthmed.json").read_text())
    assert side["seeds"]["first"] == 0
    assert verify_output(folder)["ok"]
    # the files are the samples of seeds 0..5: the same bytes as a run alone in a new folder
    alone = a.generate_to(tmp_path / "alone", 6, format="npy", seed=0)
    assert alone.complete
    for f in sorted((folder / "image").iterdir()):
        assert f.read_bytes() == (tmp_path / "alone" / "image" / f.name).read_bytes()
    # once A is done, a run with another seed is refused as before (the folder holds samples)
    with pytest.raises(ConfigError, match="already holds samples of another run"):
        b.generate_to(folder, 6, format="npy", seed=1000)
    a.close()
    b.close()


def test_shards_of_one_run_still_write_into_the_folder_together(
        tmp_path: Path, toy_gan: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthmed.registry.runner import RunnerOptions
    from synthmed.run_manifest import verify_output
    from synthmed.site import Model

    _, pkg, _ = toy_gan
    folder = tmp_path / "out"
    reached, go = _paused_first_run(monkeypatch)
    a = Model(pkg, RunnerOptions(batch_size=4, mode="inline"))
    b = Model(pkg, RunnerOptions(batch_size=4, mode="inline"))
    t, box = _in_thread(lambda: a.generate_to(folder, 10, format="npy", seed=3, shard="0/2"))
    assert reached.wait(60)
    second = b.generate_to(folder, 10, format="npy", seed=3, shard="1/2")  # joins while shard 0 is open
    assert second.written == 5 and not second.complete
    go.set()
    t.join(60)
    assert "error" not in box and box["result"].complete
    assert verify_output(folder)["ok"]
    a.close()
    b.close()


# -- item 7: the gates fail on what they could not test --------------------------------------


def test_review_fails_when_a_new_version_could_not_be_fetched(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from synthmed.daemon.review import review

    repo = init_repo(tmp_path / "index")
    root = Path(repo.working_dir)
    write_record(root, unverified("model-base"))
    base = commit(repo, "base")
    repo.git.checkout("-q", "-b", "pr")
    write_record(root, with_artefact(root, "lost-gan"))
    (root / "artefacts" / "lost-gan" / "1.0.0.bin").unlink()  # pinned, but nothing serves its bytes
    commit(repo, "lost-gan")
    result = review(root, base, "HEAD", tmp_path / "rv")
    assert result.check.ok and not result.sync_problems and result.run is not None
    [r] = result.run.results
    assert r.status == "error" and "could not be fetched" in str(r.reason)
    assert not result.ok and result.as_dict()["ok"] is False
    # the command: exit 1, "ok": false, the reason in the JSON
    assert main(["index", "review", "--repo", str(root), "--base", base, "--out", str(tmp_path / "rv2"),
                 "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["results"][0]["status"] == "error"
    assert "could not be fetched" in doc["results"][0]["reason"]


def test_review_of_an_unverified_record_is_a_labelled_policy_skip(tmp_path: Path) -> None:
    from synthmed.daemon.review import review

    repo = init_repo(tmp_path / "index")
    root = Path(repo.working_dir)
    write_record(root, unverified("model-base"))
    base = commit(repo, "base")
    write_record(root, unverified("imported"))
    commit(repo, "an unverified import")
    result = review(root, base, "HEAD", tmp_path / "rv")
    assert result.run is not None
    [r] = result.run.results
    assert r.status == "skipped" and "unverified" in str(r.reason)
    assert result.ok  # searchable, never run: nothing the gate should have run


def _pipeline_site(tmp_path: Path, pipeline_file: str) -> Path:
    from helpers.packages import make_zip
    from helpers.records import package_record
    from helpers.sites import make_site_home

    zp = make_zip(tmp_path / "p.zip", {"pipeline.json": pipeline_file})
    data = package_record("a-pipeline", zp, package_format="synthmed-pipeline-1", package_entry_point="pipeline.json")
    return make_site_home(tmp_path / "site", [data, unverified("never-run")])


@pytest.mark.parametrize("pipeline_file", ["[" * 100_000, '{"format": "synthmed-pipeline-1", "stages": 5'],
                         ids=["nested-100000-deep", "not-json"])
def test_synthmed_test_fails_on_a_pipeline_that_breaks_its_parser(tmp_path: Path, pipeline_file: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    home = _pipeline_site(tmp_path, pipeline_file)
    capsys.readouterr()
    rc = main(["--site", str(home), "test", "a-pipeline", "--report", str(tmp_path / "rep"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    [r] = doc["results"]
    assert rc == 1 and r["status"] in ("failed", "error") and r["reason"], r
    assert "Traceback" not in r["reason"]
    # an unverified record is the site's policy: skipped, labelled, and the run passes
    rc = main(["--site", str(home), "test", "never-run", "--report", str(tmp_path / "rep2"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["results"][0]["status"] == "skipped" and "unverified" in doc["results"][0]["reason"]
