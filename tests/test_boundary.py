"""The boundary of registry/packages.py: prepare() is the only path by which a package
is fetched or unpacked for running or testing, the runner takes nothing else, and the
allow_code policy holds for every caller."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest

from helpers.packages import build_package, catalog_entry
from helpers.sites import with_file_roots
from synthmed.registry.errors import Unverified
from synthmed.registry.packages import prepare
from synthmed.registry.runner import Runner
from synthmed.registry.settings import Settings, Upstream

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("registry", "sdk", "daemon")

#: calls that put bytes in the store or unpack them, and the only modules allowed to make them
#: (pin and bundle only copy blobs into the store to hash or carry them; they never run them)
ALLOWED = {
    "unpack_package": {"registry/packages.py"},
    "VerifiedPackage": {"registry/packages.py"},
    # an extractor's weights file (read as safetensors or with weights_only=True, never
    # unpacked, never run as code) is fetched through packages.fetch_data
    "fetch": {"registry/packages.py", "registry/authoring/pin.py", "daemon/sync.py", "daemon/upstreams.py"},
    "add_from_sources": {"registry/authoring/pin.py"},
    "add_file": {"daemon/bundle.py"},
}


def _calls(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                names.add(f.id)
            elif isinstance(f, ast.Attribute):
                names.add(f.attr)
    return names


def test_only_packages_py_fetches_unpacks_or_mints_verified_packages() -> None:
    found: dict[str, set[str]] = {name: set() for name in ALLOWED}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            for name in _calls(path) & set(ALLOWED):
                found[name].add(rel)
    for name, where in found.items():
        assert where <= ALLOWED[name], f"{name}() called outside its owner: {sorted(where - ALLOWED[name])}"
    assert found["unpack_package"] == {"registry/packages.py"}
    assert found["VerifiedPackage"] == {"registry/packages.py"}


def test_runner_is_built_only_from_prepared_packages() -> None:
    """Every Runner(...) in the library passes a package object, never a folder and a record."""
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Runner":
                    assert node.args, f"{path}:{node.lineno}: Runner() without a package"
                    first = ast.unparse(node.args[0])
                    assert "package" in first, f"{path}:{node.lineno}: Runner({first}, ...)"


def test_allow_code_is_enforced_by_prepare_and_by_the_runner(tmp_path: Path) -> None:
    record, _, _ = build_package(tmp_path / "a", "locked-gan", {"m.py": "def build(p, d):\n    raise SystemExit\n"},
                                 package_entry_point="m:build")
    entry = catalog_entry(record, upstream="public")
    settings = Settings(home=tmp_path / "site", upstreams=(Upstream(name="public", url="x", allow_code=False,
                                                                    file_roots=(str(tmp_path),)),))
    with pytest.raises(Unverified, match="allow_code = false") as ei:
        prepare(entry, settings)
    assert ei.value.reason == "allow_code"  # type: ignore[attr-defined]
    mirrored = prepare(entry, settings, purpose="mirror")  # the daemon still mirrors it
    assert not mirrored.may_run and (mirrored.folder / "m.py").is_file()
    with pytest.raises(Unverified, match="mirroring only"):
        Runner(mirrored)
    allowed = replace(settings, upstreams=(Upstream(name="public", url="x", file_roots=(str(tmp_path),)),))
    assert prepare(entry, allowed).may_run


def test_offline_site_never_fetches_to_run_but_its_mirror_job_may(tmp_path: Path) -> None:
    from synthmed.registry.errors import ArtefactNotFound

    record, _, _ = build_package(tmp_path / "a", "offline-gan", {"m.py": "x = 1\n"}, package_entry_point="m:build")
    entry = catalog_entry(record)
    settings = with_file_roots(Settings(home=tmp_path / "site", offline=True), tmp_path)
    with pytest.raises(ArtefactNotFound, match="offline"):
        prepare(entry, settings)
    got = prepare(entry, settings, purpose="mirror")  # a file:// source is not the network
    assert got.source.startswith("file://")
    again = prepare(entry, settings)  # now mirrored: runs offline
    assert again.source == "packages" and again.folder == got.folder


def test_verified_package_pickles_for_dataloader_workers(tmp_path: Path) -> None:
    import pickle

    _, pkg, _ = build_package(tmp_path, "pickled-gan", {"m.py": "x = 1\n"}, package_entry_point="m:build")
    back = pickle.loads(pickle.dumps(pkg))
    assert back == pkg and back.record.data == pkg.record.data
