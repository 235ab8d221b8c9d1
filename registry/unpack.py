"""Safe unpacking of package archives into ``packages/<sha256>/``.

Our own checker reads every entry: absolute paths, ``..``, backslashes, symbolic and hard
links, devices and FIFOs, duplicate names, too many entries, too large a total and too
high a compression ratio are refused, each naming the entry (:class:`UnsafeArchive`).
Entries are written into a staging folder next to the final one, which is renamed into
place only when everything is unpacked; unpacked packages are read-only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tarfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Callable, Iterator

from . import atomic
from .errors import ArtefactError, UnsafeArchive
from .hashing import hash_file, hash_path

log = logging.getLogger(__name__)

ZIP = "application/zip"
TAR = "application/x-tar"
GZIP = "application/gzip"
OCTET = "application/octet-stream"
MEDIA_TYPES = (ZIP, TAR, GZIP, OCTET)
_DRIVE = re.compile(r"^[A-Za-z]:")
_COPY = 1 << 20


@dataclass(frozen=True)
class Limits:
    max_entries: int = 10_000
    max_total_size: int = 64 << 30
    #: uncompressed / compressed, per entry (zip) and for the whole archive
    max_ratio: float = 200.0
    #: entries (and archives) smaller than this are not judged by their ratio
    ratio_min_size: int = 1 << 20


DEFAULT_LIMITS = Limits()


def name_key(name: str) -> str:
    """The key two names collide under: Unicode compatibility normalisation (NFKC, so NFC
    and NFD spellings of one name are one name) and case folding (a case-insensitive file
    system, or one that normalises names, would make them one file)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _refuse(archive: Path, entry: str, what: str) -> UnsafeArchive:
    return UnsafeArchive(f"{archive}: entry {entry!r}: {what}; refusing to unpack the archive",
                         hint="the package is unsafe or malformed; report it to the model's maintainers "
                              "(nothing was unpacked)",
                         archive=str(archive), entry=entry)


class _Checker:
    """Name and budget checks shared by the zip and tar readers."""

    def __init__(self, archive: Path, limits: Limits) -> None:
        self.archive = archive
        self.limits = limits
        self.count = 0
        self.total = 0
        self.files: set[str] = set()
        self.dirs: set[str] = set()  # every folder, named or implied by a path
        self.explicit_dirs: set[str] = set()  # folders that have their own entry
        self.archive_size = archive.stat().st_size

    def name(self, raw: str, is_dir: bool) -> PurePosixPath | None:
        """The safe relative path of an entry; None for the archive's root folder."""
        self.count += 1
        if self.count > self.limits.max_entries:
            raise _refuse(self.archive, raw, f"too many entries (more than {self.limits.max_entries})")
        if not raw or "\x00" in raw:
            raise _refuse(self.archive, raw, "empty name or NUL character")
        if "\\" in raw:
            raise _refuse(self.archive, raw, "backslash in the name")
        if raw.startswith("/") or _DRIVE.match(raw):
            raise _refuse(self.archive, raw, "absolute path")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise _refuse(self.archive, raw, "'..' in the path (it would leave the package folder)")
        if not parts:
            if is_dir:
                return None
            raise _refuse(self.archive, raw, "a file without a name")
        rel = PurePosixPath(*parts)
        key = name_key(str(rel))
        if key in self.files or (not is_dir and key in self.dirs) or (is_dir and key in self.explicit_dirs):
            raise _refuse(self.archive, raw, "duplicate name (names are compared case-insensitively and "
                                             "after Unicode normalisation)")
        # every parent must be a folder, never a file
        for parent in list(rel.parents)[:-1]:
            pk = name_key(str(parent))
            if pk in self.files:
                raise _refuse(self.archive, raw, f"its parent {str(parent)!r} is a file")
        if is_dir:
            self.dirs.add(key)
            self.explicit_dirs.add(key)
        else:
            self.files.add(key)
            for parent in list(rel.parents)[:-1]:
                self.dirs.add(name_key(str(parent)))
        return rel

    def size(self, raw: str, size: int, compressed: int | None) -> None:
        lim = self.limits
        if size < 0:
            raise _refuse(self.archive, raw, "negative size")
        self.total += size
        if self.total > lim.max_total_size:
            raise _refuse(self.archive, raw, f"the unpacked total passes {lim.max_total_size} bytes")
        if compressed is not None and size >= lim.ratio_min_size and size > lim.max_ratio * max(compressed, 1):
            raise _refuse(self.archive, raw, f"compression ratio {size / max(compressed, 1):.0f}:1 is above "
                                             f"{lim.max_ratio:.0f}:1 (a zip bomb?)")
        if self.total >= lim.ratio_min_size and self.total > lim.max_ratio * max(self.archive_size, 1):
            raise _refuse(self.archive, raw, f"the archive unpacks to over {lim.max_ratio:.0f} times its size "
                                             f"({self.total} bytes from {self.archive_size})")


def _write_entry(archive: Path, staging: Path, rel: PurePosixPath, src: IO[bytes], size: int, mode: int) -> None:
    dest = staging.joinpath(*rel.parts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # no links can exist in staging (they are refused), but check anyway
    if os.path.commonpath([os.path.realpath(dest.parent), os.path.realpath(staging)]) != os.path.realpath(staging):
        raise _refuse(archive, str(rel), "resolves outside the package folder")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(dest, flags, 0o644)
    written = 0
    try:
        buf = memoryview(bytearray(_COPY))
        while True:
            n = src.readinto(buf) if hasattr(src, "readinto") else 0  # type: ignore[attr-defined]
            if not n:
                break
            written += n
            if written > size:
                raise _refuse(archive, str(rel), f"holds more bytes than the {size} it declares")
            mv = buf[:n]
            while mv:
                w = os.write(fd, mv)
                mv = mv[w:]
    finally:
        os.close(fd)
    if written != size:
        raise _refuse(archive, str(rel), f"holds {written} bytes but declares {size}")
    os.chmod(dest, 0o555 if mode & 0o111 else 0o444)


def _unpack_zip(blob: Path, staging: Path, limits: Limits) -> None:
    chk = _Checker(blob, limits)
    try:
        zf = zipfile.ZipFile(blob)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArtefactError(f"{blob}: not a readable zip archive: {exc}",
                            hint="check the record's media_type, or re-package the model") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise _refuse(blob, infos[limits.max_entries].filename,
                          f"too many entries ({len(infos)}, the limit is {limits.max_entries})")
        plan: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        for info in infos:
            raw = info.filename
            mode = (info.external_attr >> 16) & 0xFFFF
            ftype = stat.S_IFMT(mode)
            if ftype == stat.S_IFLNK:
                raise _refuse(blob, raw, "symbolic link")
            if ftype not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise _refuse(blob, raw, "device, FIFO or other special file")
            if info.flag_bits & 0x1:
                raise _refuse(blob, raw, "encrypted entry")
            is_dir = info.is_dir() or ftype == stat.S_IFDIR
            rel = chk.name(raw, is_dir)
            if is_dir:
                if rel is not None:
                    staging.joinpath(*rel.parts).mkdir(parents=True, exist_ok=True)
                continue
            chk.size(raw, info.file_size, info.compress_size)
            assert rel is not None
            plan.append((info, rel))
        for info, rel in plan:
            try:
                with zf.open(info) as src:
                    _write_entry(blob, staging, rel, src, info.file_size, (info.external_attr >> 16) & 0o777)
            except (zipfile.BadZipFile, EOFError, OSError) as exc:
                if isinstance(exc, UnsafeArchive):
                    raise
                raise ArtefactError(f"{blob}: entry {info.filename!r} is corrupt: {exc}",
                                    hint="re-package the model; the pinned bytes are damaged at the source") from exc


def _unpack_tar(blob: Path, staging: Path, limits: Limits) -> None:
    """Two passes: check every header first (nothing is written for a refused archive),
    then extract. Handles plain, gzip, bzip2 and xz tars."""
    chk = _Checker(blob, limits)
    try:
        tf = tarfile.open(blob, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ArtefactError(f"{blob}: not a readable tar archive: {exc}",
                            hint="check the record's media_type, or re-package the model") from exc
    try:
        with tf:
            dirs: list[PurePosixPath] = []
            plan: list[tuple[tarfile.TarInfo, PurePosixPath]] = []
            while True:
                m = tf.next()
                if m is None:
                    break
                raw = m.name
                if m.issym():
                    raise _refuse(blob, raw, f"symbolic link (to {m.linkname!r})")
                if m.islnk():
                    raise _refuse(blob, raw, f"hard link (to {m.linkname!r})")
                if m.ischr() or m.isblk():
                    raise _refuse(blob, raw, "device file")
                if m.isfifo():
                    raise _refuse(blob, raw, "FIFO")
                if not (m.isreg() or m.isdir()):
                    raise _refuse(blob, raw, f"unsupported entry type {m.type!r}")
                rel = chk.name(raw, m.isdir())
                if rel is None:
                    continue
                if m.isdir():
                    dirs.append(rel)
                    continue
                chk.size(raw, m.size, None)
                plan.append((m, rel))
            for d in dirs:
                staging.joinpath(*d.parts).mkdir(parents=True, exist_ok=True)
            for m, rel in plan:
                src = tf.extractfile(m)
                if src is None:  # pragma: no cover - regular files always have one
                    raise _refuse(blob, m.name, "no data")
                with src:
                    _write_entry(blob, staging, rel, src, m.size, m.mode)
    except ArtefactError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ArtefactError(f"{blob}: the tar archive is corrupt: {exc}",
                            hint="re-package the model; the pinned bytes are damaged at the source") from exc


def _safe_filename(name: str | None) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        return "artefact.bin"
    return name


def _walk_bottom_up(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, _files in os.walk(root, topdown=False):
        for d in dirnames:
            yield Path(dirpath) / d


def make_writable(path: Path) -> None:
    """Make the folders of an unpacked tree writable again (before removing it). Files keep
    their modes: removing a file needs only its folder to be writable, and a single-file
    package shares its inode with the read-only blob in the store. Links are never followed
    (a planted link must not make its target writable)."""
    if os.path.islink(path) or not path.is_dir():
        return
    os.chmod(path, 0o755)
    for dirpath, dirnames, _filenames in os.walk(path):
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                with contextlib.suppress(OSError):
                    os.chmod(full, 0o755)


def remove_tree(path: Path) -> None:
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        with contextlib.suppress(OSError):
            os.unlink(path)
        return
    make_writable(path)
    shutil.rmtree(path, ignore_errors=True)


MANIFEST_SUFFIX = ".manifest.json"
#: the manifest's own format: ``{"format", "media_type", "entries": {path: [size, sha256]},
#: "dirs": [path, ...]}``; a manifest of another format is treated as not matching
MANIFEST_FORMAT = "synthmed-manifest/2"


def manifest_path(packages_dir: Path, sha256: str) -> Path:
    """``packages/<sha256>.manifest.json``: every file of the unpacked package with its size
    and sha256, every folder, and the media type it was unpacked as; written (read-only)
    before the package folder is renamed into place."""
    return Path(packages_dir) / f"{sha256}{MANIFEST_SUFFIX}"


@dataclass
class _Tree:
    files: dict[str, list[Any]]
    dirs: list[str]
    #: entries that may not be in a package at all: links, devices, FIFOs, sockets, shared inodes
    problems: list[str]


def _hash_nofollow(full: str, st: os.stat_result) -> tuple[str, int] | None:
    """sha256 and size of the regular file at ``full``, opened without following a link;
    None when what was opened is not the file that was listed (it was swapped meanwhile)."""
    try:
        fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb", buffering=0) as fh:
        got = os.fstat(fh.fileno())
        if not stat.S_ISREG(got.st_mode) or (got.st_ino, got.st_dev) != (st.st_ino, st.st_dev):
            return None
        return hash_file(fh)  # type: ignore[arg-type]


def _scan(root: Path, *, shared_ok: str | None = None) -> _Tree:
    """Every entry under ``root``, seen with ``lstat`` (no link is ever followed). Regular
    files are hashed; folders are listed; anything else is a problem. A regular file with
    more than one hard link is a problem too (its bytes can be changed from outside the
    package), except a file whose sha256 is ``shared_ok`` (a single-file package shares its
    inode with its verified blob)."""
    tree = _Tree({}, [], [])
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            tree.problems.append(f"unreadable folder {rel_dir or '.'} ({exc.strerror})")
            continue
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                tree.problems.append(f"unreadable entry {rel}")
                continue
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                tree.problems.append(f"symbolic link {rel}")
            elif stat.S_ISDIR(mode):
                tree.dirs.append(rel)
                stack.append(rel)
            elif stat.S_ISREG(mode):
                got = _hash_nofollow(e.path, st)
                if got is None:
                    tree.problems.append(f"file {rel} changed while it was read")
                    continue
                digest, size = got
                if st.st_nlink > 1 and digest != shared_ok:
                    tree.problems.append(f"hard link {rel} (its inode is shared with a file outside the package)")
                tree.files[rel] = [size, digest]
            else:
                tree.problems.append(f"special file {rel} (device, FIFO or socket)")
    tree.dirs.sort()
    return tree


def tree_manifest(root: Path) -> dict[str, list[Any]]:
    """``{relative path: [size, sha256]}`` for every regular file under ``root`` (seen
    without following links; links and special files are not listed, see :func:`check_unpacked`)."""
    return _scan(root).files


def _manifest_doc(tree: _Tree, media_type: str) -> dict[str, Any]:
    return {"format": MANIFEST_FORMAT, "media_type": media_type, "entries": tree.files, "dirs": tree.dirs}


def read_manifest(packages_dir: Path, sha256: str) -> dict[str, Any]:
    """The manifest document of ``packages/<sha256>/``; ArtefactError when it is missing,
    unreadable or of another format."""
    path = manifest_path(packages_dir, sha256)
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtefactError(f"{path}: the manifest is missing or unreadable ({exc})") from None
    if not (isinstance(doc, dict) and doc.get("format") == MANIFEST_FORMAT and isinstance(doc.get("entries"), dict)
            and isinstance(doc.get("dirs"), list) and isinstance(doc.get("media_type"), str)):
        raise ArtefactError(f"{path}: not a {MANIFEST_FORMAT} manifest")
    return doc


def blob_listing(blob: Path, media_type: str, *, contents: bool = False,
                 limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """What unpacking ``blob`` as ``media_type`` yields, read from the verified blob itself:
    ``{"entries": {path: [size, sha256 or None]}, "dirs": [path, ...]}`` (sha256 only with
    ``contents``, which reads every entry). For a single file, ``{"*": [size, blob sha256]}``
    (its name comes from the record). The unpacked tree's manifest must agree with it, so a
    manifest edited to list a planted file is caught."""
    blob = Path(blob)
    files: dict[str, list[Any]] = {}
    dirs: set[str] = set()

    def add(rel: PurePosixPath, size: int, digest: str | None) -> None:
        files[str(rel)] = [size, digest]
        dirs.update(str(p) for p in list(rel.parents)[:-1])

    if media_type == OCTET:
        digest, size = hash_path(blob) if contents else (None, blob.stat().st_size)
        return {"entries": {"*": [size, digest]}, "dirs": []}
    chk = _Checker(blob, limits)
    if media_type == ZIP:
        with zipfile.ZipFile(blob) as zf:
            for info in zf.infolist():
                is_dir = info.is_dir() or stat.S_IFMT((info.external_attr >> 16) & 0xFFFF) == stat.S_IFDIR
                rel = chk.name(info.filename, is_dir)
                if rel is None:
                    continue
                if is_dir:
                    dirs.add(str(rel))
                    dirs.update(str(p) for p in list(rel.parents)[:-1])
                    continue
                digest = None
                if contents:
                    with zf.open(info) as src:
                        digest, _ = hash_file(src)  # type: ignore[arg-type]
                add(rel, info.file_size, digest)
    elif media_type in (TAR, GZIP):
        with tarfile.open(blob, mode="r:*") as tf:
            for m in tf:
                rel = chk.name(m.name, m.isdir())
                if rel is None:
                    continue
                if m.isdir():
                    dirs.add(str(rel))
                    dirs.update(str(p) for p in list(rel.parents)[:-1])
                    continue
                digest = None
                if contents:
                    member = tf.extractfile(m)
                    if member is not None:
                        with member:
                            digest, _ = hash_file(member)  # type: ignore[arg-type]
                add(rel, m.size, digest)
    else:
        raise ArtefactError(f"{blob}: unknown media type {media_type!r}")
    return {"entries": files, "dirs": sorted(dirs)}


def _names(label: str, names: list[str]) -> str:
    return f"{label}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"


def _compare_with_blob(doc: dict[str, Any], listing: dict[str, Any], sha256: str) -> list[str]:
    """Where the manifest disagrees with what its verified blob unpacks to."""
    entries: dict[str, list[Any]] = doc["entries"]
    want: dict[str, list[Any]] = listing["entries"]
    if list(want) == ["*"]:  # a single file: one entry, whose bytes are the blob's
        size, digest = want["*"]
        if len(entries) != 1 or doc["dirs"]:
            return ["the manifest lists more than the single file its blob holds"]
        (got,) = entries.values()
        if list(got) != [size, sha256] or (digest is not None and digest != sha256):
            return ["the manifest's file is not the blob's bytes"]
        return []
    out = []
    planted = sorted(set(entries) - set(want))
    lost = sorted(set(want) - set(entries))
    differ = sorted(k for k in set(entries) & set(want)
                    if entries[k][0] != want[k][0] or (want[k][1] is not None and entries[k][1] != want[k][1]))
    extra_dirs = sorted(set(doc["dirs"]) - set(listing["dirs"]))
    for label, names in (("the manifest lists files its blob does not hold", planted),
                         ("the manifest lacks files of its blob", lost),
                         ("the manifest disagrees with its blob on", differ),
                         ("the manifest lists folders its blob does not hold", extra_dirs)):
        if names:
            out.append(_names(label, names))
    return out


def check_unpacked(packages_dir: Path, sha256: str, *, blob: Path | None = None, deep: bool = False) -> str | None:
    """None when ``packages/<sha256>/`` still holds exactly what was unpacked, else the reason.

    Every entry is seen without following links: a symbolic link, a device, FIFO or socket,
    a file sharing its inode with another, and any file or folder not in the manifest fails,
    as does a changed or missing file. With ``blob`` (the verified blob the package was
    unpacked from), the manifest itself is checked against the blob: the names, sizes and
    folders it lists must be the blob's (``deep``: the bytes too, which reads every entry of
    the blob), so a manifest rewritten to match a planted file fails."""
    final = Path(packages_dir) / sha256
    try:
        st = os.lstat(final)
    except OSError:
        return "the package folder is missing"
    if not stat.S_ISDIR(st.st_mode):
        return "the package folder is not a folder (a link or a file stands in its place)"
    try:
        doc = read_manifest(packages_dir, sha256)
    except ArtefactError as exc:
        return exc.message
    expected: dict[str, Any] = doc["entries"]
    single = sha256 if len(expected) == 1 else None
    tree = _scan(final, shared_ok=single)
    parts = list(tree.problems)
    missing = sorted(set(expected) - set(tree.files))
    extra = sorted(set(tree.files) - set(expected))
    changed = sorted(k for k in set(expected) & set(tree.files) if list(expected[k]) != tree.files[k])
    extra_dirs = sorted(set(tree.dirs) - set(doc["dirs"]))
    missing_dirs = sorted(set(doc["dirs"]) - set(tree.dirs))
    parts += [_names(label, names) for label, names in (
        ("changed", changed), ("missing", missing), ("added", extra), ("added folders", extra_dirs),
        ("missing folders", missing_dirs)) if names]
    if blob is not None and not parts:
        try:
            parts += _compare_with_blob(doc, blob_listing(blob, doc["media_type"], contents=deep), sha256)
        except (ArtefactError, zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            parts.append(f"its blob cannot be read as {doc['media_type']} ({exc})")
    return "; ".join(parts) or None


def remove_package(packages_dir: Path, sha256: str, *, drop_manifest: bool = False) -> None:
    """Move ``packages/<sha256>/`` aside (atomically) and delete it; it is unpacked again from
    its blob when next needed. ``drop_manifest`` also removes its manifest (for gc). A link
    standing in the folder's place is removed, never followed."""
    final = Path(packages_dir) / sha256
    if drop_manifest:
        manifest_path(packages_dir, sha256).unlink(missing_ok=True)
    if not os.path.lexists(final):
        return
    trash_root = Path(packages_dir) / ".staging"
    trash_root.mkdir(parents=True, exist_ok=True)
    trash = trash_root / f"removed-{sha256}-{os.getpid()}-{secrets.token_hex(4)}"
    os.rename(final, trash)
    remove_tree(trash)


def verify_packages(packages_dir: Path, store_blobs: Callable[[str], Path | None] | None = None) -> list[dict[str, str]]:
    """Re-hash every unpacked package against its manifest; remove the ones that changed
    (they are unpacked again from their verified blob when next needed). With
    ``store_blobs`` (sha256 -> the verified blob's path, or None), each manifest is also
    recomputed from its blob, bytes included (see :func:`check_unpacked`)."""
    bad: list[dict[str, str]] = []
    root = Path(packages_dir)
    if not root.is_dir():
        return bad
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not re.fullmatch(r"[0-9a-f]{64}", entry.name):
            continue
        blob = store_blobs(entry.name) if store_blobs is not None else None
        reason = check_unpacked(root, entry.name, blob=blob, deep=True)
        if reason:
            log.warning("package %s changed on disk (%s); removed, it will be unpacked again", entry.name, reason)
            remove_package(root, entry.name)
            bad.append({"sha256": entry.name, "reason": reason})
    return bad


def unpack_package(blob: Path, packages_dir: Path, sha256: str, media_type: str, *,
                   filename: str | None = None, limits: Limits = DEFAULT_LIMITS) -> Path:
    """Unpack a verified blob into ``packages_dir/<sha256>/`` (read-only); return that folder.

    ``application/octet-stream`` is a single file, placed in the folder as ``filename``.
    An existing package folder is returned as it is (it was renamed into place complete).
    """
    final = Path(packages_dir) / sha256
    if final.is_dir() and not final.is_symlink():
        return final
    if media_type not in MEDIA_TYPES:
        raise ArtefactError(f"{blob}: unknown media type {media_type!r}",
                            hint=f"use one of {', '.join(MEDIA_TYPES)}")
    staging_root = Path(packages_dir) / ".staging"
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = staging_root / f"{sha256}-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        if media_type == ZIP:
            _unpack_zip(Path(blob), staging, limits)
        elif media_type in (TAR, GZIP):
            _unpack_tar(Path(blob), staging, limits)
        else:
            dest = staging / _safe_filename(filename)
            try:
                os.link(blob, dest)
            except OSError:
                shutil.copyfile(blob, dest)
                os.chmod(dest, 0o444)
        manifest = manifest_path(packages_dir, sha256)
        tree = _scan(staging)
        # a single file is a hard link to its (verified, read-only) blob where the file system allows
        problems = [p for p in tree.problems if not (media_type == OCTET and p.startswith("hard link "))]
        if problems:  # pragma: no cover - the unpackers write regular files and folders only
            raise _refuse(Path(blob), problems[0], "not a regular file or folder after unpacking")
        atomic.write_text(manifest, json.dumps(_manifest_doc(tree, media_type), indent=1, sort_keys=True), mode=0o444)
        for d in _walk_bottom_up(staging):
            os.chmod(d, 0o555)
        try:
            os.rename(staging, final)
        except OSError:
            if final.is_dir():  # another process unpacked it first
                remove_tree(staging)
                return final
            raise
        os.chmod(final, 0o555)
        atomic.fsync_dir(packages_dir)
    except BaseException:
        remove_tree(staging)
        raise
    log.info("unpacked %s into %s", sha256, final)
    return final
