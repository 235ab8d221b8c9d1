"""`synthmed dataset create` and `synthmed dataset publish` (#24 items 1-2): a dataset made by
ihc-patch-dcgan on a site synced from a scratch copy of this repository's index, audited
on its own files, packed reproducibly and committed on a branch that `index check`
passes; every bad input refused with a clear message and the index repository left as
it was. The site and the dataset are made once per module (a few seconds on CPU)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import git
import pytest

from helpers import REPO_ROOT
from helpers.repos import init_repo
from helpers.zenodo import ZenodoEmulator
from synthmed.cli import main
from synthmed.registry.artefacts import dataset_archive as da

pytestmark = pytest.mark.slow  # a site synced from this repo's index, and a model run

N = "10"
LICENCE_NOTE = "scikit-image documents ihc.png as having no known copyright restrictions"
META = {"title": "IHC patches, seeds 7-16", "summary": "Ten 64x64 IHC patches made by ihc-patch-dcgan",
        "card": {"intended_use": "testing synthmed's dataset tools", "limitations": "a demonstration model's output"},
        "authors": [{"name": "Test Publisher"}], "tags": ["test"]}
COPY = ("models/ihc-patch-dcgan", "artefacts/ihc-patch-dcgan", "extractors/randconv-224", "artefacts/extractors",
        "models/retina-vessel-pix2pix", "artefacts/retina-vessel-pix2pix",
        "models/ihc-patch-dcgan-medigan", "artefacts/ihc-patch-dcgan-medigan")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A scratch index (this repository's ihc-patch-dcgan and randconv-224, models/ at its
    root), a site synced from it, a dataset folder made by `dataset create`, a folder of
    other samples of the model (an independent training set) and the metadata file."""
    tmp = tmp_path_factory.mktemp("dataset-publish")
    index = tmp / "index-template"
    repo = init_repo(index)
    for rel in COPY:
        shutil.copytree(REPO_ROOT / "index" / rel, index / rel)
    repo.git.add("-A")
    repo.git.commit("-q", "-m", "ihc-patch-dcgan and randconv-224 from synthmed's index")
    home = tmp / "site"
    assert main(["init", str(home), "--upstream", f"public={index}"]) == 0
    assert main(["--site", str(home), "sync"]) == 0
    ds = tmp / "ds"
    assert main(["--site", str(home), "dataset", "create", "ihc-patch-dcgan", "-n", N, "--seed", "7", "-o", str(ds),
                 "--no-progress"]) == 0
    other = tmp / "other"
    assert main(["--site", str(home), "generate", "ihc-patch-dcgan", "-n", "16", "--seed", "1000", "-o", str(other),
                 "--no-progress"]) == 0
    meta = tmp / "meta.json"
    meta.write_text(json.dumps(META))
    return {"index": index, "site": home, "ds": ds, "training": other / "image", "meta": meta}


@pytest.fixture
def index(world: dict[str, Path], tmp_path: Path) -> git.Repo:
    """A private copy of the scratch index for one test."""
    dest = tmp_path / "index"
    shutil.copytree(world["index"], dest)
    return git.Repo(dest)


def _state(repo: git.Repo) -> tuple[Any, ...]:
    """What a refused publication must leave as it was: branches, HEAD, the work tree."""
    return (sorted((h.name, h.commit.hexsha) for h in repo.heads), repo.head.commit.hexsha, repo.active_branch.name,
            repo.git.status("--porcelain", "--untracked-files=all"), repo.git.worktree("list", "--porcelain"))


def _publish(world: dict[str, Path], repo: git.Repo, capsys: pytest.CaptureFixture[str], *extra: str,
             folder: Path | None = None, ident: str = "ihc-s7", licence: bool = True) -> tuple[int, str, str]:
    capsys.readouterr()
    args = ["--site", str(world["site"]), "dataset", "publish", str(folder or world["ds"]), "--id", ident,
            "--version", "1.0.0", "--index", str(repo.working_tree_dir), "--metadata", str(world["meta"]), *extra]
    if licence:
        args += ["--override-licence", LICENCE_NOTE]
    rc = main(args)
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return rc, out.out, out.err


def test_create_then_publish_into_the_index(world: dict[str, Path], index: git.Repo,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ds = world["ds"]
    assert sorted(p.name for p in (ds / "image").iterdir()) == [f"{i:06d}.png" for i in range(int(N))]
    assert not (ds / "inputs").exists()  # the model takes no array inputs
    before = _state(index)
    rc, out, err = _publish(world, index, capsys, "--training", str(world["training"]))
    assert rc == 0, err
    assert "audit: pass" in out and "branch dataset/ihc-s7-1.0.0" in out and "push" in out
    assert _state(index)[1:] == before[1:]  # the publisher's checkout is untouched
    branch = "dataset/ihc-s7-1.0.0"
    record = json.loads(index.git.show(f"{branch}:datasets/ihc-s7/1.0.0.json"))
    tar = index.git.execute(["git", "show", f"{branch}:artefacts/datasets/ihc-s7/1.0.0.tar"],
                            stdout_as_string=False, strip_newline_in_stdout=False)
    model = json.loads((world["index"] / "models/ihc-patch-dcgan/1.0.0.json").read_text())
    assert record["model"] == {"id": "ihc-patch-dcgan", "version": "1.0.0", "package_format": "synthmed-1",
                               "sha256": model["package"]["artefact"]["sha256"]}
    gen = record["generation"]
    assert (gen["first_seed"], gen["count"], gen["outputs"], gen["file_format"], gen["layout"]) == \
        (7, int(N), ["image"], "png", "synthmed")
    assert gen["manifest_sha256"] == hashlib.sha256((ds / da.MANIFEST).read_bytes()).hexdigest()
    art = record["artefact"]
    assert art["sources"] == ["index:artefacts/datasets/ihc-s7/1.0.0.tar"]
    assert (art["sha256"], art["size"]) == (hashlib.sha256(tar).hexdigest(), len(tar))
    assert da.pack(ds, world["site"].parent / "again.tar") == (art["sha256"], art["size"])  # same files, same bytes
    audit = record["audit"]
    assert audit["verdict"] == "pass" and audit["n_samples"] == int(N) and audit["training"]["size"] == 16
    assert str(world["training"]) not in json.dumps(record)  # the training set's path stays on the site
    assert record["license"] == "MIT" and record["license_override"] == LICENCE_NOTE
    assert record["modality"] == model["modality"] and "test" in record["tags"]
    index.git.checkout("-q", branch)
    try:
        assert main(["index", "check", "--base", "main", "--repo", str(index.working_tree_dir)]) == 0
        assert "+ new dataset ihc-s7@1.0.0" in capsys.readouterr().out
    finally:
        index.git.checkout("-q", "main")


def test_bad_inputs_are_refused_and_leave_the_index_as_it_was(world: dict[str, Path], index: git.Repo,
                                                              tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    before = _state(index)

    def refused(words: str, *extra: str, **kw: Any) -> None:
        rc, out, err = _publish(world, index, capsys, *extra, **kw)
        assert rc == 1 and words in err, (words, out, err)
        assert "hint:" in err
        assert _state(index) == before

    # the audit fails: the training set is the dataset's own items
    refused("memorisation audit of the dataset FAILED", "--training", str(world["ds"] / "image"))
    # no audit and no override
    refused("no memorisation audit")
    # the licence chain holds NOASSERTION and the publisher did not acknowledge it
    refused("--override-licence", "--override-audit", "no training set on this site", licence=False)
    # a file changed after the run, an extra file in the folder
    changed = tmp_path / "changed"
    shutil.copytree(world["ds"], changed)
    (changed / "image" / "000003.png").write_bytes(b"\x89PNG not the run's file")
    refused("changed: image/000003.png", "--override-audit", "test", folder=changed)
    extra = tmp_path / "extra"
    shutil.copytree(world["ds"], extra)
    (extra / "image" / "000099.png").write_bytes((extra / "image" / "000000.png").read_bytes())
    refused("not in the manifest: image/000099.png", "--override-audit", "test", folder=extra)
    # the model version is not in the target index
    other = tmp_path / "other-version"
    shutil.copytree(world["ds"], other)
    manifest = json.loads((other / da.MANIFEST).read_text())
    manifest["run"]["model"] = "ihc-patch-dcgan@1.0.1"
    (other / da.MANIFEST).write_text(json.dumps(manifest))
    refused("model ihc-patch-dcgan@1.0.1 is not in this index", "--override-audit", "test", folder=other)
    # a licence conflict: the index says the training data is NonCommercial, the dataset is MIT
    model_path = Path(str(index.working_tree_dir)) / "models/ihc-patch-dcgan/1.0.0.json"
    model = json.loads(model_path.read_text())
    model["training"]["datasets"][0]["license"] = "CC-BY-NC-4.0"
    model_path.write_text(json.dumps(model, indent=2))
    index.git.commit("-qam", "the training data is NonCommercial")
    before = _state(index)
    refused("NonCommercial", "--override-audit", "test")


def test_the_same_version_is_published_once(world: dict[str, Path], index: git.Repo,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _publish(world, index, capsys, "--override-audit", "audited on the hospital's own site")
    assert rc == 0, err
    before = _state(index)
    rc, _, err = _publish(world, index, capsys, "--override-audit", "again")
    assert rc == 1 and "branch dataset/ihc-s7-1.0.0 already exists" in err and _state(index) == before
    index.git.merge("-q", "--ff-only", "dataset/ihc-s7-1.0.0")
    index.git.branch("-D", "dataset/ihc-s7-1.0.0")
    before = _state(index)
    rc, _, err = _publish(world, index, capsys, "--override-audit", "again")
    assert rc == 1 and "dataset ihc-s7@1.0.0 already exists in the index" in err and _state(index) == before
    record = json.loads((Path(str(index.working_tree_dir)) / "datasets/ihc-s7/1.0.0.json").read_text())
    assert record["audit"] == {"verdict": "not-run", "override": "audited on the hospital's own site"}


def test_publish_to_zenodo(world: dict[str, Path], index: git.Repo, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    token = "zenodo-dataset-token-42"
    monkeypatch.setenv("SYNTHMED_ZENODO_TOKEN", token)
    with ZenodoEmulator(tokens={token}) as zen:
        rc, out, err = _publish(world, index, capsys, "--override-audit", "test", "--store", "zenodo",
                                "--zenodo-host", zen.base)
        assert rc == 0, err
        assert token not in out + err
        (rid,) = zen.records
        published = zen.records[rid].files["ihc-s7-1.0.0.tar"]
        assert zen.records[rid].metadata["upload_type"] == "dataset"
    record = json.loads(index.git.show("dataset/ihc-s7-1.0.0:datasets/ihc-s7/1.0.0.json"))
    assert record["artefact"]["sources"] == [f"zenodo:{rid}/ihc-s7-1.0.0.tar"]
    assert record["artefact"]["sha256"] == hashlib.sha256(published).hexdigest()
    blob = world["site"].parent / "zenodo.tar"  # the tar Zenodo holds is the dataset, held to its manifest
    blob.write_bytes(published)
    manifest = da.unpack(blob, world["site"].parent / "from-zenodo")
    assert sorted(manifest["files"]) == [f"image/{i:06d}.png" for i in range(int(N))]
    index.git.checkout("-q", "dataset/ihc-s7-1.0.0")
    try:
        assert main(["index", "check", "--base", "main", "--repo", str(index.working_tree_dir)]) == 0
    finally:
        index.git.checkout("-q", "main")


def test_a_dataset_of_a_model_with_array_inputs_carries_them(world: dict[str, Path], index: git.Repo, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A mask-to-image model: `dataset create` copies the masks the model took into
    inputs/mask/ (one .npy per item), the record pins them, and inputs that are not the
    run's are refused."""
    import numpy as np
    from PIL import Image

    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(4):
        m = np.zeros((64, 64), np.uint8)
        m[:, 8 + 12 * i: 11 + 12 * i] = 255
        m[20 + 5 * i, :] = 255
        Image.fromarray(m).save(masks / f"vessel-{i}.png")
    ds = tmp_path / "pairs"
    assert main(["--site", str(world["site"]), "dataset", "create", "retina-vessel-pix2pix", "--input",
                 f"mask={masks}", "--seed", "3", "-o", str(ds), "--no-progress"]) == 0
    saved = sorted((ds / "inputs" / "mask").iterdir())
    assert [p.name for p in saved] == [f"{i:06d}.npy" for i in range(4)]
    assert np.array_equal(np.load(saved[1]), (np.asarray(Image.open(masks / "vessel-1.png")) > 0).astype(np.uint8))
    rc, _, err = _publish(world, index, capsys, "--override-audit", "no training set here", folder=ds,
                          ident="fundus-pairs", licence=False)
    assert rc == 0, err
    record = json.loads(index.git.show("dataset/fundus-pairs-1.0.0:datasets/fundus-pairs/1.0.0.json"))
    assert record["generation"]["inputs"] == [{"name": "mask", "files_sha256": da.inputs_digest(ds, "mask")[0],
                                               "count": 4}]
    assert "__inputs__" not in record["generation"]["params"]
    np.save(saved[2], np.zeros((64, 64), np.uint8))  # not the mask the run took
    before = _state(index)
    rc, _, err = _publish(world, index, capsys, "--override-audit", "x" * 5, folder=ds, ident="fundus-other",
                          licence=False)
    assert rc == 1 and "not the array inputs the run took" in err and _state(index) == before


def test_publish_to_a_dvc_remote(world: dict[str, Path], index: git.Repo, dvc_repo: tuple[Path, Path, str],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    repo_dir, remote, _ = dvc_repo
    before = {p for p in remote.rglob("*") if p.is_file()}
    rc, out, err = _publish(world, index, capsys, "--override-audit", "test", "--store", "dvc",
                            "--dvc-repo", str(repo_dir))
    assert rc == 0, err
    dvc = git.Repo(repo_dir)
    rev = dvc.head.commit.hexsha
    record = json.loads(index.git.show("dataset/ihc-s7-1.0.0:datasets/ihc-s7/1.0.0.json"))
    assert record["artefact"]["sources"] == [f"dvc:{repo_dir}#datasets/ihc-s7/1.0.0.tar@{rev}"]
    assert (repo_dir / "datasets" / "ihc-s7" / "1.0.0.tar.dvc").is_file()
    pushed = {p for p in remote.rglob("*") if p.is_file()} - before
    assert any(hashlib.sha256(p.read_bytes()).hexdigest() == record["artefact"]["sha256"] for p in pushed)
    assert f"git -C {repo_dir.resolve()} push" in out


def test_published_then_merged_a_fresh_site_lists_gets_and_verifies_it(world: dict[str, Path], index: git.Repo,
                                                                      tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The whole path of issue #24: create, publish into the index, merge the pull request,
    then a fresh site synced from the index lists the dataset, `dataset get` gives the same
    files (manifest verified) and `dataset verify --samples all` re-derives every item."""
    rc, _, err = _publish(world, index, capsys, "--training", str(world["training"]))
    assert rc == 0, err
    index.git.merge("-q", "--no-ff", "-m", "merge the dataset pull request", "dataset/ihc-s7-1.0.0")
    home = tmp_path / "fresh-site"
    assert main(["init", str(home), "--upstream", f"public={index.working_tree_dir}"]) == 0
    assert main(["--site", str(home), "sync"]) == 0
    capsys.readouterr()
    assert main(["--site", str(home), "dataset", "list"]) == 0
    listed = capsys.readouterr().out
    assert "public/ihc-s7@1.0.0" in listed and "ihc-patch-dcgan@1.0.0" in listed and "yes" in listed
    got = tmp_path / "got"
    assert main(["--site", str(home), "dataset", "get", "ihc-s7", "-o", str(got)]) == 0
    files = sorted(p.relative_to(world["ds"]).as_posix() for p in (world["ds"] / "image").iterdir())
    assert sorted(p.relative_to(got).as_posix() for p in (got / "image").iterdir()) == files
    assert all((got / f).read_bytes() == (world["ds"] / f).read_bytes() for f in files)
    assert (got / da.MANIFEST).read_bytes() == (world["ds"] / da.MANIFEST).read_bytes()
    capsys.readouterr()
    assert main(["--site", str(home), "dataset", "verify", "ihc-s7", "--samples", "all"]) == 0
    out = capsys.readouterr().out
    assert out.count(": identical") == int(N) and "ok: every checked item" in out


def test_a_medigan_1_dataset_is_verified_with_the_chunk_it_was_made_with(world: dict[str, Path], index: git.Repo,
                                                                        tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A medigan-1 model serves seeds in chunks (which latent a seed gets depends on the
    chunk): the record carries the run's chunk, and verify re-derives each item with it
    (one item at a time with a chunk of 1 would make other pictures from the same seeds)."""
    ds = tmp_path / "twin"
    assert main(["--site", str(world["site"]), "dataset", "create", "ihc-patch-dcgan-medigan", "-n", N, "--seed", "7",
                 "-o", str(ds), "--no-progress"]) == 0
    assert json.loads((ds / "synthmed.json").read_text())["runner"]["medigan_seed_chunk"] == int(N)
    rc, _, err = _publish(world, index, capsys, "--training", str(world["training"]), folder=ds, ident="twin-s7")
    assert rc == 0, err
    index.git.merge("-q", "--no-ff", "-m", "merge the dataset pull request", "dataset/twin-s7-1.0.0")
    record = json.loads((Path(str(index.working_tree_dir)) / "datasets" / "twin-s7" / "1.0.0.json").read_text())
    assert record["generation"]["medigan_seed_chunk"] == int(N)
    home = tmp_path / "fresh-site"
    assert main(["init", str(home), "--upstream", f"public={index.working_tree_dir}"]) == 0
    assert main(["--site", str(home), "sync"]) == 0
    capsys.readouterr()
    assert main(["--site", str(home), "dataset", "verify", "twin-s7", "--samples", "all"]) == 0
    out = capsys.readouterr().out
    assert out.count(": identical") == int(N) and "ok: every checked item" in out
