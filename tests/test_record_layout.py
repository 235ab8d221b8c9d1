"""The two record layouts (registry/record_paths.py): flat ``models/<id>/<version>.json`` and
sharded ``models/<shard>/<id>@<version>.json``. Validation, the pull-request gate, a site's
sync (incremental and fresh alike), moving an index with ``synthmed index shard``, and a
version held at both paths."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import git
import pytest

from synthmed.cli import main
from synthmed.daemon.rebuild import rebuild_catalog
from synthmed.registry import record_paths as rp
from synthmed.registry.authoring.index_layout import shard_index
from synthmed.registry.authoring.indexcheck import check_index
from synthmed.registry.authoring.medigan_import import place_version
from synthmed.registry.catalog import Catalog
from synthmed.registry.errors import ConfigError
from synthmed.registry.records import load_record, validate_path

from helpers.records import unverified, write_record
from helpers.repos import commit, init_repo
from helpers.sites import catalog, sync, write_site


def test_paths_of_both_layouts_name_the_same_version() -> None:
    shard = hashlib.sha256(b"toy-gan").hexdigest()[:2]
    assert rp.record_relpath("toy-gan", "1.0.0") == "models/toy-gan/1.0.0.json"
    assert rp.record_relpath("toy-gan", "1.0.0", sharded=True) == f"models/{shard}/toy-gan@1.0.0.json"
    for rel in rp.record_relpaths("toy-gan", "1.0.0"):
        assert rp.parse_record_relpath(rel) == ("toy-gan", "1.0.0")
    other = "00" if shard != "00" else "01"
    assert rp.parse_record_relpath(f"models/{other}/toy-gan@1.0.0.json") is None  # not its shard
    assert rp.parse_record_relpath(f"models/{shard}/toy-gan.json") is None  # no version
    assert rp.parse_record_relpath("models/toy-gan/x@1.0.0.json") is None  # '@' in a flat name
    assert rp.parse_record_relpath("models/toy-gan/1.0.0.txt") is None
    assert rp.parse_record_relpath("datasets/toy-gan/1.0.0.json") is None
    assert rp.parse_record_relpath("models/a/b/c.json") is None


def test_a_sharded_index_validates_and_a_misplaced_or_doubled_record_is_named(tmp_path: Path) -> None:
    write_record(tmp_path, unverified("toy-gan"), sharded=True)
    write_record(tmp_path, unverified("toy-gan", version="1.1.0"), sharded=True)
    report = validate_path(tmp_path)
    assert report.ok and report.checked == 2, report.as_dict()
    assert rp.is_sharded(tmp_path) and sorted(rp.versions_of(tmp_path, "toy-gan")) == ["1.0.0", "1.1.0"]
    assert load_record(tmp_path / rp.record_relpath("toy-gan", "1.1.0", sharded=True)).ref == "toy-gan@1.1.0"

    # in the wrong shard: the error names both places the record may be
    shard = rp.shard_of("toy-gan")
    wrong = tmp_path / "models" / ("00" if shard != "00" else "01") / "toy-gan@2.0.0.json"
    wrong.parent.mkdir()
    wrong.write_text(json.dumps(unverified("toy-gan", version="2.0.0")))
    report = validate_path(tmp_path)
    [problem] = report.errors
    assert "models/toy-gan/2.0.0.json" in problem.message and f"models/{shard}/toy-gan@2.0.0.json" in problem.message
    wrong.unlink()

    # the same version at both paths
    write_record(tmp_path, unverified("toy-gan"))
    report = validate_path(tmp_path)
    assert [p.message for p in report.errors] == [
        f"toy-gan@1.0.0 is also at models/{shard}/toy-gan@1.0.0.json: an index holds each version once "
        "(keep one file, in the index's layout)"]


def test_index_shard_moves_every_record_and_refuses_a_doubled_one(tmp_path: Path, capsys: Any) -> None:
    for i in range(3):
        write_record(tmp_path, unverified(f"model-{i}"))
    (tmp_path / "models" / "model-0" / "NOTES.md").write_text("kept\n")
    before = {p.name: p.read_bytes() for p in rp.record_files(tmp_path)}
    assert main(["index", "shard", "--index", str(tmp_path), "--dry-run"]) == 0
    assert "would move 3 record(s)" in capsys.readouterr().out
    assert not rp.is_sharded(tmp_path)
    moves = shard_index(tmp_path)
    assert [m.ref for m in moves] == ["model-0@1.0.0", "model-1@1.0.0", "model-2@1.0.0"]
    assert rp.is_sharded(tmp_path) and validate_path(tmp_path).ok
    assert not (tmp_path / "models" / "model-1").exists()  # emptied folders go
    assert (tmp_path / "models" / "model-0" / "NOTES.md").is_file()  # other files stay
    after = {f"{m.ref.split('@')[1]}.json": (tmp_path / m.new).read_bytes() for m in moves}
    assert set(after.values()) == set(before.values())  # the bytes never change
    assert shard_index(tmp_path) == []  # sharded already

    write_record(tmp_path, unverified("model-1"))  # the same version again, flat
    with pytest.raises(ConfigError, match="model-1@1.0.0 is at models/model-1/1.0.0.json and at"):
        shard_index(tmp_path)


def test_a_medigan_import_into_a_sharded_index_follows_its_layout(tmp_path: Path) -> None:
    old = unverified("toy-gan")
    write_record(tmp_path, old, sharded=True)
    record, state = place_version(dict(old), tmp_path)
    assert (state, record["version"]) == ("unchanged", "1.0.0")  # found in its shard
    record, state = place_version(dict(old, title="converted again"), tmp_path)
    assert (state, record["version"]) == ("created", "1.0.1")  # 1.0.0 is held with other text: a new version
    assert rp.new_record_path(tmp_path, "toy-gan", "1.0.1") == tmp_path / rp.record_relpath("toy-gan", "1.0.1",
                                                                                           sharded=True)


@pytest.fixture
def upstream(tmp_path: Path) -> git.Repo:
    repo = init_repo(tmp_path / "idx")
    root = Path(repo.working_dir) / "index"
    for i in range(4):
        write_record(root, unverified(f"model-{i}", title=f"Model number {i}"))
    commit(repo, "four models, flat")
    return repo


def _site(tmp_path: Path, repo: git.Repo) -> Any:
    return write_site(tmp_path / "site", [{"name": "public", "url": repo.working_dir, "subfolder": "index"}])


def _served(settings: Any) -> dict[str, str]:
    """``{ref: record JSON}`` of what the site serves."""
    with catalog(settings) as cat:
        return {e.ref: json.dumps(cat.models.stored_record("public", e.id, e.version), sort_keys=True)
                for e in cat.models.list_models(all_versions=True)}


def _fresh_equals_incremental(tmp_path: Path, settings: Any, name: str) -> None:
    with catalog(settings) as cat:
        incremental = cat.snapshot()
    fresh = tmp_path / f"{name}.db"
    rebuild_catalog(settings, fresh)
    with Catalog.open(fresh) as cat:
        assert cat.snapshot() == incremental


def test_a_site_follows_an_index_moved_to_shards_and_new_versions_in_them(tmp_path: Path, upstream: git.Repo,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    settings = _site(tmp_path, upstream)
    [r] = sync(settings)
    assert (r.status, r.changed) == ("ok", 4)
    flat = _served(settings)
    root = Path(upstream.working_dir) / "index"
    base = upstream.head.commit.hexsha

    upstream.git.checkout("-q", "-b", "shard")
    assert len(shard_index(root)) == 4
    commit(upstream, "shard the index")
    # the gate: a move between the layouts, nothing added, changed or refused
    result = check_index(upstream.working_dir, base)
    assert result.ok, result.summary()
    assert (sorted(result.moved), result.added_models, result.changed) == (
        ["model-0@1.0.0", "model-1@1.0.0", "model-2@1.0.0", "model-3@1.0.0"], [], [])
    assert "moved       4 version(s)" in result.summary()
    upstream.git.checkout("-q", "main")
    upstream.git.merge("-q", "--ff-only", "shard")

    with caplog.at_level("WARNING"):
        [r] = sync(settings)
    assert (r.status, r.skipped) == ("ok", [])
    assert "deleted upstream" not in caplog.text  # a move withdraws nothing, so it warns of nothing
    served = _served(settings)
    assert served == flat  # the same records, moved
    _fresh_equals_incremental(tmp_path, settings, "moved")

    # a new version of a known model and a new model, in the sharded layout
    base = upstream.head.commit.hexsha
    upstream.git.checkout("-q", "-b", "more")
    write_record(root, unverified("model-1", version="1.1.0"), sharded=True)
    write_record(root, unverified("model-9"), sharded=True)
    commit(upstream, "two more")
    result = check_index(upstream.working_dir, base)
    assert result.ok and result.added_versions == ["model-1@1.1.0"] and result.added_models == ["model-9@1.0.0"]
    upstream.git.checkout("-q", "main")
    upstream.git.merge("-q", "--ff-only", "more")
    [r] = sync(settings)
    assert (r.status, r.changed, r.skipped) == ("ok", 2, [])
    assert sorted(_served(settings)) == ["model-0@1.0.0", "model-1@1.0.0", "model-1@1.1.0", "model-2@1.0.0",
                                         "model-3@1.0.0", "model-9@1.0.0"]
    _fresh_equals_incremental(tmp_path, settings, "more")


def test_a_move_that_git_does_not_pair_as_a_rename_is_still_a_move(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "idx")
    root = Path(repo.working_dir)
    write_record(root, unverified("toy-gan"))
    base = commit(repo, "flat")
    (root / "models" / "toy-gan" / "1.0.0.json").unlink()
    # moved, and its description (a mutable field) rewritten at length: too unlike to pair as a rename
    write_record(root, unverified("toy-gan", description="A rewritten description. " * 200), sharded=True)
    commit(repo, "move and describe")
    assert sorted(d.change_type for d in repo.commit(base).diff(repo.head.commit)) == ["A", "D"]
    result = check_index(repo.working_dir, base)
    assert result.ok, result.summary()
    assert (result.moved, result.changed, result.added_models) == (
        ["toy-gan@1.0.0"], [{"ref": "toy-gan@1.0.0", "fields": ["description"]}], [])


def test_a_version_at_both_paths_is_served_from_the_flat_one_until_it_goes(tmp_path: Path, upstream: git.Repo) -> None:
    settings = _site(tmp_path, upstream)
    sync(settings)
    root = Path(upstream.working_dir) / "index"
    base = upstream.head.commit.hexsha
    sharded = rp.record_relpath("model-2", "1.0.0", sharded=True)

    # a copy in the other layout, with another title: refused by the gate, skipped by a site
    write_record(root, unverified("model-2", title="The copy"), sharded=True)
    commit(upstream, "a copy")
    result = check_index(upstream.working_dir, base)
    assert not result.ok
    assert [p.message for p in result.problems] == [
        "this version is also at models/model-2/1.0.0.json: an index holds each version once (keep the file in "
        "the index's layout and remove the other)"]
    [r] = sync(settings)
    assert r.status == "ok" and [p for p, _ in r.skipped] == [sharded]
    assert "model-2@1.0.0 is also at index/models/model-2/1.0.0.json, which is served" in r.skipped[0][1]
    served = _served(settings)
    assert json.loads(served["model-2@1.0.0"])["title"] == "Model number 2"
    _fresh_equals_incremental(tmp_path, settings, "both")

    # the flat file goes: the sharded one is served, though it did not change
    (root / "models" / "model-2" / "1.0.0.json").unlink()
    commit(upstream, "the flat file goes")
    [r] = sync(settings)
    assert (r.status, r.skipped) == ("ok", [])
    assert json.loads(_served(settings)["model-2@1.0.0"])["title"] == "The copy"
    _fresh_equals_incremental(tmp_path, settings, "sharded")
    with catalog(settings) as cat:
        assert cat.models.problems("public") == []
