"""Air-gapped export and import: the catalog and blobs are reproduced; tampering is refused."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import git
import pytest

from synthmed.daemon.bundle import export_bundle, import_bundle
from synthmed.daemon.service import run_daemon
from synthmed.registry.catalog import Catalog
from synthmed.registry.errors import BundleError
from synthmed.registry.settings import load_settings
from synthmed.registry.authoring.site_config import init_site
from synthmed.registry.artefacts.store import Store

from helpers.records import unverified, with_artefact, write_record
from helpers.repos import commit, init_repo
from helpers.sites import catalog, run_cli, write_site


def _build_exported(tmp: Path) -> tuple[Any, Path, git.Repo]:
    """An index with three verified models and a draft, a site synced and mirrored from
    it, and that site exported to ``tmp/bundle`` by the CLI."""
    repo = init_repo(tmp / "idx")
    root = Path(repo.working_dir)
    for name in ("lung-gan", "brain-gan", "knee-gan"):
        write_record(root, with_artefact(root, name, subfolder="index"), subfolder="index")
    write_record(root, unverified("draft-gan"), subfolder="index")
    commit(repo)
    settings = write_site(tmp / "online", [{"name": "public", "url": repo.working_dir, "subfolder": "index"}])
    run_daemon(settings, once=True, only=["sync", "mirror"])
    dest = tmp / "bundle"
    r = run_cli(["--site", str(settings.home), "export", str(dest)])
    assert r.returncode == 0, r.stderr
    return settings, dest, repo


@pytest.fixture(scope="module")
def exported_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, git.Repo]:
    """Built once for the module; tests get their own copy of the bundle (see ``exported``)."""
    return _build_exported(tmp_path_factory.mktemp("exported"))


@pytest.fixture
def exported(tmp_path: Path, exported_once: tuple[Any, Path, git.Repo]) -> tuple[Any, Path, git.Repo]:
    """(online settings, a private copy of the bundle, the index repo); the online site and
    the repo are shared by the module and must be left as they are."""
    settings, dest, repo = exported_once
    copy = tmp_path / "bundle"
    shutil.copytree(dest, copy)
    return settings, copy, repo


@pytest.fixture
def exported_fresh(tmp_path: Path) -> tuple[Any, Path, git.Repo]:
    """All of it built for this test alone (the test removes the upstream)."""
    return _build_exported(tmp_path)


def _offline(tmp_path: Path) -> Any:
    init_site(tmp_path / "offline", [])
    return load_settings(tmp_path / "offline", {}, environ={})


@pytest.mark.slow
def test_export_import_reproduces_catalog_and_blobs(tmp_path: Path, exported_fresh: Any) -> None:
    online, dest, repo = exported_fresh
    manifest = json.loads((dest / "manifest.json").read_text())
    assert len(manifest["blobs"]) == 3 and [u["name"] for u in manifest["upstreams"]] == ["public"]
    offline = _offline(tmp_path)
    shutil.rmtree(repo.working_dir)  # air-gapped: the upstream cannot be reached
    r = run_cli(["--site", str(offline.home), "import", str(dest)])
    assert r.returncode == 0, r.stderr
    offline = load_settings(offline.home, {}, environ={})
    assert [u.name for u in offline.upstreams] == ["public"]  # added to site.toml
    assert offline.upstreams[0].subfolder == "index"
    with catalog(online) as a, catalog(offline) as b:
        sa, sb = a.snapshot(), b.snapshot()
        assert sb["models"] == sa["models"] and sb["upstreams"] == sa["upstreams"]
        assert sb["artefacts"] == sa["artefacts"]
        assert b.models.resolve("public/lung-gan").index_subfolder == "index"
    assert sorted(Store(offline.store_dir).iter_blobs()) == sorted(Store(online.store_dir).iter_blobs())
    # the imported site can mirror (unpack) without any network: the blobs are in its store
    run_daemon(offline, once=True, only=["mirror"])
    with catalog(offline) as b:
        assert b.models.resolve("lung-gan").artefact_state == "verified"
        sha = b.models.resolve("lung-gan").record.sha256
    assert (offline.packages_dir / str(sha)).is_dir()
    # importing the same bundle again is a no-op
    r = run_cli(["--site", str(offline.home), "import", str(dest)])
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_tampered_blob_is_refused_and_nothing_imported(tmp_path: Path, exported: Any) -> None:
    _, dest, _ = exported
    victim = sorted((dest / "blobs").iterdir())[0]
    data = bytearray(victim.read_bytes())
    data[0] ^= 0xFF
    os.chmod(victim, 0o644)
    victim.write_bytes(bytes(data))
    offline = _offline(tmp_path)
    with Catalog.open(offline.catalog_path, readonly=False) as cat:
        with pytest.raises(BundleError, match="tampered") as exc:
            import_bundle(offline, cat, dest)
        assert victim.name in str(exc.value)
        assert cat.models.list_models(all_versions=True) == []
    assert list(Store(offline.store_dir).iter_blobs()) == []
    assert load_settings(offline.home, {}, environ={}).upstreams == ()
    r = run_cli(["--site", str(offline.home), "import", str(dest)])
    assert r.returncode == 1 and "tampered" in r.stderr


def test_tampered_index_bundle_and_missing_manifest(tmp_path: Path, exported: Any) -> None:
    _, dest, _ = exported
    offline = _offline(tmp_path)
    bundle = dest / "upstreams" / "public.bundle"
    bundle.write_bytes(bundle.read_bytes() + b"x")
    with Catalog.open(offline.catalog_path, readonly=False) as cat:
        with pytest.raises(BundleError, match="public.bundle"):
            import_bundle(offline, cat, dest)
        (dest / "manifest.json").unlink()
        with pytest.raises(BundleError, match="manifest.json is missing"):
            import_bundle(offline, cat, dest)


def test_extra_or_unneeded_blob_is_refused(tmp_path: Path, exported: Any) -> None:
    _, dest, _ = exported
    offline = _offline(tmp_path)
    (dest / "blobs" / ("f" * 64)).write_bytes(b"smuggled")
    with Catalog.open(offline.catalog_path, readonly=False) as cat:
        with pytest.raises(BundleError, match="does not list"):
            import_bundle(offline, cat, dest)


def test_export_needs_an_empty_folder(tmp_path: Path, exported: Any) -> None:
    online, dest, _ = exported
    with Catalog.open(online.catalog_path, readonly=False) as cat:
        with pytest.raises(BundleError, match="not empty"):
            export_bundle(online, cat, dest)
