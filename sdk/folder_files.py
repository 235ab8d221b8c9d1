"""The fixed files of an output folder (the sidecar, the manifest) and where the sidecar
of each file layout lives."""

from __future__ import annotations

from pathlib import Path

SIDECAR = "synthmed.json"
SIDECAR_FORMAT = "synthmed-output/1"
MANIFEST = "synthmed.manifest.json"
MANIFEST_FORMAT = "synthmed-manifest/1"


def sidecar_path(folder: Path, layout: str = "synthmed") -> Path:
    """Where the provenance sidecar of an output folder lives: ``<folder>/synthmed.json``
    for synthmed's layout; beside the folder, ``<folder>.synthmed.json``, for medigan's,
    whose folder holds nothing but the images (a medigan script opens every file in it as
    an image)."""
    if layout == "medigan":
        return folder.parent / f"{folder.name}.{SIDECAR}"
    return folder / SIDECAR


def lock_path(folder: Path, layout: str = "synthmed") -> Path:
    """The file the sidecar's updates are serialised on (an ``fcntl`` lock; the file holds
    nothing): ``<folder>/.synthmed.lock`` for synthmed's layout, ``.<folder>.synthmed.lock``
    beside the folder (next to its sidecar) for medigan's, so its folder holds only images.
    It is a second object because the folder itself carries the run lock (a shared ``flock``
    held from open to close), which the sidecar's exclusive lock must not contend with."""
    if layout == "medigan":
        return folder.parent / f".{folder.name}.synthmed.lock"
    return folder / ".synthmed.lock"
