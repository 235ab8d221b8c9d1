"""Dataset records in the index's gate (`synthmed index check`) and `synthmed index validate`:
the model version in the same index with its package sha256, `index:` artefacts that hash
to the record, the licence rule, merged versions immutable, stray files refused. No model
runs here: the records and a small tar are written by hand."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import git
import pytest

from helpers import REPO_ROOT
from helpers.repos import init_repo
from synthmed.cli import main
from synthmed.registry.authoring.dataset_policy import licence_findings
from synthmed.registry.authoring.indexcheck import IndexCheckResult, check_index

MODEL = json.loads((REPO_ROOT / "index" / "models" / "ihc-patch-dcgan" / "1.0.0.json").read_text())
TAR = b"not really a tar, but the gate only hashes it" * 10
REC = "datasets/ihc-s7/1.0.0.json"
TAR_PATH = "artefacts/datasets/ihc-s7/1.0.0.tar"
GOOD: dict[str, Any] = {
    "format": "synthmed-dataset/1", "id": "ihc-s7", "version": "1.0.0", "title": "IHC patches",
    "summary": "10 IHC patches", "status": "active",
    "model": {"id": "ihc-patch-dcgan", "version": "1.0.0", "sha256": MODEL["package"]["artefact"]["sha256"]},
    "generation": {"outputs": ["image"], "params": {}, "first_seed": 7, "count": 10, "file_format": "png",
                   "layout": "synthmed", "manifest_sha256": "a" * 64},
    "artefact": {"sha256": hashlib.sha256(TAR).hexdigest(), "size": len(TAR), "media_type": "application/x-tar",
                 "sources": [f"index:{TAR_PATH}"]},
    "license": "MIT", "license_override": "scikit-image: no known copyright restrictions",
    "audit": {"verdict": "not-run", "override": "a test"},
    "card": {"intended_use": "tests", "limitations": "none"}, "authors": [{"name": "x"}],
}


def _dump(data: Any) -> bytes:
    return (json.dumps(data, indent=1) + "\n").encode()


@pytest.fixture
def repo(tmp_path: Path) -> git.Repo:
    """An index (models/ at the root) holding ihc-patch-dcgan@1.0.0's record on main."""
    r = init_repo(tmp_path / "index")
    _write(r, {"models/ihc-patch-dcgan/1.0.0.json": _dump(MODEL)})
    r.git.add("-A")
    r.git.commit("-q", "-m", "model")
    return r


def _write(repo: git.Repo, files: dict[str, bytes | None]) -> None:
    root = Path(str(repo.working_tree_dir))
    for rel, data in files.items():
        p = root / rel
        if data is None:
            p.unlink()
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def _pr(repo: git.Repo, files: dict[str, bytes | None], name: str = "pr") -> IndexCheckResult:
    """Commit ``files`` on a new branch from main and run the gate on it."""
    repo.git.checkout("-q", "-b", name, "main")
    _write(repo, files)
    repo.git.add("-A")
    repo.git.commit("-q", "-m", name)
    repo.git.checkout("-q", "main")
    return check_index(str(repo.working_tree_dir), "main", name)


def _merge(repo: git.Repo, name: str) -> None:
    repo.git.merge("-q", "--ff-only", name)


def _errors(result: IndexCheckResult) -> list[str]:
    return [f"{p.path} {p.json_path} {p.message}" for p in result.problems]


def test_a_good_dataset_passes_with_its_licence_warning(repo: git.Repo) -> None:
    result = _pr(repo, {REC: _dump(GOOD), TAR_PATH: TAR})
    assert result.ok, _errors(result)
    assert result.added_datasets == ["ihc-s7@1.0.0"]
    assert any("NOASSERTION" in w.message and "override" in w.message for w in result.warnings)


@pytest.mark.parametrize("change, where, words", [
    (lambda d: d["model"].update(version="2.0.0"), "$.model", "not in this index"),
    (lambda d: d["model"].update(sha256="f" * 64), "$.model.sha256", "another package"),
    (lambda d: d.pop("license_override"), "$.license", "--override-licence"),
    (lambda d: d.update(license="NOASSERTION"), "$.license", "states its licence"),
    (lambda d: d["artefact"].update(size=3), "$.artefact.sources[0]", "the record says"),
    (lambda d: d["artefact"].update(sources=["index:artefacts/datasets/ihc-s7/missing.tar"]),
     "$.artefact.sources[0]", "not a file of the index"),
    (lambda d: d["generation"].update(outputs=["mask"]), "$.generation.outputs[0]", "not an output"),
    (lambda d: d["generation"].update(params={"size": 3}), "$.generation.params", "size"),
])
def test_bad_dataset_records_are_refused_naming_the_field(repo: git.Repo, change: Any, where: str,
                                                          words: str) -> None:
    data = copy.deepcopy(GOOD)
    change(data)
    result = _pr(repo, {REC: _dump(data), TAR_PATH: TAR})
    assert not result.ok
    assert any(p.path.endswith(REC) and p.json_path == where and words in p.message for p in result.problems), \
        _errors(result)


def test_a_yanked_model_refuses_the_dataset(repo: git.Repo) -> None:
    _write(repo, {"models/ihc-patch-dcgan/1.0.0.json": _dump({**MODEL, "status": "yanked",
                                                              "status_reason": "broken weights"})})
    repo.git.commit("-qam", "yank")
    result = _pr(repo, {REC: _dump(GOOD), TAR_PATH: TAR})
    assert any("yanked" in m for m in _errors(result)), _errors(result)


def test_a_merged_dataset_version_is_immutable_but_its_card_may_change(repo: git.Repo) -> None:
    assert _pr(repo, {REC: _dump(GOOD), TAR_PATH: TAR}).ok
    _merge(repo, "pr")
    card = copy.deepcopy(GOOD)
    card["card"]["limitations"] = "found later: the patches are too smooth"
    card["status"], card["status_reason"] = "deprecated", "superseded by 1.1.0"
    result = _pr(repo, {REC: _dump(card)}, "card")
    assert result.ok, _errors(result)
    assert result.changed == [{"ref": "ihc-s7@1.0.0", "fields": ["card", "status", "status_reason"]}]
    count = copy.deepcopy(GOOD)
    count["generation"]["count"] = 12
    result = _pr(repo, {REC: _dump(count)}, "count")
    assert [(p.json_path, "cannot change in a merged version" in p.message) for p in result.problems] == \
        [("$.generation.count", True)]
    # the artefact a merged dataset points to may not change either, nor the record go
    result = _pr(repo, {TAR_PATH: TAR + b"!"}, "tar")
    assert any("may not change or go" in m for m in _errors(result)), _errors(result)
    result = _pr(repo, {REC: None}, "delete")
    assert any("may not be deleted" in m for m in _errors(result)), _errors(result)


@pytest.mark.parametrize("path, words", [
    ("datasets/ihc-s7/2.0.0.json", "should be at datasets/ihc-s7/1.0.0.json"),
    ("datasets/other/1.0.0.json", "should be at datasets/ihc-s7/1.0.0.json"),
    ("datasets/ihc-s7.json", "only dataset records belong under datasets/"),
    ("datasets/ihc-s7/1.0.0/notes.txt", "only dataset records belong under datasets/"),
])
def test_wrong_paths_under_datasets_are_refused(repo: git.Repo, path: str, words: str) -> None:
    result = _pr(repo, {path: _dump(GOOD), TAR_PATH: TAR})
    assert any(words in m for m in _errors(result)), _errors(result)


def test_index_validate_checks_datasets_against_the_folder(repo: git.Repo, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    root = Path(str(repo.working_tree_dir))
    _write(repo, {REC: _dump(GOOD), TAR_PATH: TAR})
    assert main(["index", "validate", str(root)]) == 0
    assert "2 record(s) checked" in capsys.readouterr().out
    assert main(["index", "validate", str(root / REC)]) == 0
    assert "1 record(s) checked" in capsys.readouterr().out
    bad = copy.deepcopy(GOOD)
    bad["model"]["version"] = "1.0.1"
    _write(repo, {REC: _dump(bad), "datasets/stray.txt": b"x"})
    assert main(["index", "validate", str(root), "--json"]) == 1
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert {(Path(e["path"]).name, e["json_path"]) for e in errors} == {("1.0.0.json", "$.model"), ("stray.txt", "$")}
    shutil.rmtree(root / "datasets")


MODEL_CHAIN = {"id": "m", "version": "1.0.0", "license": "MIT",
               "training": {"datasets": [{"name": "a", "license": "CC-BY-4.0"}]}}


def _chain(*training: str | None, model: str = "MIT") -> dict[str, Any]:
    return {**MODEL_CHAIN, "license": model,
            "training": {"datasets": [{"name": f"t{i}", **({"license": lic} if lic else {})}
                                      for i, lic in enumerate(training)]}}


@pytest.mark.parametrize("dataset, model, override, ok, words", [
    ("CC-BY-4.0", _chain("CC-BY-4.0"), None, True, ""),
    ("MIT", _chain("CC0-1.0", model="Apache-2.0"), None, True, ""),
    ("CC-BY-4.0", _chain("CC-BY-ND-4.0"), None, False, "NoDerivatives"),
    ("CC-BY-NC-ND-4.0", _chain("CC-BY-NC-ND-4.0"), None, False, "NoDerivatives"),
    ("CC-BY-4.0", _chain("CC-BY-NC-4.0"), None, False, "NonCommercial"),
    ("CC-BY-NC-4.0", _chain("CC-BY-NC-4.0"), None, True, ""),
    ("CC-BY-NC-4.0 OR MIT", _chain("CC-BY-NC-4.0"), None, False, "NonCommercial"),
    ("CC-BY-4.0", _chain("CC-BY-SA-4.0"), None, False, "ShareAlike"),
    ("CC-BY-SA-4.0", _chain("CC-BY-SA-4.0"), None, True, ""),
    ("CC-BY-SA-4.0", _chain("CC-BY-SA-4.0", "ODbL-1.0"), None, False, "different ShareAlike"),
    ("CC-BY-NC-4.0", _chain("CC-BY-4.0", model="CC-BY-NC-4.0"), None, True, ""),
    ("MIT", _chain("NOASSERTION"), None, False, "--override-licence"),
    ("MIT", _chain(None), None, False, "no licence given"),
    ("MIT", _chain("LicenseRef-hospital-terms"), None, False, "--override-licence"),
    ("MIT", _chain("NOASSERTION"), "checked the terms: public domain", True, ""),
    ("NOASSERTION", _chain("CC0-1.0"), None, False, "states its licence"),
])
def test_the_licence_rule(dataset: str, model: dict[str, Any], override: str | None, ok: bool,
                          words: str) -> None:
    errors, warnings = licence_findings(dataset, model, override)
    assert (not errors) is ok, errors
    if words:
        assert any(words in e for e in errors), errors
    if override and ok:
        assert warnings and override in warnings[0]
