"""``synthmed cache ls`` and ``synthmed cache prune``: what the store and ``packages/`` hold, and
removing blobs (with their unpacked packages) by age, by a size cap, or because no record
needs them any more.

A pruned blob that a record still needs is marked ``missing`` in the catalog: a run fetches
it again on demand (unless the site is offline), and the daemon's next mirror job fetches
it again when the mirror policy selects it. An unneeded one is forgotten, as gc does.
A single-file package is a hard link to its blob (``registry/artefacts/packages_folder.py``), so it costs no
second copy; ``ls`` counts only the bytes a package holds beyond its blob.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from synthmed.registry.catalog import Catalog
from synthmed.registry.errors import ConfigError
from synthmed.registry.settings import Settings
from synthmed.registry.stamps import utcnow
from synthmed.registry.artefacts.store import Store
from synthmed.registry.artefacts.packages_folder import PackagesFolder

log = logging.getLogger(__name__)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str, where: str = "--max-size") -> int:
    """``500M``, ``10G``, ``2.5GiB``, ``1048576`` -> bytes (powers of 1024)."""
    m = _SIZE.match(str(text))
    if not m:
        raise ConfigError(f"{where} {text!r}: not a size", hint="e.g. 500M, 10G, 2.5GiB or a number of bytes")
    return int(float(m.group(1)) * 1024 ** " kmgt".index((m.group(2) or " ").lower()))


@dataclass
class CacheEntry:
    sha256: str
    size: int
    package_bytes: int  # what packages/<sha256>/ adds beyond the blob (hard links to it are free)
    fetched_at: str
    age_days: float
    needed_by: list[str] = field(default_factory=list)  # non-yanked model and dataset records that pin it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _package_bytes(settings: Settings, sha: str, blob_ino: tuple[int, int]) -> int:
    root = settings.packages_dir / sha
    total = 0
    if not root.is_dir() or root.is_symlink():
        return 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) != blob_ino:
                total += st.st_size
    return total


def cache_entries(settings: Settings, catalog: Catalog, now: datetime | None = None) -> list[CacheEntry]:
    """Every blob of the store, oldest first."""
    now = now or datetime.now(timezone.utc)
    store = Store(settings.store_dir)
    users: dict[str, list[str]] = {}
    for e in catalog.models.list_models(all_versions=True):
        if e.status != "yanked" and e.record.sha256:
            users.setdefault(e.record.sha256, []).append(e.qualified_ref)
    for d in catalog.datasets.list_datasets(all_versions=True):  # a mirrored dataset is needed as a model is
        if d.status != "yanked":
            users.setdefault(d.record.sha256, []).append(f"dataset {d.qualified_ref}")
    out = []
    for sha in store.iter_blobs():
        st = store.blob_path(sha).stat()
        fetched = datetime.fromtimestamp(st.st_mtime, timezone.utc)
        out.append(CacheEntry(sha, st.st_size, _package_bytes(settings, sha, (st.st_dev, st.st_ino)),
                              fetched.isoformat(timespec="seconds"),
                              round((now - fetched).total_seconds() / 86400, 2), sorted(users.get(sha, []))))
    return sorted(out, key=lambda c: (c.fetched_at, c.sha256))


def select_prune(entries: list[CacheEntry], *, older_than_days: float | None = None,
                 max_bytes: int | None = None, unused: bool = False) -> list[CacheEntry]:
    """What a prune removes: unneeded blobs (``unused``), blobs older than ``older_than_days``,
    then the oldest (unneeded ones first) until blobs and packages fit in ``max_bytes``."""
    if older_than_days is None and max_bytes is None and not unused:
        raise ConfigError("cache prune: say what to remove", hint="give --unused, --older-than DAYS or --max-size SIZE")
    if older_than_days is not None and older_than_days < 0:
        raise ConfigError(f"--older-than {older_than_days}: must be 0 or more", hint="e.g. --older-than 30")
    if max_bytes is not None and max_bytes < 0:
        raise ConfigError(f"--max-size {max_bytes}: must be 0 or more", hint="e.g. --max-size 10G")
    chosen: dict[str, CacheEntry] = {}
    for c in entries:
        if (unused and not c.needed_by) or (older_than_days is not None and c.age_days > older_than_days):
            chosen[c.sha256] = c
    if max_bytes is not None:
        left = [c for c in entries if c.sha256 not in chosen]
        total = sum(c.size + c.package_bytes for c in left)
        for c in sorted(left, key=lambda c: (bool(c.needed_by), c.fetched_at)):
            if total <= max_bytes:
                break
            chosen[c.sha256] = c
            total -= c.size + c.package_bytes
    return [c for c in entries if c.sha256 in chosen]


def prune(settings: Settings, catalog: Catalog, victims: list[CacheEntry]) -> None:
    """Remove each blob and its unpacked package; the catalog says what is gone (the caller
    holds the site lock)."""
    store = Store(settings.store_dir)
    started = utcnow()
    for c in victims:
        store.remove(c.sha256)
        PackagesFolder(settings.packages_dir).remove(c.sha256, drop_manifest=True)
        with catalog.transaction():
            if c.needed_by:
                catalog.artefacts.set_artefact(c.sha256, state="missing", size=c.size,
                                               reason="pruned from the cache by `synthmed cache prune`")
            else:
                catalog.artefacts.delete_artefact(c.sha256)
        log.info("cache prune: removed %s (%d bytes)%s", c.sha256, c.size,
                 f", needed by {', '.join(c.needed_by)}" if c.needed_by else "")
    freed = sum(c.size + c.package_bytes for c in victims)
    with catalog.transaction():
        catalog.jobs.record_run("prune", "ok", reason=f"{len(victims)} blob(s) removed, {freed} bytes freed",
                                started=started, changed=len(victims))
