"""Federation: two upstreams sharing an id, priorities, qualified references, yanked versions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import git
import pytest

from synthmed.registry.errors import ModelNotFound, RecordYanked
from synthmed.registry.catalog.resolve import parse_model_ref

from helpers.records import unverified, with_artefact, write_record
from helpers.repos import commit, init_repo
from helpers.sites import catalog, sync, write_site


@pytest.fixture
def two_upstreams(tmp_path: Path, make_record: Any) -> tuple[Path, git.Repo, git.Repo]:
    a = init_repo(tmp_path / "hospital")
    b = init_repo(tmp_path / "public")
    write_record(Path(a.working_dir), unverified("shared-gan", "1.0.0", title="Hospital's shared GAN"))
    write_record(Path(b.working_dir), unverified("shared-gan", "1.0.0", title="Public shared GAN"))
    write_record(Path(b.working_dir), unverified("shared-gan", "2.0.0", title="Public shared GAN 2"))
    commit(a)
    commit(b)
    return tmp_path, a, b


def _site(tmp_path: Path, a: git.Repo, b: git.Repo, prio_a: int, prio_b: int) -> Any:
    return write_site(tmp_path / "site", [
        {"name": "public", "url": b.working_dir, "priority": prio_b},
        {"name": "hospital", "url": a.working_dir, "priority": prio_a},
    ])


def test_priority_and_qualified_refs(two_upstreams: Any, caplog: pytest.LogCaptureFixture) -> None:
    tmp_path, a, b = two_upstreams
    settings = _site(tmp_path, a, b, prio_a=10, prio_b=20)
    assert [r.status for r in sync(settings)] == ["ok", "ok"]
    cat = catalog(settings)
    with caplog.at_level(logging.INFO, logger="synthmed.registry.catalog.resolve"):
        e = cat.models.resolve("shared-gan")
    assert (e.upstream, e.version, e.record.data["title"]) == ("hospital", "1.0.0", "Hospital's shared GAN")
    assert e.shadows == ("public",)
    assert any("shadows" in r.getMessage() and "public" in r.getMessage() for r in caplog.records)
    # qualified references name one upstream (and one version)
    assert cat.models.resolve("public/shared-gan").version == "2.0.0"
    assert cat.models.resolve("public/shared-gan@1.0.0").record.data["title"] == "Public shared GAN"
    assert cat.models.resolve("hospital/shared-gan@1.0.0").upstream == "hospital"
    # a version only the lower-priority upstream has is served from there
    assert cat.models.resolve("shared-gan@2.0.0").upstream == "public"
    # the entry says where index: sources are read from
    assert e.index_repo == settings.upstreams_dir / "hospital"
    assert e.index_commit == a.head.commit.hexsha
    assert e.index_subfolder == ""
    assert git.Repo(e.index_repo).commit(e.index_commit).hexsha == e.index_commit
    with pytest.raises(ModelNotFound, match="no upstream named 'nope'"):
        cat.models.resolve("nope/shared-gan")
    with pytest.raises(ModelNotFound, match="no version 9.9.9"):
        cat.models.resolve("hospital/shared-gan@9.9.9")
    with pytest.raises(ModelNotFound, match="no model"):
        cat.models.resolve("missing-model")
    with pytest.raises(ModelNotFound, match="not a model reference"):
        cat.models.resolve("Bad Ref!")


def test_priority_order_flips(two_upstreams: Any) -> None:
    tmp_path, a, b = two_upstreams
    settings = _site(tmp_path, a, b, prio_a=50, prio_b=5)
    sync(settings)
    cat = catalog(settings)
    e = cat.models.resolve("shared-gan")
    assert (e.upstream, e.version) == ("public", "2.0.0")
    assert e.shadows == ("hospital",)
    # search lists each upstream's latest version
    assert sorted(x.qualified_ref for x in cat.models.search("shared")) == ["hospital/shared-gan@1.0.0",
                                                                      "public/shared-gan@2.0.0"]


def test_yanked_is_never_served(tmp_path: Path, make_record: Any) -> None:
    repo = init_repo(tmp_path / "idx")
    root = Path(repo.working_dir)
    write_record(root, unverified("toy-gan", "1.0.0"))
    write_record(root, unverified("toy-gan", "1.1.0", status="yanked", status_reason="wrong weights uploaded"))
    write_record(root, unverified("gone-gan", "1.0.0", status="yanked", status_reason="withdrawn by authors"))
    commit(repo)
    settings = write_site(tmp_path / "site", [{"name": "public", "url": repo.working_dir}])
    sync(settings)
    cat = catalog(settings)
    assert cat.models.resolve("toy-gan").version == "1.0.0"
    with pytest.raises(RecordYanked, match="wrong weights uploaded") as exc:
        cat.models.resolve("toy-gan@1.1.0")
    assert exc.value.reason == "wrong weights uploaded"  # type: ignore[attr-defined]
    with pytest.raises(RecordYanked, match="withdrawn by authors"):
        cat.models.resolve("gone-gan")
    assert [e.id for e in cat.models.search("gan")] == ["toy-gan"]


def test_index_sources_readable_at_the_accepted_commit(tmp_path: Path, make_record: Any) -> None:
    repo = init_repo(tmp_path / "idx")
    root = Path(repo.working_dir)
    write_record(root, with_artefact(root, "toy-gan", subfolder="index"), subfolder="index")
    first = commit(repo)
    settings = write_site(tmp_path / "site", [{"name": "public", "url": repo.working_dir, "subfolder": "index"}])
    sync(settings)
    (root / "index" / "artefacts" / "toy-gan" / "1.0.0.bin").write_bytes(b"changed later, not accepted")
    commit(repo)
    e = catalog(settings).models.resolve("toy-gan")
    assert e.index_commit == first and e.index_subfolder == "index"
    blob = git.Repo(e.index_repo).commit(e.index_commit).tree / "index/artefacts/toy-gan/1.0.0.bin"
    assert blob.data_stream.read().startswith(b"weights of toy-gan")


@pytest.mark.parametrize("ref,expected", [
    ("toy-gan", (None, "toy-gan", None)),
    ("toy-gan@1.0.0", (None, "toy-gan", "1.0.0")),
    ("public/toy-gan", ("public", "toy-gan", None)),
    ("public/toy-gan@2.0.0-rc.1", ("public", "toy-gan", "2.0.0-rc.1")),
    ("IHC-Patch-DCGAN", (None, "ihc-patch-dcgan", None)),
])
def test_parse_ref(ref: str, expected: tuple[Any, ...]) -> None:
    r = parse_model_ref(ref)
    assert (r.upstream, r.id, r.version) == expected


@pytest.mark.parametrize("ref", ["", "a", "x/y/z", "toy-gan@1", "toy-gan@@1.0.0", "/toy-gan"])
def test_parse_ref_rejects(ref: str) -> None:
    with pytest.raises(ModelNotFound):
        parse_model_ref(ref)
