"""An unpacked package's tree on disk: seen without following links, hashed, compared
with its manifest and with what its verified blob holds; made writable and removed.
Used by :class:`~.packages_folder.PackagesFolder`, the owner of ``packages/``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import ArtefactError
from ..hashing import hash_file

def walk_bottom_up(root: Path) -> Iterator[Path]:
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


@dataclass
class Tree:
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


def scan(root: Path, *, shared_ok: str | None = None) -> Tree:
    """Every entry under ``root``, seen with ``lstat`` (no link is ever followed). Regular
    files are hashed; folders are listed; anything else is a problem. A regular file with
    more than one hard link is a problem too (its bytes can be changed from outside the
    package), except a file whose sha256 is ``shared_ok`` (a single-file package shares its
    inode with its verified blob)."""
    tree = Tree({}, [], [])
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
    return scan(root).files


def manifest_doc(tree: Tree, media_type: str) -> dict[str, Any]:
    return {"format": MANIFEST_FORMAT, "media_type": media_type, "entries": tree.files, "dirs": tree.dirs}


def load_manifest(path: Path) -> dict[str, Any]:
    """The manifest document at ``path``; ArtefactError when it is missing, unreadable or of
    another format."""
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtefactError(f"{path}: the manifest is missing or unreadable ({exc})") from None
    if not (isinstance(doc, dict) and doc.get("format") == MANIFEST_FORMAT and isinstance(doc.get("entries"), dict)
            and isinstance(doc.get("dirs"), list) and isinstance(doc.get("media_type"), str)):
        raise ArtefactError(f"{path}: not a {MANIFEST_FORMAT} manifest")
    return doc


def names_of(label: str, names: list[str]) -> str:
    return f"{label}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"


def compare_with_blob(doc: dict[str, Any], listing: dict[str, Any], sha256: str) -> list[str]:
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
            out.append(names_of(label, names))
    return out
