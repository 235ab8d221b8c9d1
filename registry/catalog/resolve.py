"""Federated resolution of model references.

A reference is ``id``, ``id@version``, ``upstream/id`` or ``upstream/id@version``.

- A bare id resolves by upstream priority (lower number first, then site.toml order):
  the first upstream that has the id owns it; the same id in a lower-priority upstream is
  *shadowed* (logged).
- Without a version, the latest non-yanked version (semver order; a release is preferred
  over pre-releases) of the owning upstream is served.
- ``id@version`` is served by the first upstream, by priority, that has that version.
- A yanked version is never served: :class:`RecordYanked` carries the reason (only
  ``synthmed show``, which serves nothing, looks one up with ``allow_yanked=True``).
- An unknown id is :class:`ModelNotFound` with "did you mean" the closest ids of the
  catalog, across its upstreams.
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import ModelNotFound, RecordYanked
from ..semver import is_version, version_key
from .entry import CatalogEntry

log = logging.getLogger(__name__)


class EntryRows(Protocol):
    """What resolution reads from a catalog (its models store,
    :class:`synthmed.registry.catalog.models.ModelStore`, is one)."""

    @property
    def path(self) -> Path: ...

    def rows_for_id(self, model_id: str, upstream: str | None = None) -> list[CatalogEntry]: ...

    def upstream_names(self) -> list[str]: ...

    def model_ids(self) -> list[str]: ...

_REF = re.compile(r"^(?:(?P<upstream>[a-z0-9][a-z0-9_-]{0,31})/)?(?P<id>[a-z0-9][a-z0-9._-]{2,63})(?:@(?P<version>[^@/\s]+))?$")


@dataclass(frozen=True)
class ModelRef:
    id: str
    version: str | None = None
    upstream: str | None = None

    def __str__(self) -> str:
        out = f"{self.upstream}/{self.id}" if self.upstream else self.id
        return f"{out}@{self.version}" if self.version else out


def parse_model_ref(ref: str) -> ModelRef:
    """Parse a model reference; ids are matched lower-cased (as medigan ids are imported)."""
    if not isinstance(ref, str):
        raise ModelNotFound(f"{ref!r} is not a model reference (a {type(ref).__name__}, not a string)",
                            hint="use ID, ID@VERSION, UPSTREAM/ID or UPSTREAM/ID@VERSION, e.g. public/ihc-patch-dcgan@1.0.0")
    text = ref.strip()
    m = _REF.match(text.lower() if "@" not in text else text.split("@", 1)[0].lower() + "@" + text.split("@", 1)[1])
    if not m:
        raise ModelNotFound(
            f"{ref!r} is not a model reference",
            hint="use ID, ID@VERSION, UPSTREAM/ID or UPSTREAM/ID@VERSION, e.g. public/ihc-patch-dcgan@1.0.0",
            ref=ref,
        )
    version = m.group("version")
    if version is not None and not is_version(version):
        raise ModelNotFound(f"{ref!r}: {version!r} is not a semantic version",
                            hint="versions look like 1.0.0 or 2.1.0-rc.1", ref=ref)
    return ModelRef(id=m.group("id"), version=version, upstream=m.group("upstream"))


def _yanked(entry: CatalogEntry, ref: str) -> RecordYanked:
    reason = entry.status_reason or "no reason given"
    return RecordYanked(
        f"{entry.qualified_ref} is yanked and is never served: {reason}",
        hint=f"use another version (`synthmed show {entry.id}` lists them), or the latest with `{entry.id}`",
        ref=ref, reason=reason, entry=entry,
    )


def close_ids(model_id: str, known: list[str], n: int = 3) -> list[str]:
    """The ids of ``known`` closest to ``model_id`` (difflib), best first; an id that
    contains the text asked for, or is contained in it, counts as close too."""
    close = difflib.get_close_matches(model_id, known, n=n, cutoff=0.6)
    if len(close) < n and len(model_id) >= 3:
        close += [k for k in sorted(known) if k not in close and (model_id in k or k in model_id)][:n - len(close)]
    return close


def resolve_ref(catalog: EntryRows, ref: str, *, allow_yanked: bool = False) -> CatalogEntry:
    """Resolve ``ref`` against the catalog (see the module docstring for the rules).

    ``allow_yanked=True`` returns a yanked version instead of raising :class:`RecordYanked`
    (``id@version`` of a yanked version, or a bare id whose versions are all yanked): for
    showing it, never for running it."""
    r = parse_model_ref(ref)
    rows = catalog.rows_for_id(r.id, r.upstream)
    if not rows:
        known = catalog.upstream_names()
        if r.upstream and r.upstream not in known:
            raise ModelNotFound(f"{ref!r}: this site has no upstream named {r.upstream!r}",
                                hint=f"known upstreams: {', '.join(known) or 'none (run `synthmed init`)'}", ref=ref)
        where = f"upstream {r.upstream!r}" if r.upstream else "any upstream of this site"
        close = close_ids(r.id, catalog.model_ids())
        hint = "`synthmed search TEXT` finds models; `synthmed sync` fetches new records"
        if close:
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " + hint
        raise ModelNotFound(f"no model {r.id!r} in {where} (catalog {catalog.path})", hint=hint, ref=ref,
                            suggestions=close)
    upstreams: list[str] = []
    for e in rows:  # rows come ordered by priority, then site.toml order
        if e.upstream not in upstreams:
            upstreams.append(e.upstream)
    if r.version is not None:
        having = [e for e in rows if e.version == r.version]
        if not having:
            versions = sorted({e.version for e in rows if e.upstream == upstreams[0]}, key=version_key)
            raise ModelNotFound(f"{ref!r}: no version {r.version} of {r.id!r}",
                                hint=f"versions of {upstreams[0]}/{r.id}: {', '.join(versions)}", ref=ref)
        chosen = having[0]
        others = sorted({e.upstream for e in having[1:]})
        if others:
            log.info("%s: %s/%s@%s shadows the same version in %s", ref, chosen.upstream, r.id, r.version,
                     ", ".join(others))
        if chosen.status == "yanked" and not allow_yanked:
            raise _yanked(chosen, ref)
    else:
        owner = upstreams[0]
        if len(upstreams) > 1:
            log.info("%s: upstream %r (priority %d) shadows %s", r.id, owner, rows[0].priority,
                     ", ".join(repr(u) for u in upstreams[1:]))
        mine = [e for e in rows if e.upstream == owner]
        live = [e for e in mine if e.status != "yanked"]
        if not live and not allow_yanked:
            raise _yanked(max(mine, key=lambda e: version_key(e.version)), ref)
        chosen = max(live or mine, key=lambda e: version_key(e.version))
    chosen.shadows = tuple(u for u in upstreams if u != chosen.upstream)
    if chosen.status == "deprecated":
        log.warning("%s is deprecated: %s", chosen.qualified_ref, chosen.status_reason or "no reason given")
    return chosen
