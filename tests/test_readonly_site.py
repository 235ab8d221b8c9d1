"""Read-only use of a site (issue 11, finding 9): "the daemon writes, researchers read".

A researcher who cannot write the site searches, shows, reads the status and generates
into a folder of their own. As root (CI), the site is bind-mounted read-only in a private
mount namespace (writes fail with EROFS even for root); as another user, its files are made
read-only with chmod for the test."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from helpers import REPO_ROOT
from helpers.sites import cli_env
from synthmed.cli import main

pytestmark = pytest.mark.slow  # a site synced from this repo, driven through subprocesses


SYNTHMED = [sys.executable, "-m", "synthmed.cli"]
MOUNT_RO = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'


def _can_mount_readonly(tmp: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = tmp / "probe"
    probe.mkdir()
    r = subprocess.run(["unshare", "-m", "sh", "-c", MOUNT_RO + "", str(probe), "sh", "-c", f"! touch {probe}/x"],
                       capture_output=True, text=True)
    return r.returncode == 0 and not (probe / "x").exists()


def _make_readonly(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink():
            mode = stat.S_IMODE(p.lstat().st_mode)
            os.chmod(p, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, bool]]:
    home = tmp_path_factory.mktemp("ro-site")
    assert main(["init", str(home), "--upstream", f"public={REPO_ROOT}"]) == 0
    assert main(["--site", str(home), "sync"]) == 0
    by_mount = _can_mount_readonly(tmp_path_factory.mktemp("ro-probe"))
    if not by_mount:
        if os.geteuid() == 0:
            pytest.skip("running as root without mount namespaces: cannot take write access away")
        _make_readonly(home)
    yield home, by_mount
    if not by_mount:
        for p in [home, *home.rglob("*")]:
            if not p.is_symlink():
                os.chmod(p, stat.S_IMODE(p.lstat().st_mode) | stat.S_IWUSR)


def _run_readonly(site: tuple[Path, bool], args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    home, by_mount = site
    cmd = [*SYNTHMED, "--site", str(home), *args]
    if by_mount:
        cmd = ["unshare", "-m", "sh", "-c", MOUNT_RO, str(home), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=300)


def test_the_site_is_really_read_only_in_the_test(site: tuple[Path, bool]) -> None:
    home, by_mount = site
    cmd = [sys.executable, "-c", f"open({str(home / 'x')!r}, 'w')"]
    if by_mount:
        cmd = ["unshare", "-m", "sh", "-c", MOUNT_RO, str(home), *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode != 0 and ("Read-only" in r.stderr or "Permission denied" in r.stderr), r.stderr


def test_search_and_show_work_read_only(site: tuple[Path, bool]) -> None:
    r = _run_readonly(site, ["search", "phantom", "--json"])
    assert r.returncode == 0, r.stderr
    assert "phantom-lesion" in {e["id"] for e in json.loads(r.stdout)}
    r = _run_readonly(site, ["show", "phantom-lesion"])
    assert r.returncode == 0, r.stderr
    assert "phantom-lesion" in r.stdout


def test_status_reads_the_last_sync_read_only(site: tuple[Path, bool]) -> None:
    r = _run_readonly(site, ["status", "--json"])
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert not any("never synced" in str(w) or "cannot read the catalog" in str(w) for w in st.get("warnings", [])), st
    assert [u["name"] for u in st["upstreams"]] == ["public"]


@pytest.mark.slow
def test_generate_into_a_folder_of_ones_own(site: tuple[Path, bool], tmp_path: Path) -> None:
    out = tmp_path / "mine"
    r = _run_readonly(site, ["generate", "phantom-lesion", "-n", "2", "-o", str(out), "--no-progress", "--json"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["written"] == 2
    assert (out / "synthmed.json").is_file()
