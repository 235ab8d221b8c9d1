"""What every store of the catalog shares: one connection, how it was opened, and the
row helpers. A store writes only its own tables (a read may join another store's)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CatalogError


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


def dict_rows(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    """Every row of ``cur`` as a column -> value dict."""
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def dict_row(cur: sqlite3.Cursor) -> dict[str, Any] | None:
    """The next row of ``cur`` as a dict, or None."""
    row = cur.fetchone()
    return dict(zip([c[0] for c in cur.description], row)) if row else None
