"""One model version as the catalog serves it (:class:`CatalogEntry`).

Its own module so that reference resolution (:mod:`.resolve`) and the models store
(:mod:`.models`) both use it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..records import Record
from .base import Qualified


@dataclass
class CatalogEntry(Qualified):
    """One model version as the catalog serves it, with what is needed to fetch it."""

    upstream: str
    id: str
    version: str
    record: Record
    index_repo: Path
    index_commit: str
    index_subfolder: str
    artefact_state: str  # missing | verified | corrupt | unverified
    status: str = "active"
    status_reason: str | None = None
    priority: int = 100
    path: str = ""
    score: float | None = None  # the ranking metric's value, when ranked
    shadows: tuple[str, ...] = field(default=())  # lower-priority upstreams with the same id

    def as_dict(self, full: bool = False) -> dict[str, Any]:
        data = self.record.data
        out: dict[str, Any] = {
            "ref": self.qualified_ref,
            "upstream": self.upstream,
            "id": self.id,
            "version": self.version,
            "title": data.get("title"),
            "summary": data.get("summary"),
            "status": self.status,
            "status_reason": self.status_reason,
            "modality": list(data.get("modality", [])),
            "anatomy": list(data.get("anatomy", [])),
            "architecture": dict(data.get("architecture", {})),
            "license": data.get("license"),
            "artefact_state": self.artefact_state,
            "index_commit": self.index_commit,
        }
        if self.score is not None:
            out["score"] = self.score
        if full:
            out["index_repo"] = str(self.index_repo)
            out["index_subfolder"] = self.index_subfolder
            out["path"] = self.path
            out["record"] = dict(data)
        return out
