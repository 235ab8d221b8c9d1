"""``synthmed cache ls`` / ``cache prune``: blobs with their packages, by age, size cap or unused."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from synthmed.cli import main
from synthmed.registry.catalog import Catalog
from synthmed.registry.settings import load_settings
from synthmed.registry.artefacts.store import Store

from helpers import REPO_ROOT
from helpers.serving import this_index


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    home = tmp_path / "site"
    assert main(["init", str(home), "--upstream", f"public={REPO_ROOT}"]) == 0
    assert main(["--site", str(home), "sync"]) == 0
    return home


def _ls(site: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict]:  # type: ignore[type-arg]
    capsys.readouterr()
    assert main(["--site", str(site), "cache", "ls", "--json"]) == 0
    return {c["sha256"]: c for c in json.loads(capsys.readouterr().out)}


@pytest.mark.slow  # mirrors this repository's starters, prunes, mirrors them again
def test_ls_and_prune_unused_old_and_by_size(site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(site)
    store = Store(settings.store_dir)
    extra = tmp_path / "extra.bin"
    extra.write_bytes(os.urandom(1000))
    unused = store.add_file(extra).sha256
    entries = _ls(site, capsys)
    n_blobs = this_index()[2]
    assert len(entries) == n_blobs + 1 and entries[unused]["needed_by"] == []
    phantom = next(s for s, c in entries.items() if c["needed_by"] == ["public/phantom-lesion@1.0.0"])
    assert entries[phantom]["package_bytes"] > 0
    # a mirrored dataset's blob is needed by its record, so --unused leaves it
    assert any(n.startswith("dataset public/retina-vessel-pairs@") for c in entries.values() for n in c["needed_by"])
    # unused only
    assert main(["--site", str(site), "cache", "prune", "--unused", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["sha256"] for c in out["removed"]] == [unused] and not store.has(unused)
    # by age: make phantom's blob 40 days old
    old = time.time() - 40 * 86400
    os.utime(store.blob_path(phantom), (old, old), follow_symlinks=False)
    assert main(["--site", str(site), "cache", "prune", "--older-than", "30", "--dry-run", "--json"]) == 0
    assert [c["sha256"] for c in json.loads(capsys.readouterr().out)["removed"]] == [phantom] and store.has(phantom)
    assert main(["--site", str(site), "cache", "prune", "--older-than", "30"]) == 0
    assert "fetched again when used" in capsys.readouterr().out
    assert not store.has(phantom) and not (settings.packages_dir / phantom).exists()
    with Catalog.open(settings.catalog_path) as cat:
        assert {a["sha256"]: a["state"] for a in cat.artefacts.rows()}[phantom] == "missing"
    assert main(["--site", str(site), "search", "--runnable", "--json"]) == 0
    assert "phantom-lesion" not in {e["id"] for e in json.loads(capsys.readouterr().out)}
    # a size cap: the oldest go first until the rest fits
    entries = _ls(site, capsys)
    newest = max(entries.values(), key=lambda c: (c["fetched_at"], c["sha256"]))
    cap = newest["size"] + newest["package_bytes"]
    assert main(["--site", str(site), "cache", "prune", "--max-size", str(cap), "--json"]) == 0
    capsys.readouterr()
    left = _ls(site, capsys)
    assert sum(c["size"] + c["package_bytes"] for c in left.values()) <= cap and len(left) >= 1
    # the next sync mirrors the needed ones again
    assert main(["--site", str(site), "sync"]) == 0
    assert len(_ls(site, capsys)) == n_blobs


def test_prune_refuses_unclear_requests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from helpers.sites import write_site

    site = write_site(tmp_path / "site", []).home
    assert main(["--site", str(site), "sync", "--no-mirror"]) == 0  # an empty catalog
    store = Store(load_settings(site).store_dir)
    extra = tmp_path / "extra.bin"
    extra.write_bytes(b"x" * 100)
    store.add_file(extra)
    capsys.readouterr()
    assert main(["--site", str(site), "cache", "prune"]) == 1
    assert "give --unused, --older-than DAYS or --max-size SIZE" in capsys.readouterr().err
    assert main(["--site", str(site), "cache", "prune", "--max-size", "lots"]) == 1
    assert "--max-size 'lots': not a size" in capsys.readouterr().err
    assert main(["--site", str(site), "cache", "prune", "--older-than", "-1"]) == 1
    assert "must be 0 or more" in capsys.readouterr().err
    assert len(_ls(site, capsys)) == 1  # nothing removed


def test_parse_size() -> None:
    from synthmed.daemon.cache import parse_size

    assert parse_size("1048576") == 1 << 20 and parse_size("500M") == 500 << 20 and parse_size("2.5GiB") == int(2.5 * (1 << 30))
    assert parse_size("10g") == 10 << 30 and parse_size("1 KB") == 1024


def test_a_single_file_package_is_no_second_copy(tmp_path: Path) -> None:
    """packages/<sha256>/<file> of a single-file package is a hard link to its read-only blob."""
    import hashlib

    from synthmed.registry.artefacts.packages_folder import PackagesFolder

    blob = tmp_path / "blob"
    blob.write_bytes(b"weights" * 1000)
    os.chmod(blob, 0o444)
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    out = PackagesFolder(tmp_path / "packages").unpack_package(blob, sha, "application/octet-stream", filename="model.pt")
    assert os.path.samefile(out / "model.pt", blob)
