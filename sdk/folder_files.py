"""The fixed files of an output folder (the sidecar, the manifest, the lock) and the
atomic text write both the sidecar and the manifest use."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SIDECAR = "synthmed.json"
SIDECAR_FORMAT = "synthmed-output/1"
MANIFEST = "synthmed.manifest.json"
MANIFEST_FORMAT = "synthmed-manifest/1"
#: the folder's lock file (shards and device workers of one run share the sidecar)
LOCK = ".synthmed.lock"


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the provenance is as readable as the samples
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
