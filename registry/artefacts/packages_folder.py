"""The owner of a site's unpacked packages, as :class:`~.store.Store` owns the blobs.

``packages/<sha256>/`` is a verified blob unpacked by synthmed's own checker
(:mod:`.archives`), read-only; ``packages/<sha256>.manifest.json`` lists every file of it
with its size and sha256, every folder, and the media type it was unpacked as. Entries go
into ``packages/.staging/`` and the folder is renamed into place only when complete, after
its manifest is written. :class:`PackagesFolder` does all of it: unpacking into place,
reading manifests, re-checking a package against its manifest (and the manifest against
its blob), and removal. Only :func:`~.packages.prepare` (and ``prepare_archive``) unpack.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import atomic
from .archives import DEFAULT_LIMITS, GZIP, MEDIA_TYPES, OCTET, TAR, ZIP, Limits, blob_listing, refuse, safe_filename
from .archives import unpack_tar, unpack_zip
from ..errors import ArtefactError
from .package_tree import (
    MANIFEST_SUFFIX,
    compare_with_blob,
    load_manifest,
    manifest_doc,
    names_of,
    remove_tree,
    scan,
    walk_bottom_up,
)

log = logging.getLogger(__name__)

_SHA = re.compile(r"[0-9a-f]{64}")


class PackagesFolder:
    """``packages/``: unpacked packages by sha256, with their manifests."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        """``packages/<sha256>/``."""
        return self.root / sha256

    def manifest_path(self, sha256: str) -> Path:
        """``packages/<sha256>.manifest.json``: every file of the unpacked package with its
        size and sha256, every folder, and the media type it was unpacked as; written
        (read-only) before the package folder is renamed into place."""
        return self.root / f"{sha256}{MANIFEST_SUFFIX}"

    def exists(self, sha256: str) -> bool:
        """Whether anything stands at ``packages/<sha256>`` (a link is not followed)."""
        return os.path.lexists(self.path(sha256))

    def shas(self) -> Iterator[str]:
        """The sha256 of every package folder, in order."""
        if self.root.is_dir():
            for entry in sorted(self.root.iterdir()):
                if _SHA.fullmatch(entry.name):
                    yield entry.name

    def manifest(self, sha256: str) -> dict[str, Any]:
        """The manifest document of ``packages/<sha256>/``; ArtefactError when it is
        missing, unreadable or of another format."""
        return load_manifest(self.manifest_path(sha256))

    def entries(self, sha256: str) -> dict[str, Any]:
        """``{relative path: [size, sha256]}`` of the package's files."""
        entries: dict[str, Any] = self.manifest(sha256)["entries"]
        return entries

    # -- re-checking -----------------------------------------------------------------

    def check(self, sha256: str, *, blob: Path | None = None, deep: bool = False) -> str | None:
        """None when ``packages/<sha256>/`` still holds exactly what was unpacked, else the reason.

        Every entry is seen without following links: a symbolic link, a device, FIFO or
        socket, a file sharing its inode with another, and any file or folder not in the
        manifest fails, as does a changed or missing file. With ``blob`` (the verified blob
        the package was unpacked from), the manifest itself is checked against the blob: the
        names, sizes and folders it lists must be the blob's (``deep``: the bytes too, which
        reads every entry of the blob), so a manifest rewritten to match a planted file fails."""
        final = self.path(sha256)
        try:
            st = os.lstat(final)
        except OSError:
            return "the package folder is missing"
        if not stat.S_ISDIR(st.st_mode):
            return "the package folder is not a folder (a link or a file stands in its place)"
        try:
            doc = self.manifest(sha256)
        except ArtefactError as exc:
            return exc.message
        expected: dict[str, Any] = doc["entries"]
        tree = scan(final, shared_ok=sha256 if len(expected) == 1 else None)
        parts = list(tree.problems)
        missing = sorted(set(expected) - set(tree.files))
        extra = sorted(set(tree.files) - set(expected))
        changed = sorted(k for k in set(expected) & set(tree.files) if list(expected[k]) != tree.files[k])
        extra_dirs = sorted(set(tree.dirs) - set(doc["dirs"]))
        missing_dirs = sorted(set(doc["dirs"]) - set(tree.dirs))
        parts += [names_of(label, names) for label, names in (
            ("changed", changed), ("missing", missing), ("added", extra), ("added folders", extra_dirs),
            ("missing folders", missing_dirs)) if names]
        if blob is not None and not parts:
            try:
                parts += compare_with_blob(doc, blob_listing(blob, doc["media_type"], contents=deep), sha256)
            except (ArtefactError, zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                parts.append(f"its blob cannot be read as {doc['media_type']} ({exc})")
        return "; ".join(parts) or None

    def reuse(self, sha256: str, ref: str, *, blob: Path | None, deep: bool = False, again_from: str) -> bool:
        """Whether the package already unpacked at ``packages/<sha256>/`` may be used as it is
        (:meth:`check`, against ``blob`` when given). One that changed on disk is never run:
        it is removed (logged, to be unpacked ``again_from`` its verified blob); False then,
        and False when there is none."""
        if not self.exists(sha256):
            return False
        problem = self.check(sha256, blob=blob, deep=deep)
        if problem is None:
            return True
        log.warning("%s: the unpacked package %s changed on disk (%s); unpacking it again from %s",
                    ref, self.path(sha256), problem, again_from)
        self.remove(sha256)
        return False

    def verify_all(self, store_blobs: Callable[[str], Path | None] | None = None) -> list[dict[str, str]]:
        """Re-hash every unpacked package against its manifest; remove the ones that changed
        (they are unpacked again from their verified blob when next needed). With
        ``store_blobs`` (sha256 -> the verified blob's path, or None), each manifest is also
        recomputed from its blob, bytes included (see :meth:`check`)."""
        bad: list[dict[str, str]] = []
        for sha in self.shas():
            blob = store_blobs(sha) if store_blobs is not None else None
            reason = self.check(sha, blob=blob, deep=True)
            if reason:
                log.warning("package %s changed on disk (%s); removed, it will be unpacked again", sha, reason)
                self.remove(sha)
                bad.append({"sha256": sha, "reason": reason})
        return bad

    # -- unpacking and removal -------------------------------------------------------

    def remove(self, sha256: str, *, drop_manifest: bool = False) -> None:
        """Move ``packages/<sha256>/`` aside (atomically) and delete it; it is unpacked again
        from its blob when next needed. ``drop_manifest`` also removes its manifest (for gc).
        A link standing in the folder's place is removed, never followed."""
        final = self.path(sha256)
        if drop_manifest:
            self.manifest_path(sha256).unlink(missing_ok=True)
        if not os.path.lexists(final):
            return
        trash_root = self.root / ".staging"
        trash_root.mkdir(parents=True, exist_ok=True)
        trash = trash_root / f"removed-{sha256}-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(final, trash)
        remove_tree(trash)

    def unpack_package(self, blob: Path, sha256: str, media_type: str, *, filename: str | None = None,
                       limits: Limits = DEFAULT_LIMITS) -> Path:
        """Unpack a verified blob into ``packages/<sha256>/`` (read-only); return that folder.

        ``application/octet-stream`` is a single file, placed in the folder as ``filename``.
        An existing package folder is returned as it is (it was renamed into place complete).
        """
        final = self.path(sha256)
        if final.is_dir() and not final.is_symlink():
            return final
        if media_type not in MEDIA_TYPES:
            raise ArtefactError(f"{blob}: unknown media type {media_type!r}",
                                hint=f"use one of {', '.join(MEDIA_TYPES)}")
        staging_root = self.root / ".staging"
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = staging_root / f"{sha256}-{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            self._fill(Path(blob), staging, media_type, filename, limits)
            self._write_manifest(Path(blob), staging, sha256, media_type)
            if not self._rename_into_place(staging, final):
                return final  # another process unpacked it first
        except BaseException:
            remove_tree(staging)
            raise
        log.info("unpacked %s into %s", sha256, final)
        return final

    @staticmethod
    def _fill(blob: Path, staging: Path, media_type: str, filename: str | None, limits: Limits) -> None:
        if media_type == ZIP:
            unpack_zip(blob, staging, limits)
        elif media_type in (TAR, GZIP):
            unpack_tar(blob, staging, limits)
        else:
            dest = staging / safe_filename(filename)
            try:
                os.link(blob, dest)
            except OSError:
                shutil.copyfile(blob, dest)
                os.chmod(dest, 0o444)

    def _write_manifest(self, blob: Path, staging: Path, sha256: str, media_type: str) -> None:
        manifest = self.manifest_path(sha256)
        tree = scan(staging)
        # a single file is a hard link to its (verified, read-only) blob where the file system allows
        problems = [p for p in tree.problems if not (media_type == OCTET and p.startswith("hard link "))]
        if problems:  # pragma: no cover - the unpackers write regular files and folders only
            raise refuse(blob, problems[0], "not a regular file or folder after unpacking")
        atomic.write_text(manifest, json.dumps(manifest_doc(tree, media_type), indent=1, sort_keys=True), mode=0o444)

    def _rename_into_place(self, staging: Path, final: Path) -> bool:
        """Make the staged tree read-only and rename it to ``final``; False when another
        process put it there first (the staged copy is removed)."""
        for d in walk_bottom_up(staging):
            os.chmod(d, 0o555)
        try:
            os.rename(staging, final)
        except OSError:
            if final.is_dir():
                remove_tree(staging)
                return False
            raise
        os.chmod(final, 0o555)
        atomic.fsync_dir(self.root)
        return True
