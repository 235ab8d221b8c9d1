"""The published datasets' tables (``synthmed-dataset/1`` records, #24): ``datasets`` (one
row per upstream + id + version, with the record JSON and which version is served),
``datasets_fts`` (full text over every row: the id and its parts, title, summary,
description, modality, anatomy, tags and the model), ``dataset_accepted`` (the digest each
version was bound to at its first appearance on the upstream's branch:
:func:`~synthmed.registry.dataset_records.immutable_digest`) and ``dataset_sync`` (the
commit through which an upstream's datasets were applied, so a migrated or rebuilt
catalog reads them all once). Written by the sync (``daemon/dataset_sync.py``); read by
``synthmed dataset``, search and ``serve``. Generation 9 of the layout.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .. import vocabulary
from ..dataset_records import DatasetRecord
from ..errors import DatasetNotFound, RecordYanked
from ..semver import version_key
from .base import Handle, Qualified, dict_rows, refresh_latest
from .models import id_terms
from .resolve import close_ids, parse_model_ref
from .search import fts_query

DDL = (
    """CREATE TABLE IF NOT EXISTS datasets (
        pk INTEGER PRIMARY KEY, upstream TEXT NOT NULL, id TEXT NOT NULL, version TEXT NOT NULL,
        path TEXT NOT NULL, commit_sha TEXT NOT NULL, status TEXT NOT NULL, status_reason TEXT,
        is_latest INTEGER NOT NULL DEFAULT 0, sha256 TEXT NOT NULL, size INTEGER NOT NULL, license TEXT,
        model_id TEXT NOT NULL, model_version TEXT NOT NULL, model_sha256 TEXT NOT NULL, verdict TEXT,
        count INTEGER NOT NULL, modality TEXT, anatomy TEXT, record TEXT NOT NULL,
        UNIQUE (upstream, id, version))""",
    "CREATE INDEX IF NOT EXISTS datasets_id ON datasets (id)",
    "CREATE INDEX IF NOT EXISTS datasets_path ON datasets (upstream, path)",
    "CREATE INDEX IF NOT EXISTS datasets_model ON datasets (model_id, model_version)",
    "CREATE INDEX IF NOT EXISTS datasets_sha ON datasets (sha256)",
    """CREATE VIRTUAL TABLE IF NOT EXISTS datasets_fts USING fts5(ident, title, summary, description, modality,
        anatomy, tags, model, tokenize='unicode61 remove_diacritics 2')""",
    """CREATE TABLE IF NOT EXISTS dataset_accepted (
        upstream TEXT NOT NULL, id TEXT NOT NULL, version TEXT NOT NULL, digest TEXT NOT NULL,
        commit_sha TEXT NOT NULL, path TEXT NOT NULL, blob TEXT NOT NULL, PRIMARY KEY (upstream, id, version))""",
    "CREATE TABLE IF NOT EXISTS dataset_sync (upstream TEXT PRIMARY KEY, commit_sha TEXT NOT NULL)",
)

_SELECT = """SELECT d.*, u.accepted_commit AS index_commit, u.subfolder, u.priority, u.ord,
    a.state AS artefact_state FROM datasets d JOIN upstreams u ON u.name = d.upstream
    LEFT JOIN artefacts a ON a.sha256 = d.sha256"""
_ORDER = " ORDER BY u.priority, u.ord, d.upstream, d.id"


@dataclass
class DatasetEntry(Qualified):
    """One dataset version as the catalog serves it, with what is needed to fetch it."""

    upstream: str
    id: str
    version: str
    record: DatasetRecord
    index_repo: Path
    index_commit: str
    index_subfolder: str
    artefact_state: str  # missing | verified | corrupt
    status: str = "active"
    status_reason: str | None = None
    priority: int = 100
    path: str = ""
    is_latest: bool = False
    shadows: tuple[str, ...] = field(default=())

    @property
    def model_ref(self) -> str:
        """The model version that made it, in this dataset's upstream."""
        return f"{self.upstream}/{self.record.model_ref}"

    @property
    def mirrored(self) -> bool:
        return self.artefact_state == "verified"

    def summary(self) -> dict[str, Any]:
        """What ``dataset list --json`` prints of it."""
        data = self.record.data
        gen = self.record.generation
        return {"ref": self.qualified_ref, "upstream": self.upstream, "id": self.id, "version": self.version,
                "title": data.get("title"), "model": self.record.model_ref,
                "model_sha256": self.record.model["sha256"], "count": gen["count"], "outputs": list(gen["outputs"]),
                "file_format": gen["file_format"], "license": data.get("license"),
                "audit": data["audit"]["verdict"], "status": self.status, "sha256": self.record.sha256,
                "size": self.record.artefact["size"], "mirrored": self.mirrored, "artefact_state": self.artefact_state,
                "modality": list(data.get("modality", [])), "anatomy": list(data.get("anatomy", []))}


def _text(value: Any) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value or "")


def _facet_text(field: str, terms: Any) -> str:
    """What the modality/anatomy filter matches: `` | ``-separated, lower-cased, the
    record's own words and the vocabulary's codes or terms they mean."""
    terms = [str(t) for t in terms or []]
    known = vocabulary.modality_codes(terms) if field == "modality" else vocabulary.anatomy_terms(terms)
    return "|" + "|".join(dict.fromkeys(t.lower() for t in [*terms, *known])) + "|"


def _facet_keys(field: str, value: str) -> list[str]:
    known = vocabulary.modality_code(value) if field == "modality" else vocabulary.anatomy_term(value)
    return list(dict.fromkeys(v.lower() for v in (value, known) if v))


class DatasetStore:
    """Published datasets of every upstream (``catalog.datasets``)."""

    def __init__(self, handle: Handle) -> None:
        self._h = handle

    # -- writing --------------------------------------------------------------------------

    def _delete_pks(self, pks: Sequence[int]) -> None:
        for pk in pks:
            self._h.conn.execute("DELETE FROM datasets_fts WHERE rowid = ?", (pk,))
            self._h.conn.execute("DELETE FROM datasets WHERE pk = ?", (pk,))

    def upsert(self, upstream: str, path: str, record: DatasetRecord, commit: str) -> None:
        """Store one valid dataset record (replacing the same upstream/id/version or path)."""
        self._h.writable()
        conn = self._h.conn
        data, gen, model = record.data, record.generation, record.model
        old = [r[0] for r in conn.execute(
            "SELECT pk FROM datasets WHERE upstream = ? AND id = ? AND version = ? "
            "UNION SELECT pk FROM datasets WHERE upstream = ? AND path = ?",
            (upstream, record.id, record.version, upstream, path))]
        self._delete_pks(old)
        cur = conn.execute(
            """INSERT INTO datasets (upstream, id, version, path, commit_sha, status, status_reason, sha256, size,
                license, model_id, model_version, model_sha256, verdict, count, modality, anatomy, record)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            (upstream, record.id, record.version, path, commit, record.status, data.get("status_reason"),
             record.sha256, int(record.artefact["size"]), data.get("license"), model["id"], model["version"],
             model["sha256"], data["audit"]["verdict"], int(gen["count"]),
             _facet_text("modality", data.get("modality")), _facet_text("anatomy", data.get("anatomy")),
             json.dumps(data, sort_keys=True, separators=(",", ":"))))
        conn.execute("INSERT INTO datasets_fts (rowid, ident, title, summary, description, modality, anatomy, tags, "
                     "model) VALUES (?,?,?,?,?,?,?,?,?)",
                     (cur.lastrowid, id_terms(record.id), data.get("title", ""), data.get("summary", ""),
                      data.get("description", ""), vocabulary.search_text("modality", data.get("modality") or []),
                      vocabulary.search_text("anatomy", data.get("anatomy") or []),
                      _text(data.get("tags")), id_terms(str(model["id"]))))

    def delete_path(self, upstream: str, path: str) -> str | None:
        """Remove the dataset stored from ``path``; returns its id, if there was one."""
        self._h.writable()
        rows = self._h.conn.execute("SELECT pk, id FROM datasets WHERE upstream = ? AND path = ?",
                                    (upstream, path)).fetchall()
        self._delete_pks([r[0] for r in rows])
        return str(rows[0][1]) if rows else None

    def held_at_path(self, upstream: str, path: str) -> str | None:
        """The id stored from ``path``, if any."""
        row = self._h.conn.execute("SELECT id FROM datasets WHERE upstream = ? AND path = ?",
                                   (upstream, path)).fetchone()
        return str(row[0]) if row else None

    def clear_upstream(self, upstream: str) -> None:
        """Forget every dataset of ``upstream``, its bindings and how far it was applied."""
        self._h.writable()
        pks = [r[0] for r in self._h.conn.execute("SELECT pk FROM datasets WHERE upstream = ?", (upstream,))]
        self._delete_pks(pks)
        self._h.conn.execute("DELETE FROM dataset_accepted WHERE upstream = ?", (upstream,))
        self._h.conn.execute("DELETE FROM dataset_sync WHERE upstream = ?", (upstream,))

    def refresh_latest(self, upstream: str, ids: Iterable[str]) -> None:
        """Mark the latest non-yanked version of each id (semver order) as ``is_latest``."""
        refresh_latest(self._h, "datasets", upstream, ids)

    # -- bindings (what each version was first accepted as) -------------------------------

    def bindings(self, upstream: str) -> dict[tuple[str, str], dict[str, Any]]:
        rows = dict_rows(self._h.conn.execute("SELECT * FROM dataset_accepted WHERE upstream = ?", (upstream,)))
        return {(r["id"], r["version"]): r for r in rows}

    def bind(self, upstream: str, dataset_id: str, version: str, *, digest: str, commit: str, path: str,
             blob: str) -> None:
        self._h.writable()
        self._h.conn.execute(
            "INSERT OR IGNORE INTO dataset_accepted (upstream, id, version, digest, commit_sha, path, blob) "
            "VALUES (?,?,?,?,?,?,?)", (upstream, dataset_id, version, digest, commit, path, blob))

    def synced_commit(self, upstream: str) -> str | None:
        """The commit through which the upstream's datasets were applied and bound."""
        row = self._h.conn.execute("SELECT commit_sha FROM dataset_sync WHERE upstream = ?", (upstream,)).fetchone()
        return str(row[0]) if row else None

    def set_synced(self, upstream: str, commit: str) -> None:
        self._h.writable()
        self._h.conn.execute("INSERT OR REPLACE INTO dataset_sync (upstream, commit_sha) VALUES (?, ?)",
                             (upstream, commit))

    # -- reading --------------------------------------------------------------------------

    def needed_blobs(self) -> set[str]:
        """sha256 of every dataset artefact a non-yanked dataset record needs."""
        return {r[0] for r in self._h.conn.execute("SELECT DISTINCT sha256 FROM datasets WHERE status != 'yanked'")}

    def _entries(self, sql: str, args: Sequence[Any] = ()) -> list[DatasetEntry]:
        cur = self._h.conn.execute(sql, args)
        cols = [c[0] for c in cur.description]
        out = []
        for row in cur.fetchall():
            r = dict(zip(cols, row))
            data = json.loads(r["record"])
            out.append(DatasetEntry(
                upstream=r["upstream"], id=r["id"], version=r["version"],
                record=DatasetRecord(data=data, path=f"{r['upstream']}:{r['path']}"),
                index_repo=self._h.repo_path(r["upstream"]), index_commit=r["index_commit"] or r["commit_sha"],
                index_subfolder=r["subfolder"] or "", artefact_state=r["artefact_state"] or "missing",
                status=r["status"], status_reason=r["status_reason"], priority=r["priority"], path=r["path"],
                is_latest=bool(r["is_latest"])))
        return out

    def list_datasets(self, *, all_versions: bool = False) -> list[DatasetEntry]:
        """The served version of each dataset (every version with ``all_versions``)."""
        where = "" if all_versions else " WHERE d.is_latest = 1"
        return self._entries(_SELECT + where + _ORDER + ", d.version")

    def for_model(self, upstream: str, model_id: str) -> list[DatasetEntry]:
        """The served datasets made by any version of one upstream's model."""
        return self._entries(_SELECT + " WHERE d.is_latest = 1 AND d.upstream = ? AND d.model_id = ?" + _ORDER,
                             (upstream, model_id))

    def search(self, query: str = "", *, modality: str | None = None, anatomy: str | None = None,
               model: str | None = None, upstream: str | None = None, license: str | None = None,
               limit: int = 50) -> list[DatasetEntry]:
        """Served datasets matching the text (FTS over id, title, summary, description,
        modality, anatomy, tags and the model's id) and the filters (case-insensitive)."""
        sql, args = _SELECT + " WHERE d.is_latest = 1", []
        match = fts_query(query) if query.strip() else ""
        if match:
            sql += " AND d.pk IN (SELECT rowid FROM datasets_fts WHERE datasets_fts MATCH ?)"
            args.append(match)
        for col, value in (("modality", modality), ("anatomy", anatomy)):
            if value:
                keys = _facet_keys(col, value)
                sql += " AND (" + " OR ".join(f"d.{col} LIKE ?" for _ in keys) + ")"
                args.extend(f"%|{k}|%" for k in keys)
        if model:
            sql += " AND d.model_id = ?"
            args.append(model.lower())
        if upstream:
            sql += " AND d.upstream = ?"
            args.append(upstream)
        if license:
            sql += " AND lower(d.license) = ?"
            args.append(license.lower())
        try:
            return self._entries(sql + _ORDER + " LIMIT ?", (*args, int(limit)))
        except sqlite3.OperationalError:  # a query FTS cannot parse matches nothing
            return []

    def resolve(self, ref: str, *, allow_yanked: bool = False) -> DatasetEntry:
        """``ID``, ``ID@VERSION``, ``UPSTREAM/ID`` or ``UPSTREAM/ID@VERSION``: by upstream
        priority, the latest non-yanked version when none is given (as model references)."""
        try:
            r = parse_model_ref(ref)
        except LookupError as exc:
            raise DatasetNotFound(str(getattr(exc, "message", exc)).replace("model", "dataset"),
                                  hint="use ID, ID@VERSION, UPSTREAM/ID or UPSTREAM/ID@VERSION") from None
        sql = _SELECT + " WHERE d.id = ?" + (" AND d.upstream = ?" if r.upstream else "") + _ORDER
        rows = self._entries(sql, (r.id, r.upstream) if r.upstream else (r.id,))
        if not rows:
            ids = [x[0] for x in self._h.conn.execute("SELECT DISTINCT id FROM datasets")]
            close = close_ids(r.id, ids)
            hint = "`synthmed dataset list` lists the datasets of this site; `synthmed sync` fetches new records"
            if close:
                hint = f"did you mean {' or '.join(repr(c) for c in close)}? " + hint
            where = f"upstream {r.upstream!r}" if r.upstream else "any upstream of this site"
            raise DatasetNotFound(f"no dataset {r.id!r} in {where} (catalog {self._h.path})", hint=hint)
        owner = rows[0].upstream
        if r.version is not None:
            having = [e for e in rows if e.version == r.version]
            if not having:
                versions = sorted({e.version for e in rows if e.upstream == owner}, key=version_key)
                raise DatasetNotFound(f"{ref!r}: no version {r.version} of dataset {r.id!r}",
                                      hint=f"versions of {owner}/{r.id}: {', '.join(versions)}")
            chosen = having[0]
        else:
            mine = [e for e in rows if e.upstream == owner]
            live = [e for e in mine if e.status != "yanked"]
            chosen = max(live or mine, key=lambda e: version_key(e.version))
        if chosen.status == "yanked" and not allow_yanked:
            raise RecordYanked(f"{chosen.qualified_ref} is yanked and is never served: "
                               f"{chosen.status_reason or 'no reason given'}",
                               hint=f"use another version (`synthmed dataset show {chosen.id}`)")
        chosen.shadows = tuple(sorted({e.upstream for e in rows if e.upstream != chosen.upstream}))
        return chosen

    def versions(self, upstream: str, dataset_id: str) -> list[DatasetEntry]:
        """Every version of one upstream's dataset, newest first."""
        rows = self._entries(_SELECT + " WHERE d.upstream = ? AND d.id = ?", (upstream, dataset_id))
        return sorted(rows, key=lambda e: version_key(e.version), reverse=True)
