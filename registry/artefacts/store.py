"""The content-addressed store: ``blobs/sha256/<ab>/<rest>``, verified and read-only.

Write protocol (docs/design.md, "The store's write protocol"): stream into ``tmp/<sha256>.part`` while hashing, stop at the
declared size, fsync, make read-only and rename into ``blobs/``. A mismatch moves the file
to ``quarantine/`` with a JSON note of why, and the next source is tried. A download
killed half-way leaves its ``.part`` file, and the next fetch re-hashes that prefix and
resumes with a range request where the source supports it. Locks only avoid duplicate
work; correctness comes from hashing and atomic renames.

Failures have two sides. A :class:`SourceError` (a source could not be opened or read,
whatever the transport error; bytes of the wrong size or hash) fails that source only,
and the next one is tried. An ``OSError`` of the store's own disk (ENOSPC while writing
the ``.part`` file, ...) is an :class:`ArtefactError` that stops the fetch at once.

Readers verify a blob on its first open; the result is remembered by (inode, size,
mtime) in ``state.db``, so later opens cost nothing until the file changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from .. import atomic
from . import copy_pipeline
from .copy_pipeline import DIRECT_ALIGN, DIRECT_MIN, ByteProgress, CopyPipe
from ..errors import ArtefactError, ArtefactNotFound, BlobCorrupt, HashMismatch, SizeMismatch, SourceError
from ..hashing import hash_file
from ..settings import Settings
from .sources import Source, SourceContext, candidate_uris, source_for_uri
from .sources.base import redact
from .sources.file import FileSource
from .store_state import VerifiedState

log = logging.getLogger(__name__)

#: read/hash/write buffer size
CHUNK = 4 << 20
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def check_sha256(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA_RE.match(sha256):
        raise ArtefactError(f"{sha256!r} is not a sha256 (64 lower-case hexadecimal characters)",
                            hint="check the record's package.artefact.sha256")
    return sha256


@dataclass(frozen=True)
class FetchResult:
    sha256: str
    path: Path
    size: int
    #: the source URI the bytes came from ("store" when the blob was already there)
    source: str
    #: byte offset a download resumed from (0: from the start)
    resumed_from: int = 0


@dataclass
class VerifyReport:
    checked: int = 0
    ok: int = 0
    bytes: int = 0
    corrupt: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _StoreLock:
    """An advisory flock per sha256; only avoids two processes fetching the same blob."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> "_StoreLock":
        try:
            import fcntl

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except (OSError, ImportError) as exc:  # no flock here: carry on without it
            log.debug("no lock on %s: %s", self.path, exc)
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None


@dataclass
class _Attempt:
    """One source's try at a ``.part`` file."""

    part: Path
    #: bytes of the file that count (hashed into ``hasher``): a resumed prefix, else 0
    have: int
    hasher: Any
    #: bytes in the file when the attempt ends
    total: int
    #: whether this attempt changed the file (a failure then removes it)
    wrote: bool = False


def rate_text(nbytes: int, seconds: float) -> str:
    """A transfer rate an admin can read: MB/s, kB/s or B/s, whichever shows its digits
    (a small file is not "0.00 MB/s")."""
    rate = nbytes / max(seconds, 1e-6)
    if rate >= 1e6:
        return f"{rate / 1e6:.2f} MB/s"
    return f"{rate / 1e3:.1f} kB/s" if rate >= 1e3 else f"{rate:.0f} B/s"


class Store:
    """A site's store; ``root`` is ``settings.store_dir``."""

    def __init__(self, root: Path, *, chunk_size: int = CHUNK) -> None:
        self.root = Path(root)
        self.chunk_size = chunk_size
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.tmp_dir = self.root / "tmp"
        self.quarantine_dir = self.root / "quarantine"
        self.locks_dir = self.root / "locks"
        self.state_path = self.root / "state.db"
        self.state = VerifiedState(self.state_path)

    # -- layout ----------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.blobs_dir / sha256[:2] / sha256[2:]

    def has(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    def iter_blobs(self) -> Iterator[str]:
        if not self.blobs_dir.is_dir():
            return
        for sub in sorted(self.blobs_dir.iterdir()):
            if not sub.is_dir():
                continue
            for f in sorted(sub.iterdir()):
                sha = sub.name + f.name
                if _SHA_RE.match(sha) and f.is_file():
                    yield sha

    def _mkdirs(self) -> None:
        for d in (self.blobs_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.quarantine_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    # -- fetching --------------------------------------------------------------------
    def fetch(self, sha256: str, size: int | None, sources: list[str], ctx: SourceContext,
              progress: ByteProgress | None = None) -> FetchResult:
        """Make sure the blob is in the store: site mirrors first, then each source in order.

        Raises :class:`ArtefactNotFound` listing every source's reason when none works.
        """
        check_sha256(sha256)
        path = self.blob_path(sha256)
        if path.is_file():
            return FetchResult(sha256, path, path.stat().st_size, "store")
        self._mkdirs()
        with _StoreLock(self.locks_dir / f"{sha256}.lock"):
            if path.is_file():  # another process fetched it while we waited
                return FetchResult(sha256, path, path.stat().st_size, "store")
            uris = candidate_uris(sources, ctx.settings, sha256)
            return self._try_sources(uris, ctx, sha256, size, progress)

    def add_from_sources(self, sources: list[str], ctx: SourceContext, size: int | None = None,
                         progress: ByteProgress | None = None) -> FetchResult:
        """Download an artefact whose sha256 is not known yet (``index pin``), hash it and
        store it under that hash. The first source that delivers wins."""
        self._mkdirs()
        self._clean_orphans()
        return self._try_sources(list(sources), ctx, None, size, progress)

    def add_file(self, path: Path) -> FetchResult:
        """Copy a local file into the store (hashing it)."""
        uri = Path(path).resolve().as_uri()
        self._mkdirs()
        # a file:// source reads no setting (it is local: the offline rule never refuses it)
        src = FileSource(uri, SourceContext(settings=Settings(home=self.root)), None)
        return self._fetch_one(src, uri, None, Path(path).stat().st_size, None)

    def _clean_orphans(self) -> None:
        """Remove ``new-<pid>-*.part`` files of processes that no longer run (those
        downloads cannot be resumed: their hash was not known)."""
        for f in self.tmp_dir.glob("new-*-*.part"):
            try:
                pid = int(f.name.split("-")[1])
            except (IndexError, ValueError):
                continue
            if pid == os.getpid():
                continue
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
            except PermissionError:
                pass

    def _try_sources(self, uris: list[str], ctx: SourceContext, sha256: str | None, size: int | None,
                     progress: ByteProgress | None) -> FetchResult:
        failures: list[tuple[str, str]] = []
        if not uris:
            raise ArtefactNotFound(f"artefact {sha256 or '(unpinned)'}: the record lists no sources",
                                   hint="add a source URI to package.artefact.sources", sha256=sha256, failures=[])
        for raw in uris:
            uri = redact(raw)
            try:
                src = source_for_uri(raw, ctx, sha256)
                return self._fetch_one(src, uri, sha256, size, progress)
            except SourceError as exc:
                msg = exc.message if exc.message.startswith(uri) else f"{uri}: {exc.message}"
                log.warning("source failed: %s", msg)
                failures.append((uri, msg))
        lines = "\n".join(f"  - {m}" for _, m in failures)
        what = f"artefact sha256:{sha256}" if sha256 else "the artefact"
        raise ArtefactNotFound(
            f"no source could provide {what} ({len(failures)} tried):\n{lines}",
            hint="fix or add a source in the record, configure a site mirror (sources.mirrors), "
                 "or copy the file in and use a file:// source",
            sha256=sha256, failures=failures)

    def _fetch_one(self, src: Source, uri: str, sha256: str | None, size: int | None,
                   progress: ByteProgress | None, _retry: bool = True) -> FetchResult:
        """One source: resume or start ``tmp/<sha256>.part``, stream, hash, check, promote.

        A failure removes what this attempt wrote; a prefix left by an interrupted earlier
        download is kept when this attempt wrote nothing (the next source may resume it).
        """
        began = time.monotonic()
        att = self._fill_part(src, uri, sha256, size, progress)
        digest = att.hasher.hexdigest()
        if sha256 is not None and digest != sha256:
            reason = (f"{uri}: the bytes hash to {digest}, not the pinned {sha256}"
                      + (f" (resumed at byte {att.have})" if att.have else ""))
            self._quarantine_file(att.part, sha256, {"source": uri, "reason": "hash mismatch",
                                                     "expected_sha256": sha256, "actual_sha256": digest,
                                                     "size": att.total, "resumed_from": att.have})
            if att.have and _retry:
                log.warning("%s; the prefix came from an earlier download, retrying from the start", reason)
                return self._fetch_one(src, uri, sha256, size, progress, _retry=False)
            raise HashMismatch(reason, hint="the source serves tampered or different bytes; it was quarantined "
                                            "and the next source is tried", source=uri, expected=sha256,
                               actual=digest)
        path = self._promote(att.part, digest)
        took = max(time.monotonic() - began, 1e-6)
        log.info("fetched %s: %d bytes from %s in %.2f s (%s%s)", digest[:12], att.total, uri, took,
                 rate_text(att.total - att.have, took), f", resumed at byte {att.have}" if att.have else "")
        return FetchResult(digest, path, att.total, uri, resumed_from=att.have)

    def _fill_part(self, src: Source, uri: str, sha256: str | None, size: int | None,
                   progress: ByteProgress | None) -> "_Attempt":
        """Bring the ``.part`` file to the source's whole content (hashed), resuming a
        prefix where the source allows; the two sides of a failure as the module says."""
        if sha256 is not None:
            part = self.tmp_dir / f"{sha256}.part"
        else:
            part = self.tmp_dir / f"new-{os.getpid()}-{secrets.token_hex(6)}.part"
        prefix = 0
        if sha256 is not None:
            with contextlib.suppress(FileNotFoundError):
                prefix = part.stat().st_size
        have = prefix
        if (size is not None and have > size) or (have and not src.supports_range and have != size):
            have = 0
        att = _Attempt(part, have, hashlib.sha256(), have)
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o600)  # not readable by others until verified
        failed = False  # a handled failure (not an interruption such as kill or Ctrl-C)
        try:
            if att.have:
                att.have = self._hash_prefix(fd, att.have, att.hasher)
            if size is not None and att.have == size:
                log.info("%s: the partial download is complete; verifying it", uri)
            else:
                self._stream_into(fd, att, src, uri, size, progress)
            os.fsync(fd)
        except SourceError:
            # the source failed: opening it or reading from it (the sources' base class turns
            # every transport error, EIO on a share included, into a SourceError); the next
            # source is tried
            failed = True
            raise
        except OSError as exc:
            # the store's own side failed (writing, truncating or fsyncing the .part file,
            # hashing its prefix: ENOSPC, EROFS, ...); no other source can help, so it stops
            failed = True
            att.wrote = True
            raise ArtefactError(f"{self.root}: writing the download from {uri} failed: {exc}",
                                hint="check free space and permissions of the store") from exc
        finally:
            os.close(fd)
            # an interruption (kill, Ctrl-C) keeps the file for a resume; a handled failure
            # removes what this attempt wrote
            if failed and (att.wrote or not prefix):
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
        return att

    def _stream_into(self, fd: int, att: "_Attempt", src: Source, uri: str, size: int | None,
                     progress: ByteProgress | None) -> None:
        """Open the source at ``att.have`` (from the start when it cannot resume there) and
        copy it into ``fd`` through the copy pipeline; the size is checked both ways."""
        stream = src.open(att.have, size=size)  # no size: the source reads at most sources.max_unsized_bytes
        try:
            if stream.offset != att.have:
                log.info("%s: cannot resume at byte %d; starting again", uri, att.have)
                att.hasher = hashlib.sha256()
                att.have = 0
            elif att.have:
                log.info("%s: resuming at byte %d", uri, att.have)
            if size is not None and stream.total is not None and stream.total != size:
                raise SizeMismatch(f"{uri}: the source has {stream.total} bytes but the record declares {size}",
                                   hint="the source serves a different file; the next source is tried", source=uri)
            att.wrote = True
            os.ftruncate(fd, att.have)
            os.lseek(fd, att.have, os.SEEK_SET)
            direct_fd = None
            if (size is None or size - att.have >= DIRECT_MIN) and att.have % DIRECT_ALIGN == 0 \
                    and self.chunk_size % DIRECT_ALIGN == 0:
                direct_fd = copy_pipeline.open_direct(att.part)
            try:
                pipe = CopyPipe(fd, att.hasher, self.chunk_size, progress, att.have, size, direct_fd)
                att.total = att.have + pipe.run(stream, None if size is None else size - att.have)
            finally:
                if direct_fd is not None:
                    os.close(direct_fd)
            if size is not None:
                if att.total < size:
                    raise SizeMismatch(f"{uri}: the source ended after {att.total} of {size} bytes",
                                       hint="the download was truncated; the next source is tried", source=uri)
                if stream.readinto(memoryview(bytearray(1))):
                    raise SizeMismatch(f"{uri}: the source sends more than the declared {size} bytes",
                                       hint="the source serves a different file; the next source is tried",
                                       source=uri)
        finally:
            stream.close()

    def _hash_prefix(self, fd: int, have: int, hasher: Any) -> int:
        """Feed the first ``have`` bytes of the .part file to ``hasher``; return how many there were."""
        buf = memoryview(bytearray(self.chunk_size))
        os.lseek(fd, 0, os.SEEK_SET)
        left = have
        while left:
            n = os.readv(fd, [buf[: min(left, len(buf))]])
            if not n:
                break
            hasher.update(buf[:n])
            left -= n
        return have - left

    def _promote(self, part: Path, digest: str) -> Path:
        dest = self.blob_path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(part, 0o444)
        os.replace(part, dest)
        atomic.fsync_dir(dest.parent)
        self.state.put(digest, os.stat(dest))
        log.info("stored blob %s (%d bytes)", digest, dest.stat().st_size)
        return dest

    # -- quarantine ------------------------------------------------------------------
    def _quarantine_file(self, path: Path, name: str, note: dict[str, Any]) -> Path:
        # what a source sent is nobody else's to read: the folder 0700, files and notes 0600
        self.quarantine_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self.quarantine_dir, 0o700)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest = self.quarantine_dir / f"{name}.{stamp}.{secrets.token_hex(4)}"
        os.replace(path, dest)
        with contextlib.suppress(OSError):
            os.chmod(dest, 0o600)
        note = {**note, "file": dest.name, "time": stamp}
        atomic.write_json(dest.with_name(dest.name + ".json"), note, mode=0o600)
        log.warning("quarantined %s: %s", dest, note.get("reason"))
        return dest

    def quarantine_blob(self, sha256: str, reason: str, **note: Any) -> Path | None:
        """Move a blob out of ``blobs/`` into ``quarantine/``; None when it is not there."""
        path = self.blob_path(sha256)
        if not path.exists():
            return None
        self.state.delete(sha256)
        return self._quarantine_file(path, sha256, {"reason": reason, "expected_sha256": sha256, **note})

    def quarantined(self) -> list[dict[str, Any]]:
        out = []
        if self.quarantine_dir.is_dir():
            for f in sorted(self.quarantine_dir.glob("*.json")):
                with contextlib.suppress(OSError, ValueError):
                    out.append(json.loads(f.read_text()))
        return out

    # -- reading ---------------------------------------------------------------------
    def open_verified(self, sha256: str) -> BinaryIO:
        """Open a blob for reading; hash it on its first open (or after it changed)."""
        path = self.blob_path(sha256)
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            raise ArtefactNotFound(f"blob {sha256} is not in the store {self.root}",
                                   hint="fetch it first (the daemon's mirror job, or generating from the model)",
                                   sha256=sha256) from None
        try:
            st = os.fstat(fh.fileno())
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if self.state.get(sha256) == key:
                return fh
            digest, _ = hash_file(fh, self.chunk_size)
            if digest != sha256:
                raise BlobCorrupt(f"{path}: the blob no longer hashes to its name (it hashes to {digest}); "
                                  f"refusing to read it", hint="run `synthmed verify` to quarantine it, then fetch it again",
                                  sha256=sha256, actual=digest, path=path)
            fh.seek(0)
            self.state.put(sha256, st)
            return fh
        except BaseException:
            fh.close()
            raise

    def verify_blob(self, sha256: str) -> bool:
        try:
            with self.open_verified(sha256):
                return True
        except BlobCorrupt:
            return False

    def verify_all(self, progress: Callable[[str, bool], None] | None = None) -> VerifyReport:
        """Re-hash every blob (ignoring the remembered state); quarantine corrupt ones."""
        t0 = time.perf_counter()
        report = VerifyReport()
        if self.blobs_dir.is_dir():
            for sub in sorted(self.blobs_dir.iterdir()):
                entries = sorted(sub.iterdir()) if sub.is_dir() else [sub]
                for f in entries:
                    report.checked += 1
                    name = (sub.name + f.name) if sub.is_dir() else sub.name
                    if not (sub.is_dir() and _SHA_RE.match(name) and f.is_file() and not f.is_symlink()):
                        q = self._quarantine_file(f, "stray-" + f.name, {"reason": "not a blob (bad name or type)",
                                                                        "path": str(f)})
                        report.corrupt.append({"sha256": None, "path": str(f), "reason": "not a blob",
                                               "quarantined_to": str(q)})
                        continue
                    try:
                        with open(f, "rb") as fh:
                            st = os.fstat(fh.fileno())
                            digest, n = hash_file(fh, self.chunk_size)
                    except OSError as exc:
                        report.corrupt.append({"sha256": name, "path": str(f), "reason": f"unreadable: {exc}"})
                        continue
                    report.bytes += n
                    ok = digest == name
                    if ok:
                        report.ok += 1
                        self.state.put(name, st)
                    else:
                        qb = self.quarantine_blob(name, "blob corrupt on disk", actual_sha256=digest, size=n)
                        report.corrupt.append({"sha256": name, "path": str(f), "reason": f"hashes to {digest}",
                                               "quarantined_to": str(qb)})
                    if progress is not None:
                        progress(name, ok)
        report.seconds = round(time.perf_counter() - t0, 3)
        return report

    def remove(self, sha256: str) -> None:
        path = self.blob_path(sha256)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.state.delete(sha256)
