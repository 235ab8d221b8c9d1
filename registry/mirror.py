"""Make a record's package available locally: fetch, verify, unpack.

Used by the daemon's mirror job and by the SDK on demand.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .errors import BlobCorrupt, SizeMismatch, Unverified
from .records import Record
from .settings import Settings
from .sources.base import SourceContext, last_path_part
from .store import Store
from .unpack import OCTET, check_package, remove_package, unpack_package

log = logging.getLogger(__name__)


def package_filename(record: Record) -> str:
    """For a single-file (``application/octet-stream``) artefact: its file name, the last
    path part of the first source that names one."""
    for uri in record.sources:
        if uri.startswith("mirror:"):
            continue
        name = last_path_part(uri)
        if name:
            return name
    return "artefact.bin"


def ensure_package(record: Record, settings: Settings, ctx: SourceContext) -> Path:
    """Return ``packages/<sha256>/`` for the record, fetching and unpacking it if needed.

    Refuses unverified records (no pinned sha256) with :class:`Unverified`.
    """
    sha = record.sha256
    if not sha:
        raise Unverified(
            f"{record.ref} ({record.path}) has no pinned sha256: it is searchable but never executed",
            hint=f"pin it: `synthmed index pin {record.ref}` in the index, then sync", ref=record.ref)
    pkg = settings.packages_dir / sha
    if pkg.is_dir():
        problem = check_package(settings.packages_dir, sha)
        if problem is None:
            return pkg
        # the unpacked copy is not what the verified blob holds: never run it
        log.warning("%s: the unpacked package %s changed on disk (%s); unpacking it again from the verified blob",
                    record.ref, pkg, problem)
        remove_package(settings.packages_dir, sha)
    store = Store(settings.store_dir)
    media_type = str(record.artefact.get("media_type", "application/zip"))
    for attempt in (1, 2):
        result = store.fetch(sha, record.size, record.sources, ctx)
        try:
            with store.open_verified(sha):
                pass
        except BlobCorrupt as exc:
            store.quarantine_blob(sha, "blob corrupt on disk (found on open)", actual_sha256=getattr(exc, "actual", None))
            if attempt == 2:
                raise
            log.warning("%s: %s; fetching it again", record.ref, exc.message)
            continue
        if record.size is not None and result.size != record.size:
            # a blob hashes to its name, so this means the record's size is wrong
            raise SizeMismatch(
                f"{record.ref} ({record.path}): the blob {sha} has {result.size} bytes but the record declares "
                f"{record.size}", hint="the record's package.artefact.size is wrong; fix it in the index",
                ref=record.ref)
        break
    filename = package_filename(record) if media_type == OCTET else None
    return unpack_package(store.blob_path(sha), settings.packages_dir, sha, media_type, filename=filename)
