"""The fixed files of an output folder (the sidecar, the manifest, the lock)."""

from __future__ import annotations

SIDECAR = "synthmed.json"
SIDECAR_FORMAT = "synthmed-output/1"
MANIFEST = "synthmed.manifest.json"
MANIFEST_FORMAT = "synthmed-manifest/1"
#: the folder's lock file (shards and device workers of one run share the sidecar)
LOCK = ".synthmed.lock"

