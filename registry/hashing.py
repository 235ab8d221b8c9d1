"""sha256 of files: the one reader used by the store, packages, bundles and the runner."""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

CHUNK = 4 << 20


def hash_file(fh: BinaryIO, chunk: int = CHUNK) -> tuple[str, int]:
    """``(sha256 hex digest, bytes read)`` of an open binary file, read into one reused buffer."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    mv = memoryview(buf)
    n_total = 0
    while True:
        n = fh.readinto(mv)  # type: ignore[attr-defined]
        if not n:
            break
        h.update(mv[:n])
        n_total += n
    return h.hexdigest(), n_total


def hash_path(path: str | os.PathLike[str], chunk: int = CHUNK) -> tuple[str, int]:
    """``(sha256 hex digest, size)`` of the file at ``path``."""
    with open(path, "rb", buffering=0) as fh:
        return hash_file(fh, chunk)  # type: ignore[arg-type]
