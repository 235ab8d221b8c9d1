"""Reading package archives safely: zip, tar (plain, gzip, bzip2, xz) and single files.

Our own checker reads every entry: absolute paths, ``..``, backslashes, symbolic and hard
links, devices and FIFOs, duplicate names, too many entries, too large a total and too
high a compression ratio are refused, each naming the entry (:class:`UnsafeArchive`).
:func:`unpack_zip` and :func:`unpack_tar` write into a staging folder only (the owner of
the packages folder, :class:`~.packages_folder.PackagesFolder`, renames it into place);
:func:`blob_listing` says what an archive unpacks to, without unpacking it.
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..errors import ArtefactError, UnsafeArchive
from ..hashing import hash_file, hash_path

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


def refuse(archive: Path, entry: str, what: str) -> UnsafeArchive:
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
            raise refuse(self.archive, raw, f"too many entries (more than {self.limits.max_entries})")
        if not raw or "\x00" in raw:
            raise refuse(self.archive, raw, "empty name or NUL character")
        if "\\" in raw:
            raise refuse(self.archive, raw, "backslash in the name")
        if raw.startswith("/") or _DRIVE.match(raw):
            raise refuse(self.archive, raw, "absolute path")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise refuse(self.archive, raw, "'..' in the path (it would leave the package folder)")
        if not parts:
            if is_dir:
                return None
            raise refuse(self.archive, raw, "a file without a name")
        rel = PurePosixPath(*parts)
        key = name_key(str(rel))
        if key in self.files or (not is_dir and key in self.dirs) or (is_dir and key in self.explicit_dirs):
            raise refuse(self.archive, raw, "duplicate name (names are compared case-insensitively and "
                                             "after Unicode normalisation)")
        # every parent must be a folder, never a file
        for parent in list(rel.parents)[:-1]:
            pk = name_key(str(parent))
            if pk in self.files:
                raise refuse(self.archive, raw, f"its parent {str(parent)!r} is a file")
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
            raise refuse(self.archive, raw, "negative size")
        self.total += size
        if self.total > lim.max_total_size:
            raise refuse(self.archive, raw, f"the unpacked total passes {lim.max_total_size} bytes")
        if compressed is not None and size >= lim.ratio_min_size and size > lim.max_ratio * max(compressed, 1):
            raise refuse(self.archive, raw, f"compression ratio {size / max(compressed, 1):.0f}:1 is above "
                                             f"{lim.max_ratio:.0f}:1 (a zip bomb?)")
        if self.total >= lim.ratio_min_size and self.total > lim.max_ratio * max(self.archive_size, 1):
            raise refuse(self.archive, raw, f"the archive unpacks to over {lim.max_ratio:.0f} times its size "
                                             f"({self.total} bytes from {self.archive_size})")


def _write_entry(archive: Path, staging: Path, rel: PurePosixPath, src: IO[bytes], size: int, mode: int) -> None:
    dest = staging.joinpath(*rel.parts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # no links can exist in staging (they are refused), but check anyway
    if os.path.commonpath([os.path.realpath(dest.parent), os.path.realpath(staging)]) != os.path.realpath(staging):
        raise refuse(archive, str(rel), "resolves outside the package folder")
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
                raise refuse(archive, str(rel), f"holds more bytes than the {size} it declares")
            mv = buf[:n]
            while mv:
                w = os.write(fd, mv)
                mv = mv[w:]
    finally:
        os.close(fd)
    if written != size:
        raise refuse(archive, str(rel), f"holds {written} bytes but declares {size}")
    os.chmod(dest, 0o555 if mode & 0o111 else 0o444)


def unpack_zip(blob: Path, staging: Path, limits: Limits) -> None:
    chk = _Checker(blob, limits)
    try:
        zf = zipfile.ZipFile(blob)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArtefactError(f"{blob}: not a readable zip archive: {exc}",
                            hint="check the record's media_type, or re-package the model") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise refuse(blob, infos[limits.max_entries].filename,
                          f"too many entries ({len(infos)}, the limit is {limits.max_entries})")
        plan: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        for info in infos:
            raw = info.filename
            mode = (info.external_attr >> 16) & 0xFFFF
            ftype = stat.S_IFMT(mode)
            if ftype == stat.S_IFLNK:
                raise refuse(blob, raw, "symbolic link")
            if ftype not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise refuse(blob, raw, "device, FIFO or other special file")
            if info.flag_bits & 0x1:
                raise refuse(blob, raw, "encrypted entry")
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


def unpack_tar(blob: Path, staging: Path, limits: Limits) -> None:
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
                    raise refuse(blob, raw, f"symbolic link (to {m.linkname!r})")
                if m.islnk():
                    raise refuse(blob, raw, f"hard link (to {m.linkname!r})")
                if m.ischr() or m.isblk():
                    raise refuse(blob, raw, "device file")
                if m.isfifo():
                    raise refuse(blob, raw, "FIFO")
                if not (m.isreg() or m.isdir()):
                    raise refuse(blob, raw, f"unsupported entry type {m.type!r}")
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
                    raise refuse(blob, m.name, "no data")
                with src:
                    _write_entry(blob, staging, rel, src, m.size, m.mode)
    except ArtefactError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ArtefactError(f"{blob}: the tar archive is corrupt: {exc}",
                            hint="re-package the model; the pinned bytes are damaged at the source") from exc


def safe_filename(name: str | None) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        return "artefact.bin"
    return name


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
