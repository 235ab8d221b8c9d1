"""What synthmed stamps on what it writes: its version and the current UTC time.

One definition each, for the catalog's time columns, test reports, output folders and
DICOM files, and ``synthmed.__version__``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache


def utcnow() -> str:
    """The current time as an ISO 8601 UTC string (what every time column holds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@lru_cache(maxsize=1)
def synthmed_version() -> str:
    """The installed synthmed's version (``0+unknown`` in a source tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version  # only when asked: it is slow to import

    try:
        return version("synthmed")
    except PackageNotFoundError:
        return "0+unknown"
