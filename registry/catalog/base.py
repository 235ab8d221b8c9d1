"""What every store of the catalog shares: one connection, how it was opened, and the
row helpers. A store writes only its own tables (a read may join another store's)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import CatalogError
from ..semver import version_key


@dataclass(frozen=True)
class Handle:
    """The open catalog as the stores see it: the connection (one for all of them, so one
    :meth:`Catalog.transaction <synthmed.registry.catalog.Catalog.transaction>` covers
    every store), the file and whether it was opened read-only."""

    conn: sqlite3.Connection
    path: Path
    readonly: bool

    @property
    def site_home(self) -> Path:
        return self.path.parent

    def writable(self) -> None:
        """Refuse a write on a read-only catalog."""
        if self.readonly:
            raise CatalogError(f"the catalog {self.path} is open read-only",
                               hint="only the daemon (or `synthmed sync`) writes the catalog")

    def repo_path(self, upstream: str) -> Path:
        """Where the upstream's git mirror lives (``<site>/upstreams/<name>``)."""
        return self.site_home / "upstreams" / upstream


class Qualified:
    """``ref`` (``id@version``) and ``qualified_ref`` (``upstream/id@version``) of a catalog
    entry: model and dataset entries alike."""

    upstream: str
    id: str
    version: str

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def qualified_ref(self) -> str:
        return f"{self.upstream}/{self.id}@{self.version}"


#: the tables whose rows carry ``is_latest`` (:func:`refresh_latest`)
LATEST_TABLES = ("models", "datasets")


def refresh_latest(h: Handle, table: str, upstream: str, ids: Iterable[str]) -> None:
    """Mark the latest non-yanked version of each id of ``table`` (semver order) as
    ``is_latest``, writing only the rows that change."""
    if table not in LATEST_TABLES:
        raise ValueError(f"no is_latest in table {table!r}")
    h.writable()
    conn = h.conn
    for item_id in set(ids):
        rows = conn.execute(f"SELECT pk, version, status FROM {table} WHERE upstream = ? AND id = ?",
                            (upstream, item_id)).fetchall()
        live = [r for r in rows if r[2] != "yanked"]
        latest = max(live, key=lambda r: version_key(r[1]))[0] if live else None
        for pk, _, _ in rows:
            flag = 1 if pk == latest else 0
            conn.execute(f"UPDATE {table} SET is_latest = ? WHERE pk = ? AND is_latest != ?", (flag, pk, flag))


def dict_rows(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    """Every row of ``cur`` as a column -> value dict."""
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def dict_row(cur: sqlite3.Cursor) -> dict[str, Any] | None:
    """The next row of ``cur`` as a dict, or None."""
    row = cur.fetchone()
    return dict(zip([c[0] for c in cur.description], row)) if row else None
