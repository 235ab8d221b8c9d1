"""`index pin` (registry/authoring/pin.py) and prepare (registry/packages.py)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from helpers.packages import catalog_entry, zip_bytes
from helpers.records import write_record
from helpers.repos import commit
from helpers.servers import FaultServer
from helpers.sites import fast_settings, with_file_roots
from synthmed.registry.errors import ArtefactNotFound, ConfigError, Unverified
from synthmed.registry.packages import prepare
from synthmed.registry.authoring.pin import pin_record
from synthmed.registry.records import load_record
from synthmed.registry.artefacts.sources.base import SourceContext
from synthmed.registry.artefacts.store import Store


PKG = zip_bytes({"toy/__init__.py": b"def build(d, dev):\n    return None\n", "toy/w.bin": os.urandom(2000)})
PKG_SHA = hashlib.sha256(PKG).hexdigest()


@pytest.fixture
def unpinned(make_record):
    return make_record(**{"package.artefact.sha256": ..., "package.artefact.size": ...,
                          "package.artefact.sources": ["index:artefacts/toy-gan/1.0.0.zip"]})


def test_pin_from_the_working_tree(tmp_path: Path, unpinned) -> None:
    idx = tmp_path / "index"
    path = write_record(idx, unpinned)
    art = idx / "artefacts" / "toy-gan" / "1.0.0.zip"
    art.parent.mkdir(parents=True)
    art.write_bytes(PKG)
    settings = fast_settings(tmp_path / "site")
    out = pin_record(idx, "toy-gan@1.0.0", settings)
    assert {k: out[k] for k in ("id", "version", "sha256", "size", "source")} == {
        "id": "toy-gan", "version": "1.0.0", "sha256": PKG_SHA, "size": len(PKG),
        "source": "index:artefacts/toy-gan/1.0.0.zip"}
    text = path.read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "format"')
    data = json.loads(text)
    assert data["package"]["artefact"] == {"sha256": PKG_SHA, "size": len(PKG), "media_type": "application/zip",
                                           "sources": ["index:artefacts/toy-gan/1.0.0.zip"]}
    expected = dict(unpinned)
    expected["package"] = dict(unpinned["package"], artefact=data["package"]["artefact"])
    assert data == expected and list(data) == list(unpinned)
    assert load_record(path).verified
    # the blob is in the site's store
    assert Store(settings.store_dir).has(PKG_SHA)
    # pinning again re-verifies and changes nothing
    assert pin_record(idx, "toy-gan@1.0.0", settings)["changed"] is False
    assert path.read_text() == text


def test_pin_over_http_and_bad_refs(tmp_path: Path, make_record) -> None:
    settings = fast_settings(tmp_path / "site")
    idx = tmp_path / "index"
    with FaultServer() as srv:
        srv.add("/toy.zip", PKG)
        rec = make_record(**{"package.artefact.sha256": ..., "package.artefact.size": ...,
                             "package.artefact.sources": [srv.url("/gone.zip"), srv.url("/toy.zip")]})
        write_record(idx, rec)
        out = pin_record(idx, "toy-gan@1.0.0", settings)
        assert out["sha256"] == PKG_SHA and out["source"] == srv.url("/toy.zip")
    with pytest.raises(ConfigError):
        pin_record(idx, "toy-gan", settings)


def test_pin_with_no_working_source(tmp_path: Path, unpinned) -> None:
    idx = tmp_path / "index"
    path = write_record(idx, unpinned)
    before = path.read_text()
    with pytest.raises(ArtefactNotFound, match="index:artefacts/toy-gan/1.0.0.zip: no such file"):
        pin_record(idx, "toy-gan@1.0.0", fast_settings(tmp_path / "site"))
    assert path.read_text() == before


def test_pin_refuses_a_changed_artefact_unless_forced(tmp_path: Path, unpinned) -> None:
    idx = tmp_path / "index"
    write_record(idx, unpinned)
    art = idx / "artefacts" / "toy-gan" / "1.0.0.zip"
    art.parent.mkdir(parents=True)
    art.write_bytes(PKG)
    settings = fast_settings(tmp_path / "site")
    pin_record(idx, "toy-gan@1.0.0", settings)
    art.write_bytes(PKG + b"x")
    with pytest.raises(ArtefactNotFound):
        pin_record(idx, "toy-gan@1.0.0", fast_settings(tmp_path / "other-site"))
    out = pin_record(idx, "toy-gan@1.0.0", settings, force=True)
    assert out["changed"] and out["size"] == len(PKG) + 1


def test_prepare_refuses_unverified(tmp_path: Path, unpinned) -> None:
    idx = tmp_path / "index"
    rec = load_record(write_record(idx, unpinned))
    settings = fast_settings(tmp_path / "site")
    with pytest.raises(Unverified) as ei:
        prepare(catalog_entry(rec), settings).folder
    assert "synthmed index pin toy-gan@1.0.0" in str(ei.value)


def test_prepare_from_a_committed_index(index_repo, tmp_path: Path, make_record) -> None:
    root = Path(index_repo.working_tree_dir)
    rec_data = make_record(**{"package.artefact.sha256": PKG_SHA, "package.artefact.size": len(PKG),
                              "package.artefact.sources": ["index:artefacts/toy-gan/1.0.0.zip"]})
    path = write_record(root, rec_data)
    (root / "artefacts" / "toy-gan").mkdir(parents=True)
    (root / "artefacts" / "toy-gan" / "1.0.0.zip").write_bytes(PKG)
    sha = commit(index_repo, "toy")
    settings = fast_settings(tmp_path / "site")
    pkg = prepare(catalog_entry(load_record(path), index_repo=root, index_commit=sha), settings).folder
    assert pkg == settings.packages_dir / PKG_SHA
    assert (pkg / "toy" / "__init__.py").exists()
    assert prepare(catalog_entry(load_record(path), index_repo=root, index_commit=sha), settings).folder == pkg


def test_prepare_refetches_a_corrupt_blob(tmp_path: Path, make_record) -> None:
    src = tmp_path / "toy.zip"
    src.write_bytes(PKG)
    rec_data = make_record(**{"package.artefact.sha256": PKG_SHA, "package.artefact.size": len(PKG),
                              "package.artefact.sources": [src.as_uri()]})
    rec = load_record(write_record(tmp_path / "idx", rec_data))
    settings = with_file_roots(fast_settings(tmp_path / "site"), tmp_path)
    store = Store(settings.store_dir)
    store.fetch(PKG_SHA, len(PKG), [src.as_uri()], SourceContext(settings=settings))
    blob = store.blob_path(PKG_SHA)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"\0" * len(PKG))
    pkg = prepare(catalog_entry(rec), settings).folder
    assert (pkg / "toy" / "w.bin").exists()
    assert store.quarantined()[0]["reason"].startswith("blob corrupt")


def test_prepare_single_weights_file(tmp_path: Path, make_record) -> None:
    weights = os.urandom(5000)
    sha = hashlib.sha256(weights).hexdigest()
    with FaultServer() as srv:
        srv.add("/files/generator.safetensors", weights)
        rec_data = make_record(**{"package.artefact.sha256": sha, "package.artefact.size": len(weights),
                                  "package.artefact.media_type": "application/octet-stream",
                                  "package.artefact.sources": [srv.url("/files/generator.safetensors")]})
        rec = load_record(write_record(tmp_path / "idx", rec_data))
        settings = fast_settings(tmp_path / "site")
        pkg = prepare(catalog_entry(rec), settings).folder
    assert os.listdir(pkg) == ["generator.safetensors"]
    assert (pkg / "generator.safetensors").read_bytes() == weights


def test_pin_refuses_plain_http_to_another_host(tmp_path: Path, make_record) -> None:
    rec = make_record(**{"package.artefact.sha256": ..., "package.artefact.size": ...,
                         "package.artefact.sources": ["http://models.example.invalid/toy.zip"]})
    path = write_record(tmp_path / "idx", rec)
    before = path.read_text()
    with pytest.raises(ArtefactNotFound, match="plain http"):
        pin_record(tmp_path / "idx", "toy-gan@1.0.0", fast_settings(tmp_path / "site"))
    assert path.read_text() == before


def test_a_changed_unpacked_package_is_never_run_and_is_unpacked_again(tmp_path: Path, make_record, capsys) -> None:
    from synthmed.cli import main
    from synthmed.registry.artefacts.packages_folder import PackagesFolder

    src = tmp_path / "toy.zip"
    src.write_bytes(PKG)
    rec_data = make_record(**{"package.artefact.sha256": PKG_SHA, "package.artefact.size": len(PKG),
                              "package.artefact.sources": [src.as_uri()]})
    rec = load_record(write_record(tmp_path / "idx", rec_data))
    settings = with_file_roots(fast_settings(tmp_path / "site"), tmp_path)
    pkg = prepare(catalog_entry(rec), settings).folder
    assert PackagesFolder(settings.packages_dir).manifest_path(PKG_SHA).exists()
    assert PackagesFolder(settings.packages_dir).check(PKG_SHA) is None
    weights = pkg / "toy" / "w.bin"
    original = weights.read_bytes()
    os.chmod(weights.parent, 0o755)
    os.chmod(weights, 0o644)
    weights.write_bytes(b"\1" * len(original))  # same size, other bytes
    assert "changed: toy/w.bin" in (PackagesFolder(settings.packages_dir).check(PKG_SHA) or "")
    again = prepare(catalog_entry(rec), settings).folder
    assert again == pkg and weights.read_bytes() == original
    # `synthmed verify` finds a changed package too, removes it, and exits 1
    os.chmod(pkg, 0o755)
    (pkg / "extra.py").write_text("print('injected')\n")
    assert main(["--site", str(settings.home), "verify", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["changed_packages"][0]["sha256"] == PKG_SHA and "added: extra.py" in out["changed_packages"][0]["reason"]
    assert not pkg.exists()
    assert (prepare(catalog_entry(rec), settings).folder / "toy" / "w.bin").read_bytes() == original
