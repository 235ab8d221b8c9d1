"""What an index has accepted: the immutable fields of every version that ever appeared on
its branch, read from the branch's git history.

A version's package, inputs and outputs are bound the first time the version appears on
the branch (walking the first-parent history, oldest first, a commit compared with its
first parent), and stay bound when the file is later deleted: a version re-added later,
or changed in place, must carry the same immutable fields. The one allowed change is a
*pin*: a version first seen without ``package.artefact.sha256`` may gain its ``sha256``
(and ``size``) once, everything else equal; the pinned fields are then the bound ones.

Only valid records bind a version (an invalid file is what a site skips anyway). Sites
keep the result in the catalog's ``accepted_versions`` table, updated at each sync from
the new commits and recomputed by ``synthmed catalog rebuild``; ``synthmed index check``
computes it over the base branch's history. Both walk the same history the same way, so
they reach the same answer whatever the moments at which a site synced.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from .errors import RecordError
from .record_paths import parse_record_relpath
from .records import IMMUTABLE_FIELDS, Record, load_record_bytes

if TYPE_CHECKING:  # the caller's git handle; the catalog imports this module, and a search needs no git
    import git

__all__ = ["AcceptedVersion", "Bound", "bind", "conflict", "history_changes", "walk_history"]

#: artefact fields a version first seen unverified may gain, once (a pin)
PIN_FIELDS = ("sha256", "size")


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def inputs_digest(data: Mapping[str, Any]) -> str:
    """The bound digest of a version's inputs: ``inputs`` alone for a record without
    ``array_inputs`` (so every digest bound before array inputs existed still matches),
    else ``inputs`` and ``array_inputs`` together: adding, changing or removing an array
    input is a change of the version's inputs."""
    if "array_inputs" not in data:
        return _digest(data.get("inputs"))
    return _digest({"inputs": data.get("inputs"), "array_inputs": data.get("array_inputs")})


@dataclass(frozen=True)
class AcceptedVersion:
    """The bound immutable fields of one version (digests of their canonical JSON)."""

    id: str
    version: str
    sha256: str | None
    size: int | None
    package: str  # digest of package
    package_unpinned: str  # digest of package without the pin fields
    inputs: str
    outputs: str
    commit: str  # the commit at which they were bound
    path: str

    @classmethod
    def of(cls, data: Mapping[str, Any], commit: str, path: str) -> "AcceptedVersion":
        package = data.get("package")
        art = package.get("artefact") if isinstance(package, dict) else None
        unpinned: Any = package
        if isinstance(package, dict) and isinstance(art, dict):
            unpinned = {**package, "artefact": {k: v for k, v in art.items() if k not in PIN_FIELDS}}
        sha = art.get("sha256") if isinstance(art, dict) else None
        size = art.get("size") if isinstance(art, dict) else None
        return cls(id=str(data["id"]), version=str(data["version"]), sha256=sha if isinstance(sha, str) else None,
                   size=size if isinstance(size, int) else None, package=_digest(package),
                   package_unpinned=_digest(unpinned), inputs=inputs_digest(data),
                   outputs=_digest(data.get("outputs")), commit=commit, path=path)

    @property
    def key(self) -> tuple[str, str]:
        return (self.id, self.version)

    def as_row(self, upstream: str) -> dict[str, Any]:
        return {"upstream": upstream, "id": self.id, "version": self.version, "sha256": self.sha256,
                "size": self.size, "package": self.package, "package_unpinned": self.package_unpinned,
                "inputs": self.inputs, "outputs": self.outputs, "commit_sha": self.commit, "path": self.path}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "AcceptedVersion":
        return cls(id=row["id"], version=row["version"], sha256=row["sha256"], size=row["size"],
                   package=row["package"], package_unpinned=row["package_unpinned"], inputs=row["inputs"],
                   outputs=row["outputs"], commit=row["commit_sha"], path=row["path"])


def conflict(bound: AcceptedVersion, new: AcceptedVersion) -> list[str]:
    """The immutable fields of ``new`` that differ from ``bound`` ([] when none do, or when
    ``new`` pins a version bound unverified)."""
    changed = [f for f, a, b in (("inputs", bound.inputs, new.inputs), ("outputs", bound.outputs, new.outputs))
               if a != b]
    if bound.package != new.package and not is_pin(bound, new):
        changed.insert(0, "package")
    return changed


def is_pin(bound: AcceptedVersion, new: AcceptedVersion) -> bool:
    """``new`` adds a sha256 (and a size) to a version bound without one, nothing else."""
    return (bound.sha256 is None and new.sha256 is not None and bound.package_unpinned == new.package_unpinned
            and (bound.size is None or bound.size == new.size))


Bound = dict[tuple[str, str], AcceptedVersion]


def bind(bound: Bound, new: AcceptedVersion) -> str:
    """Fold one appearance of a version into ``bound``: ``"new"`` (first seen: bound now),
    ``"same"``, ``"pinned"`` (the binding is upgraded to the pin) or ``"conflict"`` (left
    as it was: the appearance is a substitution)."""
    old = bound.get(new.key)
    if old is None:
        bound[new.key] = new
        return "new"
    if old.package == new.package and old.inputs == new.inputs and old.outputs == new.outputs:
        return "same"
    if not conflict(old, new):
        bound[new.key] = new
        return "pinned"
    return "conflict"


def history_changes(g: "git.Git", rev_range: Sequence[str], prefix: str) -> list[tuple[str, str, str]]:
    """``(commit, path, blob)`` of every file under ``prefix`` added or modified on the
    first-parent history of ``rev_range`` (e.g. ``[new]`` or ``[f"{base}..{new}"]``),
    oldest commit first, each commit compared with its first parent."""
    out = str(g.execute(["git", "log", "--first-parent", "--reverse", "--no-renames",
                         "--diff-merges=first-parent", "--raw", "--no-abbrev", "-z", "--format=%x01%H",
                         *rev_range, "--", prefix or "."], strip_newline_in_stdout=False))
    found: list[tuple[str, str, str]] = []
    for chunk in out.split("\x01"):
        if not chunk:
            continue
        sha, _, rest = chunk.partition("\0")
        for fields, path in raw_diff_entries(rest.lstrip("\n")):
            if fields[4][:1] in ("A", "M", "T") and fields[1] != "160000":
                found.append((sha.strip(), path, fields[3]))
    return found


def raw_diff_entries(text: str) -> Iterator[tuple[list[str], str]]:
    """``(fields, path)`` of each entry of git's ``--raw -z`` output (``diff-tree``, ``log
    --raw``): ``fields`` are old mode, new mode, old blob, new blob, status. The one parser
    of that format (the sync's diff and the accepted history both read it)."""
    items = text.split("\0")
    i = 0
    while i + 1 < len(items):
        meta, path = items[i], items[i + 1]
        i += 2
        if not meta.startswith(":"):
            continue
        fields = meta[1:].split(" ")
        if len(fields) >= 5:
            yield fields, path


def walk_history(changes: Iterable[tuple[str, str, str]], prefix: str, read: Callable[[str], bytes | None],
                 bound: Bound, *, cache: dict[str, Record | None] | None = None) -> Iterator[tuple[str, AcceptedVersion]]:
    """Fold the records among ``changes`` (from :func:`history_changes`) into ``bound``;
    yields ``(outcome, version)`` for each valid record seen (see :func:`bind`).

    ``read(blob)`` returns a blob's bytes, or None when it is too large to be a record;
    ``cache`` maps a blob to its validated record (None: invalid), shared with the caller
    so that a blob is parsed and validated once. Any failure of one file only makes that
    file invalid.
    """
    cache = {} if cache is None else cache
    for commit, path, blob in changes:
        rel = path[len(prefix):] if prefix and path.startswith(prefix) else path
        if parse_record_relpath(rel) is None:
            continue
        if blob not in cache:
            cache[blob] = load_valid(read, blob, f"{path}@{commit[:12]}", rel)
        record = cache[blob]
        if record is None:
            continue
        version = AcceptedVersion.of(record.data, commit, rel)
        yield bind(bound, version), version


def load_valid(read: Callable[[str], bytes | None], blob: str, where: str, rel: str) -> Record | None:
    """The validated record in ``blob``, or None when it is not one (whatever the reason)."""
    try:
        data = read(blob)
        if data is None:
            return None
        return load_record_bytes(data, where, rel)
    except (RecordError, RecursionError, ValueError, TypeError, KeyError, MemoryError):
        return None


def changed_fields_text(fields: Sequence[str]) -> str:
    return ", ".join(fields) if fields else "immutable fields"


__all__ += ["IMMUTABLE_FIELDS", "PIN_FIELDS", "changed_fields_text", "is_pin", "load_valid"]
