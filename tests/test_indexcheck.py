"""`synthmed index check`: the pull-request gate over a real git repository."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from synthmed.cli import main
from synthmed.registry import errors
from synthmed.registry.authoring.indexcheck import check_index

from helpers.records import write_record
from helpers.repos import commit, init_repo


@pytest.fixture
def merged(index_repo: git.Repo, make_record) -> tuple[git.Repo, str, dict]:
    root = Path(index_repo.working_dir)
    data = make_record()
    write_record(root, data)
    (root / "artefacts" / "toy-gan").mkdir(parents=True)
    (root / "artefacts" / "toy-gan" / "1.0.0.zip").write_bytes(b"PK-not-really")
    base = commit(index_repo, "add toy-gan 1.0.0")
    return index_repo, base, data


def _branch(repo: git.Repo, name: str) -> None:
    repo.git.checkout("-b", name)


def test_changing_sha256_fails_naming_field(merged) -> None:
    repo, base, data = merged
    _branch(repo, "pr")
    data["package"]["artefact"]["sha256"] = "1" * 64
    write_record(Path(repo.working_dir), data)
    commit(repo, "tamper")
    result = check_index(repo.working_dir, base)
    assert not result.ok
    assert [p.json_path for p in result.problems] == ["$.package.artefact.sha256"]
    assert "cannot change in a merged version" in result.problems[0].message
    assert "models/toy-gan/1.0.0.json" in str(result.problems[0])


def test_new_version_passes(merged) -> None:
    repo, base, data = merged
    _branch(repo, "pr")
    data["version"] = "1.1.0"
    data["package"]["artefact"]["sha256"] = "2" * 64
    write_record(Path(repo.working_dir), data)
    commit(repo, "1.1.0")
    result = check_index(repo.working_dir, base)
    assert result.ok, result.summary()
    assert result.added_versions == ["toy-gan@1.1.0"]


def test_new_model_passes_and_is_summarised(merged) -> None:
    repo, base, data = merged
    _branch(repo, "pr")
    data["id"] = "other-gan"
    write_record(Path(repo.working_dir), data)
    commit(repo, "new model")
    result = check_index(repo.working_dir, base)
    assert result.ok
    assert result.added_models == ["other-gan@1.0.0"]
    assert "+ new model   other-gan@1.0.0" in result.summary()


def test_deleting_a_version_fails(merged) -> None:
    repo, base, data = merged
    _branch(repo, "pr")
    (Path(repo.working_dir) / "models" / "toy-gan" / "1.0.0.json").unlink()
    commit(repo, "delete")
    result = check_index(repo.working_dir, base)
    assert not result.ok
    assert "yanked" in result.problems[0].message


def test_editing_description_status_metrics_passes(merged) -> None:
    repo, base, data = merged
    _branch(repo, "pr")
    data["description"] = "A better description."
    data["status"] = "yanked"
    data["status_reason"] = "superseded by 1.1.0"
    data["metrics"].append({"name": "KID", "value": 0.01, "better": "lower", "source": "measured"})
    write_record(Path(repo.working_dir), data)
    commit(repo, "edit")
    result = check_index(repo.working_dir, base)
    assert result.ok, result.summary()
    assert set(result.changed[0]["fields"]) == {"description", "status", "status_reason", "metrics"}


def test_pinning_an_unverified_record_passes_but_repinning_fails(index_repo: git.Repo, make_record) -> None:
    root = Path(index_repo.working_dir)
    data = make_record(**{"package.artefact.sha256": ..., "package.artefact.size": ...})
    write_record(root, data)
    base = commit(index_repo, "unverified")
    _branch(index_repo, "pin")
    data["package"]["artefact"].update(sha256="3" * 64, size=99)
    write_record(root, data)
    pinned = commit(index_repo, "pin")
    assert check_index(root, base).ok
    data["package"]["artefact"]["sha256"] = "4" * 64
    write_record(root, data)
    commit(index_repo, "re-pin")
    result = check_index(root, pinned)
    assert not result.ok and result.problems[0].json_path == "$.package.artefact.sha256"


def test_invalid_added_record_fails(merged) -> None:
    repo, base, data = merged
    _branch(repo, "pr")
    data["version"] = "2.0.0"
    data["license"] = "BSD"
    write_record(Path(repo.working_dir), data)
    commit(repo, "bad licence")
    result = check_index(repo.working_dir, base)
    assert [p.json_path for p in result.problems] == ["$.license"]


def test_changing_a_referenced_index_artefact_fails(merged) -> None:
    repo, base, data = merged
    _branch(repo, "pr")
    (Path(repo.working_dir) / "artefacts" / "toy-gan" / "1.0.0.zip").write_bytes(b"swapped")
    commit(repo, "swap artefact")
    result = check_index(repo.working_dir, base)
    assert not result.ok
    assert "toy-gan@1.0.0" in result.problems[0].message


def test_index_in_subfolder_and_cli(tmp_path: Path, make_record, capsys) -> None:
    root = tmp_path / "repo"
    repo = init_repo(root, "x")
    data = make_record()
    write_record(root / "index", data)
    base = commit(repo, "base")
    data["package"]["inputs"] = {}
    data["inputs"] = {"type": "object"}
    write_record(root / "index", data)
    commit(repo, "change inputs")
    rc = main(["index", "check", "--repo", str(root), "--base", base, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    paths = {e["json_path"] for e in out["errors"]}
    assert "$.package.inputs" in paths and any(p.startswith("$.inputs") for p in paths)


def test_unknown_revision_is_a_clear_error(merged) -> None:
    repo, _, _ = merged
    with pytest.raises(errors.IndexCheckError, match="cannot resolve revision 'nope'"):
        check_index(repo.working_dir, "nope")


def test_a_new_version_names_a_modality_the_vocabulary_knows(merged) -> None:
    """A merged record with unknown modality words keeps validating (a warning; its own words
    are its facet); a new version must name one the controlled vocabulary knows (issue #26)."""
    from synthmed.registry.records import validate_data

    repo, base, data = merged
    old = dict(data, modality=["holography"])
    errors, warnings = validate_data(old, "old.json")
    assert not errors and [w.json_path for w in warnings if w.json_path == "$.modality"] == ["$.modality"]
    _branch(repo, "pr")
    new = dict(data, version="1.1.0", modality=["holography"])
    write_record(Path(repo.working_dir), new)
    commit(repo, "1.1.0")
    result = check_index(repo.working_dir, base)
    assert not result.ok
    (problem,) = result.problems
    assert problem.json_path == "$.modality" and "DICOM modality code" in problem.message and "MG" in problem.message
    write_record(Path(repo.working_dir), dict(new, modality=["holography", "x-ray mammography"]))
    commit(repo, "a known one")
    assert check_index(repo.working_dir, base).ok
