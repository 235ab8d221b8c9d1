"""The federation's tables: ``upstreams`` (one row per upstream: configuration, the last
accepted commit, the last attempt and its outcome) and ``accepted_versions`` (every
version each upstream's branch ever carried, with the digests of its immutable fields as
first accepted; kept when the file is deleted: see :mod:`synthmed.registry.accepted`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Iterable

from ..accepted import AcceptedVersion
from .base import Handle, dict_row, dict_rows
from .models import ModelStore

DDL = (
    """CREATE TABLE IF NOT EXISTS upstreams (
        name TEXT PRIMARY KEY, url TEXT, branch TEXT, subfolder TEXT NOT NULL DEFAULT '',
        priority INTEGER NOT NULL DEFAULT 100, ord INTEGER NOT NULL DEFAULT 0,
        accepted_commit TEXT, accepted_at TEXT, commit_time TEXT,
        last_attempt TEXT, last_status TEXT, last_reason TEXT, bound_commit TEXT)""",
    # every version an upstream's branch ever carried, with the digests of its immutable
    # fields as first accepted (registry/accepted.py); survives deletions of the file
    """CREATE TABLE IF NOT EXISTS accepted_versions (
        upstream TEXT NOT NULL, id TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT, size INTEGER,
        package TEXT NOT NULL, package_unpinned TEXT NOT NULL, inputs TEXT NOT NULL, outputs TEXT NOT NULL,
        commit_sha TEXT NOT NULL, path TEXT NOT NULL, PRIMARY KEY (upstream, id, version))""",
)


class FederationStore:
    """Upstreams and the versions each one ever carried (``catalog.federation``)."""

    def __init__(self, handle: Handle, models: ModelStore) -> None:
        self._h = handle
        self._models = models

    # -- upstreams ----------------------------------------------------------------------

    def upstream_rows(self) -> list[dict[str, Any]]:
        return dict_rows(self._h.conn.execute("SELECT * FROM upstreams ORDER BY priority, ord, name"))

    def upstream_row(self, name: str) -> dict[str, Any] | None:
        return dict_row(self._h.conn.execute("SELECT * FROM upstreams WHERE name = ?", (name,)))

    def put_upstream(self, name: str, **fields: Any) -> None:
        """Insert or update one upstream's row (only the given fields change)."""
        self._h.writable()
        conn = self._h.conn
        if self.upstream_row(name) is None:
            conn.execute("INSERT INTO upstreams (name) VALUES (?)", (name,))
        if fields:
            cols = ", ".join(f"{k} = ?" for k in fields)
            conn.execute(f"UPDATE upstreams SET {cols} WHERE name = ?", (*fields.values(), name))

    def drop_upstream(self, name: str) -> int:
        """Forget an upstream and every record of it; returns the number of records removed."""
        self._h.writable()
        removed = self._models.clear_upstream_models(name)
        self._h.conn.execute("DELETE FROM accepted_versions WHERE upstream = ?", (name,))
        self._h.conn.execute("DELETE FROM upstreams WHERE name = ?", (name,))
        return removed

    def repo_path(self, upstream: str) -> Path:
        """Where the upstream's git mirror lives (``<site>/upstreams/<name>``)."""
        return self._h.repo_path(upstream)

    # -- accepted versions (registry/accepted.py) ------------------------------------------

    def accepted_versions(self, upstream: str,
                          keys: Collection[tuple[str, str]] | None = None) -> dict[tuple[str, str], AcceptedVersion]:
        """The bound immutable fields of every version ``upstream`` ever carried, or of the
        ``(id, version)`` among ``keys`` (one primary-key probe each: what an incremental
        sync reads, whatever the number of versions)."""
        if keys is not None and len(keys) < 5000:
            conn = self._h.conn
            rows = []
            for model_id, version in keys:
                rows += dict_rows(conn.execute("SELECT * FROM accepted_versions WHERE upstream = ? AND id = ? "
                                               "AND version = ?", (upstream, model_id, version)))
            return {v.key: v for v in (AcceptedVersion.from_row(r) for r in rows)}
        rows = dict_rows(self._h.conn.execute("SELECT * FROM accepted_versions WHERE upstream = ?", (upstream,)))
        if keys is not None:
            wanted = set(keys)
            rows = [r for r in rows if (r["id"], r["version"]) in wanted]
        found = (AcceptedVersion.from_row(r) for r in rows)
        return {v.key: v for v in found}

    def put_accepted(self, upstream: str, versions: Iterable[AcceptedVersion]) -> None:
        self._h.writable()
        rows = [v.as_row(upstream) for v in versions]
        if rows:
            cols = list(rows[0])
            self._h.conn.executemany(
                f"INSERT OR REPLACE INTO accepted_versions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [tuple(r[c] for c in cols) for r in rows])

    def clear_accepted(self, upstream: str) -> None:
        self._h.writable()
        self._h.conn.execute("DELETE FROM accepted_versions WHERE upstream = ?", (upstream,))
