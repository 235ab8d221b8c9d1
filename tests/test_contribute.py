"""`synthmed contribute` against the Zenodo emulator, a local DVC remote and the index
itself: each gives a branch that passes `synthmed index check --base main`, and a fresh
site synced from that branch fetches, verifies and runs the artefact."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import git
import numpy as np
import pytest
from helpers.repos import init_repo
from helpers.sites import write_site
from synthmed.cli import main
from synthmed.registry.authoring.contribute import contribute, reproducible_zip, zenodo_token
from synthmed.registry.errors import ContributeError
from synthmed.registry.record_paths import record_relpath
from synthmed.registry.records import load_record
from helpers.records import unverified, write_record
from helpers.packages import MEDIGAN_INIT, MEDIGAN_MODEL, contribution_metadata, medigan_weights, package_folder
from helpers.zenodo import ZenodoEmulator

TOKEN = "zenodo-secret-token-123"


@pytest.fixture(autouse=True)
def dvc_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_GLOBAL_CONFIG_DIR", str(tmp_path / "dvc-global"))
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SYNTHMED_ZENODO_TOKEN", raising=False)
    monkeypatch.delenv("SYNTHMED_HOME", raising=False)


def index_check(repo: git.Repo, branch: str, capsys: Any) -> None:
    repo.git.checkout(branch)
    try:
        rc = main(["index", "check", "--base", "main", "--repo", str(repo.working_tree_dir)])
        out = capsys.readouterr()
        assert rc == 0, out.out + out.err
        assert "OK" in out.out
    finally:
        repo.git.checkout("main")


def fresh_site_generates(tmp: Path, repo: git.Repo, branch: str, ref: str, capsys: Any,
                         file_roots: tuple[Path, ...] = (), **sections: Any) -> None:
    """Sync a new site from the contribution branch, then generate from the model.
    ``file_roots``: local folders the upstream's records may read (a local DVC repository)."""
    home = tmp / "fresh-site"
    upstream: dict[str, Any] = {"name": "public", "url": str(repo.working_tree_dir), "branch": branch}
    if file_roots:
        upstream["file_roots"] = [str(Path(r).resolve()) for r in file_roots]
    write_site(home, [upstream], runner={"device": "cpu"}, **sections)
    assert main(["--site", str(home), "sync"]) == 0
    out = capsys.readouterr().out
    assert "1 fetched, 0 failed" in out, out
    dest = tmp / "generated"
    rc = main(["--site", str(home), "generate", ref, "-n", "3", "-o", str(dest), "--format", "npy", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    files = sorted(p for p in dest.rglob("*.npy"))
    assert files, list(dest.rglob("*"))
    arrays = [np.load(f) for f in files]
    assert sum(a.shape[0] if a.ndim == 3 else 1 for a in arrays) == 3


def test_reproducible_zip(tmp_path: Path) -> None:
    pkg = package_folder(tmp_path)
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    sha_a, size_a = reproducible_zip(pkg, a)
    (pkg / "model.py").touch()  # a new mtime changes nothing
    sha_b, size_b = reproducible_zip(pkg, b)
    assert (sha_a, size_a) == (sha_b, size_b) == (hashlib.sha256(a.read_bytes()).hexdigest(), a.stat().st_size)
    with zipfile.ZipFile(a) as zf:
        assert zf.namelist() == ["model.py", "weights.txt"]  # sorted, no byte code
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


@pytest.mark.slow
def test_contribute_to_zenodo(tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = init_repo(tmp_path / "index")
    with ZenodoEmulator(tokens={TOKEN}) as zen:
        monkeypatch.setenv("SYNTHMED_ZENODO_TOKEN", TOKEN)
        rc = main(["contribute", str(package_folder(tmp_path)), "--id", "zen-model", "--version", "1.0.0",
                   "--metadata", str(contribution_metadata(tmp_path)), "--index", str(tmp_path / "index"),
                   "--store", "zenodo", "--zenodo-host", zen.base, "--report", str(tmp_path / "report")])
        out = capsys.readouterr()
        assert rc == 0, out.err
        assert TOKEN not in out.out + out.err
        assert "branch contribute/zen-model-1.0.0" in out.out
        assert f"git -C {tmp_path / 'index'} push" in out.out and "pull request" in out.out
        assert (tmp_path / "report" / "report.json").is_file()
        # the record on the branch: pinned, with a zenodo: source, and no token anywhere
        branch = "contribute/zen-model-1.0.0"
        text = repo.git.show(f"{branch}:models/zen-model/1.0.0.json")
        assert TOKEN not in text
        record = json.loads(text)
        art = record["package"]["artefact"]
        (rid,) = zen.records
        assert art["sources"] == [f"zenodo:{rid}/zen-model-1.0.0.zip"]
        published = zen.records[rid].files["zen-model-1.0.0.zip"]
        assert art["sha256"] == hashlib.sha256(published).hexdigest() and art["size"] == len(published)
        assert repo.active_branch.name == "main"  # the contributor's checkout is left alone
        assert not (tmp_path / "index" / "models").exists()
        index_check(repo, branch, capsys)
        fresh_site_generates(tmp_path, repo, branch, "zen-model@1.0.0", capsys,
                             sources={"zenodo_host": zen.base})


@pytest.mark.slow
def test_contribute_to_dvc(tmp_path: Path, capsys: Any) -> None:
    repo = init_repo(tmp_path / "index")
    dvc_root = tmp_path / "models-dvc"
    dvc_repo = init_repo(dvc_root)
    remote = tmp_path / "dvc-remote"
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(dvc + ["init", "-q"], cwd=dvc_root, check=True)
    subprocess.run(dvc + ["remote", "add", "-d", "local", str(remote)], cwd=dvc_root, check=True)
    dvc_repo.git.add("-A")
    dvc_repo.git.commit("-q", "-m", "dvc init")
    result = contribute(package_folder(tmp_path), model_id="dvc-model", version="2.0.0",
                        metadata=contribution_metadata(tmp_path),
                        index=tmp_path / "index", store="dvc", dvc_repo=dvc_root)
    assert result.branch == "contribute/dvc-model-2.0.0"
    rev = dvc_repo.head.commit.hexsha
    assert result.source == f"dvc:{dvc_root}#artefacts/dvc-model/2.0.0.zip@{rev}"
    assert any(remote.rglob("*")), "dvc push put nothing into the remote"
    assert (dvc_root / "artefacts" / "dvc-model" / "2.0.0.zip.dvc").is_file()
    assert f"git -C {dvc_root.resolve()} push" in result.instructions
    index_check(repo, result.branch, capsys)
    fresh_site_generates(tmp_path, repo, result.branch, "dvc-model@2.0.0", capsys, file_roots=(dvc_root,))


@pytest.mark.slow
def test_contribute_into_the_index_folder(tmp_path: Path, capsys: Any) -> None:
    root = tmp_path / "repo"
    repo = init_repo(root)
    (root / "index" / "models").mkdir(parents=True)
    (root / "index" / "models" / ".keep").write_text("")
    repo.git.add("-A")
    repo.git.commit("-q", "-m", "index folder")
    result = contribute(package_folder(tmp_path), model_id="small-model", version="0.1.0",
                        metadata=contribution_metadata(tmp_path),
                        index=root / "index", store="index")
    assert result.source == "index:artefacts/small-model/0.1.0.zip"
    assert result.record_path == "index/models/small-model/0.1.0.json"
    blob = repo.commit(result.branch).tree["index/artefacts/small-model/0.1.0.zip"].data_stream.read()
    assert hashlib.sha256(blob).hexdigest() == result.sha256
    repo.git.checkout(result.branch)
    assert load_record(root / result.record_path).sha256 == result.sha256
    repo.git.checkout("main")
    index_check(repo, result.branch, capsys)
    home = tmp_path / "site"
    write_site(home, [{"name": "public", "url": str(root), "branch": result.branch, "subfolder": "index"}],
               runner={"device": "cpu"})
    assert main(["--site", str(home), "sync"]) == 0
    capsys.readouterr()
    assert main(["--site", str(home), "test", "small-model", "--report", str(tmp_path / "r")]) == 0


def test_contribute_into_a_sharded_index_follows_its_layout(tmp_path: Path, capsys: Any) -> None:
    root = tmp_path / "repo"
    repo = init_repo(root)
    write_record(root / "index", unverified("other-gan"), sharded=True)
    repo.git.add("-A")
    repo.git.commit("-q", "-m", "a sharded index")
    result = contribute(package_folder(tmp_path), model_id="small-model", version="0.1.0",
                        metadata=contribution_metadata(tmp_path), index=root / "index", store="index")
    assert result.record_path == "index/" + record_relpath("small-model", "0.1.0", sharded=True)
    index_check(repo, result.branch, capsys)
    # the same version is refused whichever layout holds it
    repo.git.merge("-q", "--ff-only", result.branch)
    with pytest.raises(ContributeError, match=r"small-model@0\.1\.0 already exists in the index"):
        contribute(package_folder(tmp_path), model_id="small-model", version="0.1.0",
                   metadata=contribution_metadata(tmp_path), index=root / "index", store="index")


def test_failing_model_is_not_contributed(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "index")
    with pytest.raises(ContributeError) as err:
        contribute(package_folder(tmp_path, "nondeterministic"), model_id="bad-model", version="1.0.0",
                   metadata=contribution_metadata(tmp_path), index=tmp_path / "index", store="index")
    assert "the model test failed: determinism: not deterministic" in str(err.value)
    assert [h.name for h in repo.heads] == ["main"]


def test_invalid_metadata_is_refused_with_json_paths(tmp_path: Path) -> None:
    init_repo(tmp_path / "index")
    meta = contribution_metadata(tmp_path, license="not a licence", task="dreaming")
    with pytest.raises(ContributeError) as err:
        contribute(package_folder(tmp_path), model_id="meta-model", version="1.0.0", metadata=meta,
                   index=tmp_path / "index")
    assert "$.task" in str(err.value) and "$.license" in str(err.value)
    with pytest.raises(ContributeError, match="not a valid model id"):
        contribute(package_folder(tmp_path), model_id="Bad Id", version="1.0.0", metadata=meta, index=tmp_path / "index")


@pytest.mark.slow
def test_existing_version_and_big_artefacts_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "index"
    repo = init_repo(root)
    first = contribute(package_folder(tmp_path), model_id="twice", version="1.0.0", metadata=contribution_metadata(tmp_path), index=root)
    repo.git.merge(first.branch)
    with pytest.raises(ContributeError, match="already exists in the index"):
        contribute(package_folder(tmp_path), model_id="twice", version="1.0.0", metadata=contribution_metadata(tmp_path), index=root)
    with pytest.raises(ContributeError, match="use --store zenodo or --store dvc"):
        contribute(package_folder(tmp_path), model_id="twice", version="1.1.0", metadata=contribution_metadata(tmp_path), index=root,
                   index_max_bytes=100)
    assert "contribute/twice-1.1.0" not in [h.name for h in repo.heads]


def test_zenodo_token_sources(tmp_path: Path) -> None:
    f = tmp_path / "tok"
    f.write_text("from-file\n")
    assert zenodo_token(None, None, f, environ={}) == "from-file"
    assert zenodo_token(None, None, None, environ={"SYNTHMED_ZENODO_TOKEN": "from-env"}) == "from-env"
    assert zenodo_token(None, None, None, environ={"SYNTHMED_ZENODO_TOKEN_FILE": str(f)}) == "from-file"
    with pytest.raises(ContributeError, match="no Zenodo token"):
        zenodo_token(None, None, None, environ={"XDG_CONFIG_HOME": str(tmp_path / "none")})


def test_zenodo_errors_never_show_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_repo(tmp_path / "index")
    with ZenodoEmulator(tokens={"another"}) as zen:
        monkeypatch.setenv("SYNTHMED_ZENODO_TOKEN", TOKEN)
        with pytest.raises(ContributeError) as err:
            contribute(package_folder(tmp_path), model_id="zen-bad", version="1.0.0", metadata=contribution_metadata(tmp_path),
                       index=tmp_path / "index", store="zenodo", zenodo_host=zen.base)
    assert "uploading zen-bad-1.0.0.zip to Zenodo" in str(err.value)
    assert TOKEN not in str(err.value)


def test_entry_point_must_be_in_the_package(tmp_path: Path) -> None:
    init_repo(tmp_path / "index")
    meta = json.loads(contribution_metadata(tmp_path).read_text())
    meta["package"]["entry_point"] = "models.gan:build"
    with pytest.raises(ContributeError) as err:
        contribute(package_folder(tmp_path), model_id="lost-model", version="1.0.0", metadata=meta, index=tmp_path / "index")
    assert "neither models/gan.py nor models/gan/__init__.py is in the package" in str(err.value)


@pytest.mark.slow
def test_contribute_a_medigan_package(tmp_path: Path) -> None:
    root = tmp_path / "index"
    init_repo(root)
    pkg = tmp_path / "medigan-pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(MEDIGAN_INIT)
    (pkg / "model.py").write_text(MEDIGAN_MODEL)
    (pkg / "generator.pt").write_bytes(medigan_weights())
    meta = json.loads(contribution_metadata(tmp_path).read_text())
    meta["inputs"] = {"type": "object", "properties": {"shift": {"type": "number", "default": 0.0}},
                      "additionalProperties": False}
    meta["outputs"] = [{"name": "image", "kind": "image", "dims": 2, "shape": [6, 6], "dtype": "uint8", "channels": 1,
                        "value_range": [0, 255]}]
    meta["package"] = {"entry_point": "medigan_pkg", "weights": "generator.pt", "requirements": []}
    meta["test"] = {"num_samples": 2, "seed": 1, "params": {"shift": 0.1}, "timeout_s": 60}
    result = contribute(pkg, model_id="medigan-style", version="1.0.0", metadata=meta, index=root,
                        package_format="medigan-1")
    assert result.record["package"]["format"] == "medigan-1"
    assert result.test_status == "passed"
