"""Only verified packages run: a record needs a pinned sha256 and its blob must hash to it."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import HashMismatch, Unverified
from ..hashing import hash_path
from ..records import Record

log = logging.getLogger(__name__)


def require_verified(record: Record) -> str:
    """The record's pinned sha256, or Unverified saying how to pin it."""
    if record.status == "yanked":
        from ..errors import RecordYanked

        raise RecordYanked(f"{record.ref} is yanked: {record.get('status_reason', 'no reason given')}",
                           hint="pick another version (`synthmed show ID` lists them)", model=record.ref)
    sha = record.sha256
    if not sha:
        raise Unverified(
            f"{record.ref} ({record.path}) is unverified: its package has no pinned sha256 "
            "($.package.artefact.sha256), so synthmed will not run its code",
            hint=f"an index maintainer pins it with `synthmed index pin {record.ref}`, then `synthmed sync`",
            model=record.ref,
        )
    return sha


def verify_blob(record: Record, blob: Path) -> str:
    """Hash ``blob`` and compare with the record's pin; HashMismatch with the fix otherwise."""
    sha = require_verified(record)
    got, _ = hash_path(blob)
    if got != sha:
        raise HashMismatch(
            f"{record.ref}: the package file {blob} does not match the pinned sha256 "
            f"(expected {sha}, got {got}); it will not be run",
            hint="run `synthmed verify` to re-hash the store and re-fetch corrupt blobs",
            model=record.ref, expected=sha, actual=got, path=str(blob),
        )
    return sha
