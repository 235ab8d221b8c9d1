"""Safe unpacking: malicious archives are refused with the entry named, and nothing is
written outside the staging folder."""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from helpers.packages import make_tar, make_zip, tinfo
from synthmed.registry.errors import UnsafeArchive
from synthmed.registry.artefacts.archives import Limits
from synthmed.registry.artefacts.package_tree import remove_tree
from synthmed.registry.artefacts.packages_folder import PackagesFolder

SHA = "ab" * 32


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def area(tmp_path: Path):
    """(tmp root, packages dir); everything outside packages/.staging is checked untouched."""
    pk = tmp_path / "sandbox" / "packages"
    pk.mkdir(parents=True)
    return tmp_path, pk


def refused(area, archive: Path, media_type: str, entry: str, reason: str, limits: Limits | None = None) -> None:
    tmp, pk = area
    before = snapshot(tmp)
    kw = {"limits": limits} if limits else {}
    with pytest.raises(UnsafeArchive) as ei:
        PackagesFolder(pk).unpack_package(archive, SHA, media_type, **kw)
    assert ei.value.entry == entry
    assert repr(entry) in str(ei.value) and reason in str(ei.value)
    after = snapshot(tmp)
    assert after - before <= {"sandbox/packages/.staging"}, after - before
    assert not list((pk / ".staging").iterdir())
    assert not (pk / SHA).exists()


def test_good_zip_is_unpacked_read_only(area, tmp_path: Path) -> None:
    _, pk = area
    z = make_zip(tmp_path / "ok.zip", [("pkg/__init__.py", b"x = 1\n"), ("pkg/w.bin", os.urandom(1000)), ("README", b"hi")])
    out = PackagesFolder(pk).unpack_package(z, SHA, "application/zip")
    assert out == pk / SHA and (out / "pkg" / "__init__.py").read_text() == "x = 1\n"
    assert not stat.S_IMODE((out / "pkg" / "w.bin").stat().st_mode) & 0o222
    assert not stat.S_IMODE((out / "pkg").stat().st_mode) & 0o222
    assert not stat.S_IMODE(out.stat().st_mode) & 0o222
    assert PackagesFolder(pk).unpack_package(z, SHA, "application/zip") == out  # already there
    remove_tree(out)
    assert not out.exists()


def test_good_tar_gz(area, tmp_path: Path) -> None:
    _, pk = area
    t = make_tar(tmp_path / "ok.tar.gz", [(tinfo("m", tarfile.DIRTYPE), None), (tinfo("m/a.py"), b"print(1)\n")], "w:gz")
    out = PackagesFolder(pk).unpack_package(t, SHA, "application/gzip")
    assert (out / "m" / "a.py").read_bytes() == b"print(1)\n"


def test_single_file(area, tmp_path: Path) -> None:
    _, pk = area
    w = tmp_path / "blob"
    w.write_bytes(b"weights")
    os.chmod(w, 0o444)
    out = PackagesFolder(pk).unpack_package(w, SHA, "application/octet-stream", filename="model.pt")
    assert os.listdir(out) == ["model.pt"] and (out / "model.pt").read_bytes() == b"weights"
    remove_tree(out)
    assert not out.exists() and not stat.S_IMODE(w.stat().st_mode) & 0o222  # the blob stays read-only


def test_zip_slip(area, tmp_path: Path) -> None:
    z = make_zip(tmp_path / "slip.zip", [("ok.txt", b"a"), ("../../evil.txt", b"pwned")])
    refused(area, z, "application/zip", "../../evil.txt", "'..'")


def test_zip_absolute(area, tmp_path: Path) -> None:
    z = make_zip(tmp_path / "abs.zip", [("/tmp/evil.txt", b"pwned")])
    refused(area, z, "application/zip", "/tmp/evil.txt", "absolute path")


def test_zip_symlink(area, tmp_path: Path) -> None:
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    z = make_zip(tmp_path / "link.zip", [(info, b"/etc/passwd")])
    refused(area, z, "application/zip", "link", "symbolic link")


def test_zip_device(area, tmp_path: Path) -> None:
    info = zipfile.ZipInfo("dev")
    info.external_attr = (stat.S_IFCHR | 0o666) << 16
    z = make_zip(tmp_path / "dev.zip", [(info, b"")])
    refused(area, z, "application/zip", "dev", "device")


def test_zip_duplicate_names(area, tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = make_zip(tmp_path / "dup.zip", [("a/x.py", b"1"), ("a/X.py", b"2")])
    refused(area, z, "application/zip", "a/X.py", "duplicate name")


def test_zip_bomb(area, tmp_path: Path) -> None:
    z = make_zip(tmp_path / "bomb.zip", [("small.txt", b"hello"), ("zeros.bin", b"\0" * (50 << 20))])
    assert z.stat().st_size < 200_000
    refused(area, z, "application/zip", "zeros.bin", "compression ratio")


def test_zip_total_size(area, tmp_path: Path) -> None:
    z = make_zip(tmp_path / "big.zip", [("a", os.urandom(3000)), ("b", os.urandom(3000))], compression=zipfile.ZIP_STORED)
    refused(area, z, "application/zip", "b", "unpacked total", Limits(max_total_size=5000))


@pytest.mark.slow
def test_zip_100000_entries(area, tmp_path: Path) -> None:
    path = make_zip(tmp_path / "many.zip", ((f"f{i:06d}", b"") for i in range(100_000)), compression=zipfile.ZIP_STORED)
    refused(area, path, "application/zip", "f010000", "too many entries")


@pytest.mark.slow
def test_tar_100000_entries(area, tmp_path: Path) -> None:
    # ustar headers from a template (tarfile itself is slow at 100,000 entries)
    template = bytearray(tarfile.TarInfo("f000000").tobuf(format=tarfile.USTAR_FORMAT))
    blocks = []
    for i in range(100_000):
        h = bytearray(template)
        h[0:7] = b"f%06d" % i
        h[148:156] = b" " * 8
        h[148:156] = b"%06o\0 " % sum(h)
        blocks.append(bytes(h))
    path = tmp_path / "many.tar"
    path.write_bytes(b"".join(blocks) + b"\0" * 1024)
    refused(area, path, "application/x-tar", "f010000", "too many entries")


def test_tar_slip_and_absolute(area, tmp_path: Path) -> None:
    t = make_tar(tmp_path / "slip.tar", [(tinfo("a.txt"), b"a"), (tinfo("sub/../../evil"), b"x")])
    refused(area, t, "application/x-tar", "sub/../../evil", "'..'")
    t = make_tar(tmp_path / "abs.tar.gz", [(tinfo("/etc/evil"), b"x")], "w:gz")
    refused(area, t, "application/gzip", "/etc/evil", "absolute path")


def test_tar_symlink_escape(area, tmp_path: Path) -> None:
    # the classic: a link pointing outside, then a file written through it
    t = make_tar(tmp_path / "sym.tar", [(tinfo("out", tarfile.SYMTYPE, str(tmp_path)), None),
                                        (tinfo("out/evil.txt"), b"pwned")])
    refused(area, t, "application/x-tar", "out", "symbolic link")
    assert not (tmp_path / "evil.txt").exists()


def test_tar_hard_link(area, tmp_path: Path) -> None:
    t = make_tar(tmp_path / "hard.tar", [(tinfo("a.txt"), b"a"), (tinfo("h", tarfile.LNKTYPE, "/etc/passwd"), None)])
    refused(area, t, "application/x-tar", "h", "hard link")


def test_tar_devices_and_fifo(area, tmp_path: Path) -> None:
    t = make_tar(tmp_path / "dev.tar", [(tinfo("null", tarfile.CHRTYPE), None)])
    refused(area, t, "application/x-tar", "null", "device file")
    t = make_tar(tmp_path / "blk.tar", [(tinfo("disk", tarfile.BLKTYPE), None)])
    refused(area, t, "application/x-tar", "disk", "device file")
    t = make_tar(tmp_path / "fifo.tar", [(tinfo("p", tarfile.FIFOTYPE), None)])
    refused(area, t, "application/x-tar", "p", "FIFO")


def test_tar_duplicates_and_file_as_folder(area, tmp_path: Path) -> None:
    t = make_tar(tmp_path / "dup.tar", [(tinfo("a.txt"), b"1"), (tinfo("./a.txt"), b"2")])
    refused(area, t, "application/x-tar", "./a.txt", "duplicate name")
    t = make_tar(tmp_path / "ff.tar", [(tinfo("a"), b"1"), (tinfo("a/b"), b"2")])
    refused(area, t, "application/x-tar", "a/b", "is a file")


def test_tar_gz_bomb(area, tmp_path: Path) -> None:
    t = make_tar(tmp_path / "bomb.tar.gz", [(tinfo("zeros"), b"\0" * (40 << 20))], "w:gz")
    refused(area, t, "application/gzip", "zeros", "times its size")


def test_corrupt_archive_is_a_clear_error(area, tmp_path: Path) -> None:
    from synthmed.registry.errors import ArtefactError

    _, pk = area
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ArtefactError, match="not a readable zip"):
        PackagesFolder(pk).unpack_package(bad, SHA, "application/zip")
    with pytest.raises(ArtefactError, match="tar"):
        PackagesFolder(pk).unpack_package(bad, SHA, "application/gzip")
    assert not (pk / SHA).exists()


def test_folder_entries_after_their_files_are_fine(area, tmp_path: Path) -> None:
    _, pk = area
    z = make_zip(tmp_path / "late-dir.zip", [("pkg/a.py", b"a"), ("pkg/", b""), ("pkg/sub/b.py", b"b")])
    out = PackagesFolder(pk).unpack_package(z, SHA, "application/zip")
    assert (out / "pkg" / "a.py").read_bytes() == b"a" and (out / "pkg" / "sub" / "b.py").exists()
    remove_tree(out)
    t = make_tar(tmp_path / "dup-dir.tar", [(tinfo("d", tarfile.DIRTYPE), None), (tinfo("d/", tarfile.DIRTYPE), None)])
    refused(area, t, "application/x-tar", "d", "duplicate name")  # tarfile drops the slash
