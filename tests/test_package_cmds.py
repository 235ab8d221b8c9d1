"""`synthmed package init` -> `synthmed package test` -> `synthmed contribute` -> `synthmed
index check`: a contributor's first hour, end to end; plus the refusals on the way
(a non-empty folder, a package that breaks the seed contract, a missing Zenodo token
noticed before anything is zipped or tested)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers.repos import init_repo
from synthmed.cli import main
from synthmed.registry.authoring import contribute as contribute_mod
from synthmed.registry.authoring import contribute_package
from synthmed.registry.authoring.contribute import contribute
from synthmed.registry.errors import ContributeError
from synthmed.registry.authoring.package_template import write_template


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNTHMED_ZENODO_TOKEN", raising=False)
    monkeypatch.delenv("SYNTHMED_ZENODO_TOKEN_FILE", raising=False)
    monkeypatch.delenv("SYNTHMED_HOME", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.mark.slow
def test_init_test_contribute_check(tmp_path: Path, capsys: Any) -> None:
    pkg = tmp_path / "my-model"
    assert main(["package", "init", str(pkg)]) == 0
    out = capsys.readouterr().out
    assert "synthmed package test" in out
    assert sorted(p.name for p in pkg.iterdir()) == ["README.md", "metadata.json", "model.py", "weights.safetensors"]
    assert "torch.Generator().manual_seed" in (pkg / "model.py").read_text()

    assert main(["package", "test", str(pkg), "--report", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    for check in ("shapes", "dtypes", "value_range", "finite", "determinism", "batch_invariance", "params"):
        assert f"pass  {check}" in out, out
    assert "my-model@0.0.0: model test passed" in out
    assert (tmp_path / "report" / "report.json").is_file()

    repo = init_repo(tmp_path / "index")
    rc = main(["contribute", str(pkg), "--id", "my-model", "--version", "1.0.0",
               "--metadata", str(pkg / "metadata.json"), "--index", str(tmp_path / "index"), "--store", "index"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "branch contribute/my-model-1.0.0" in out.out
    record = json.loads(repo.git.show("contribute/my-model-1.0.0:models/my-model/1.0.0.json"))
    assert record["package"]["artefact"]["sources"] == ["index:artefacts/my-model/1.0.0.zip"]

    repo.git.checkout("contribute/my-model-1.0.0")
    try:
        rc = main(["index", "check", "--base", "main", "--head", "contribute/my-model-1.0.0",
                   "--repo", str(tmp_path / "index")])
        out = capsys.readouterr()
        assert rc == 0, out.out + out.err
        assert "+ new model   my-model@1.0.0" in out.out and "OK" in out.out
    finally:
        repo.git.checkout("main")


@pytest.mark.slow
def test_volume_template_passes(tmp_path: Path, capsys: Any) -> None:
    pkg = tmp_path / "vol"
    assert main(["package", "init", str(pkg), "--id", "my-volume", "--kind", "volume"]) == 0
    capsys.readouterr()
    assert main(["package", "test", str(pkg), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "passed" and data["ref"] == "my-volume@0.0.0"


def test_init_refuses_a_non_empty_folder(tmp_path: Path, capsys: Any) -> None:
    pkg = tmp_path / "taken"
    pkg.mkdir()
    (pkg / "notes.txt").write_text("mine")
    assert main(["package", "init", str(pkg)]) == 1
    err = capsys.readouterr().err
    assert "the folder is not empty" in err and "never overwrites" in err
    assert sorted(p.name for p in pkg.iterdir()) == ["notes.txt"]
    with pytest.raises(ContributeError, match="not a valid model id"):
        write_template(tmp_path / "Bad Name")


def test_template_is_reproducible(tmp_path: Path) -> None:
    write_template(tmp_path / "a", model_id="same-model")
    write_template(tmp_path / "b", model_id="same-model")
    for name in ("model.py", "metadata.json", "weights.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.slow
def test_a_global_rng_fails_with_the_batch_invariance_hint(tmp_path: Path, capsys: Any) -> None:
    pkg = tmp_path / "broken-model"
    write_template(pkg)
    code = (pkg / "model.py").read_text()
    # the common mistake: one draw from the global RNG for the whole batch
    code = code.replace("""        outs = []
        for seed in seeds:""", """        outs = []
        torch.manual_seed(int(seeds[0]))
        for seed in seeds:""")
    code = code.replace("z = torch.randn(1, LATENT, generator=g)", "z = torch.randn(1, LATENT)")
    (pkg / "model.py").write_text(code)
    assert main(["package", "test", str(pkg)]) == 1
    out = capsys.readouterr().out
    assert "fail  batch_invariance" in out, out
    assert "sample i depends on its batch" in out
    assert "draw each sample from its own generator seeded with its seed, e.g. torch.Generator().manual_seed(seed)" in out
    assert "do not use the global RNG or batch statistics (BatchNorm in train mode)" in out
    assert "model test failed" in out


def test_missing_token_fails_before_zipping_or_testing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "zen-model"
    write_template(pkg)
    init_repo(tmp_path / "index")
    calls: list[str] = []

    def no_zip(*a: Any, **k: Any) -> Any:
        calls.append("zip")
        raise AssertionError("zipped before the token was checked")

    def no_test(*a: Any, **k: Any) -> Any:
        calls.append("test")
        raise AssertionError("tested before the token was checked")

    monkeypatch.setattr(contribute_package, "reproducible_zip", no_zip)
    monkeypatch.setattr(contribute_mod, "test_archive", no_test)
    with pytest.raises(ContributeError, match="no Zenodo token"):
        contribute(pkg, model_id="zen-model", version="1.0.0", metadata=pkg / "metadata.json",
                   index=tmp_path / "index", store="zenodo", zenodo_host="http://127.0.0.1:9")
    with pytest.raises(ContributeError, match="is not an http"):
        contribute(pkg, model_id="zen-model", version="1.0.0", metadata=pkg / "metadata.json",
                   index=tmp_path / "index", store="zenodo", zenodo_host="zenodo.org", zenodo_token_value="t")
    with pytest.raises(ContributeError, match="Zenodo token file not found"):
        contribute(pkg, model_id="zen-model", version="1.0.0", metadata=pkg / "metadata.json",
                   index=tmp_path / "index", store="zenodo", zenodo_token_file=tmp_path / "nope")
    # a DVC "repository" that is not one, and invalid metadata: refused before zipping too
    (tmp_path / "plain").mkdir()
    init_repo(tmp_path / "plain-git")
    with pytest.raises(ContributeError, match="not a git repository"):
        contribute(pkg, model_id="zen-model", version="1.0.0", metadata=pkg / "metadata.json",
                   index=tmp_path / "index", store="dvc", dvc_repo=tmp_path / "plain")
    with pytest.raises(ContributeError, match="not a DVC repository"):
        contribute(pkg, model_id="zen-model", version="1.0.0", metadata=pkg / "metadata.json",
                   index=tmp_path / "index", store="dvc", dvc_repo=tmp_path / "plain-git")
    meta = json.loads((pkg / "metadata.json").read_text())
    meta["task"] = "dreaming"
    with pytest.raises(ContributeError, match=r"\$\.task"):
        contribute(pkg, model_id="zen-model", version="1.0.0", metadata=meta, index=tmp_path / "index")
    with pytest.raises(ContributeError, match="version"):
        contribute(pkg, model_id="zen-model", version="one", metadata=pkg / "metadata.json", index=tmp_path / "index")
    assert calls == []
    assert not list(Path(tmp_path).glob("**/*.zip"))


def test_existing_version_is_refused_before_zipping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "twice-model"
    write_template(pkg)
    root = tmp_path / "index"
    repo = init_repo(root)
    (root / "models" / "twice-model").mkdir(parents=True)
    record = contribute_mod.build_record(json.loads((pkg / "metadata.json").read_text()), "twice-model", "1.0.0",
                                         sha256="1" * 64, size=10, sources=["https://example.org/x.zip"])
    (root / "models" / "twice-model" / "1.0.0.json").write_text(json.dumps(record))
    repo.git.add("-A")
    repo.git.commit("-q", "-m", "twice-model 1.0.0")

    def no_zip(*a: Any, **k: Any) -> Any:
        raise AssertionError("zipped an existing version")

    monkeypatch.setattr(contribute_package, "reproducible_zip", no_zip)
    with pytest.raises(ContributeError, match="already exists in the index"):
        contribute(pkg, model_id="twice-model", version="1.0.0", metadata=pkg / "metadata.json", index=root)
