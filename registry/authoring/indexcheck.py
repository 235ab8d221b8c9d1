"""The pull-request gate for an index: ``synthmed index check --base REV [--head REV]``.

Reads the index's git history with gitpython (no checkout). Added and changed records
are validated; a merged version's immutable fields never change; versions are never
deleted or renamed; artefacts inside the index that a merged record points to never
change. Status, status_reason, metrics, publications and description may change, and
an unverified record may be pinned (sha256 and size added where there were none). Dataset
records (``datasets/<id>/<version>.json``) are held to the same rules with their own
mutable fields (:data:`..dataset_records.MUTABLE_FIELDS`), and to the dataset publishing
policy (:mod:`.dataset_policy`: the model version in the same index, the artefact, the
licence rule); any other file under ``datasets/`` is an error. A
version deleted earlier in the base branch's history stays bound to the immutable fields it
was first merged with (registry/accepted.py): re-adding it with others is refused.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping, Sequence

import git

from .. import accepted as history
from .. import dataset_records as dsr
from ..errors import IndexCheckError, Problem
from ..record_paths import is_shard_name, parse_record_relpath, record_relpaths, twin_relpath
from ..records import MAX_RECORD_BYTES, MODELS_DIR, MUTABLE_FIELDS, parse_bytes, validate_data
from ..errors import RecordError
from . import dataset_policy

log = logging.getLogger(__name__)

#: artefact fields that may be added (never changed) when pinning an unverified record
PIN_FIELDS = ("sha256", "size")


@dataclass
class IndexCheckResult:
    base: str
    head: str
    added_models: list[str] = field(default_factory=list)
    added_versions: list[str] = field(default_factory=list)
    added_datasets: list[str] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # versions moved between the layouts (record_paths.py)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    other_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "base": self.base,
            "head": self.head,
            "added_models": self.added_models,
            "added_versions": self.added_versions,
            "added_datasets": self.added_datasets,
            "changed": self.changed,
            "moved": self.moved,
            "other_files": self.other_files,
            "errors": [p.as_dict() for p in self.problems],
            "warnings": [p.as_dict() for p in self.warnings],
        }

    def summary(self) -> str:
        lines = [f"index check {self.base[:12]}..{self.head[:12]}"]
        for ref in self.added_models:
            lines.append(f"  + new model   {ref}")
        for ref in self.added_versions:
            lines.append(f"  + new version {ref}")
        for ref in self.added_datasets:
            lines.append(f"  + new dataset {ref}")
        for ch in self.changed:
            lines.append(f"  ~ changed     {ch['ref']}: {', '.join(ch['fields'])}")
        if self.moved:
            lines.append(f"  > moved       {len(self.moved)} version(s) to the other record layout, unchanged")
        for f in self.other_files:
            lines.append(f"  . other file  {f}")
        if len(lines) == 1:
            lines.append("  (no record changes)")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        for p in self.problems:
            lines.append(f"error: {p}")
        lines.append("OK" if self.ok else f"FAILED: {len(self.problems)} error(s)")
        return "\n".join(lines)


def find_index_prefix(repo: git.Repo, commit: git.Commit, index_dir: str | None) -> str:
    """The folder holding models/ inside the repo: given, "" (repo root) or "index"."""
    if index_dir is not None:
        return index_dir.strip("/")
    names = {t.name for t in commit.tree.trees}
    if MODELS_DIR in names:
        return ""
    if "index" in names:
        return "index"
    return ""


def _resolve(repo: git.Repo, rev: str) -> git.Commit:
    try:
        return repo.commit(rev)
    except (git.BadName, ValueError) as exc:
        raise IndexCheckError(f"{repo.working_dir}: cannot resolve revision {rev!r}",
                              hint="fetch it first (e.g. `git fetch origin main`) or pass a commit id") from exc


def _has_tree(commit: git.Commit, models_prefix: str) -> bool:
    try:
        return isinstance(commit.tree[models_prefix.rstrip("/")], git.Tree)
    except KeyError:
        return False


def _blob_bytes(commit: git.Commit, path: str) -> bytes:
    data: bytes = commit.tree[path].data_stream.read()
    return data


def _bound_versions(repo: git.Repo, base: git.Commit, models_prefix: str, prefix: str) -> history.Bound:
    """Every version the base branch's first-parent history ever carried, bound to the
    immutable fields it was first merged with (what a site following it has accepted)."""
    def read(blob: str) -> bytes | None:
        _, _, size = repo.git.get_object_header(blob)
        if int(size) > MAX_RECORD_BYTES:
            return None
        _, _, _, data = repo.git.get_object_data(blob)
        return bytes(data)

    bound: history.Bound = {}
    changes = history.history_changes(repo.git, [base.hexsha], models_prefix)
    for _ in history.walk_history(changes, f"{prefix}/" if prefix else "", read, bound):
        pass
    return bound


def _diff_paths(base: Any, new: Any, prefix: str = "$") -> Iterator[str]:
    """JSON paths where ``base`` and ``new`` differ (leaves first)."""
    if isinstance(base, dict) and isinstance(new, dict):
        for key in sorted(set(base) | set(new)):
            sub = f"{prefix}.{key}"
            if key not in base or key not in new:
                yield sub
            else:
                yield from _diff_paths(base[key], new[key], sub)
    elif isinstance(base, list) and isinstance(new, list) and len(base) == len(new):
        for i, (a, b) in enumerate(zip(base, new)):
            yield from _diff_paths(a, b, f"{prefix}[{i}]")
    elif base != new:
        yield prefix


def _is_pin(path: str, base_record: Mapping[str, Any]) -> bool:
    """True when ``path`` adds a pin field to an artefact that had none."""
    for f in PIN_FIELDS:
        if path == f"$.package.artefact.{f}":
            return not base_record.get("package", {}).get("artefact", {}).get(f)
    return False


def compare_records(old: Mapping[str, Any], new: Mapping[str, Any], where: str,
                    mutable: frozenset[str] = MUTABLE_FIELDS, pins: bool = True) -> tuple[list[str], list[Problem]]:
    """(changed top-level fields, immutability problems) between two versions of a record
    (a model record by default; a dataset record with its own ``mutable`` fields, no pins)."""
    changed: list[str] = []
    problems: list[Problem] = []
    for jp in _diff_paths(old, new):
        top = jp[2:].split(".")[0].split("[")[0]
        if top not in changed:
            changed.append(top)
        if top in mutable or (pins and _is_pin(jp, old)):
            continue
        problems.append(Problem(where, jp, f"cannot change in a merged version (only {', '.join(sorted(mutable))} "
                                           "may change; publish a new version instead)"))
    return changed, problems


def check_index(repo_path: Path | str, base: str, head: str = "HEAD", index_dir: str | None = None) -> IndexCheckResult:
    try:
        repo = git.Repo(repo_path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise IndexCheckError(f"{repo_path}: not inside a git repository",
                              hint="run `synthmed index check` from a clone of the index repository") from exc
    diff = _IndexDiff.open(repo, base, head, index_dir)
    result = IndexCheckResult(base=diff.base.hexsha, head=diff.head.hexsha)
    changed_other: list[tuple[str, str]] = []
    entries = [(d.change_type or "M", d.a_path or d.b_path or "", d.b_path or "") for d in diff.merge_base.diff(diff.head)]
    moves = diff.moves(entries)
    moved_from = set(moves.values())
    for ct, old_path, new_path in entries:
        path = new_path or old_path
        if ct == "D" and old_path in moved_from:  # checked with its other half, the added path
            continue
        if ct == "A" and path in moves:
            ct, old_path = "R", moves[path]
        if diff.is_record(path) or diff.is_record(old_path):
            diff.check_record(result, ct, path, old_path, new_path)
        elif diff.is_dataset(path) or diff.is_dataset(old_path):
            diff.check_dataset(result, ct, path, old_path, new_path)
        elif diff.prefix == "" or path.startswith(diff.prefix + "/"):
            result.other_files.append(f"{ct} {path}")
            changed_other.append((ct, old_path))
    diff.check_artefacts(result, changed_other)
    log.info("index check %s..%s: %d problem(s)", base, head, len(result.problems))
    return result


@dataclass
class _IndexDiff:
    """A pull request's change to an index: its head against the merge base with the base
    branch (as a pull request is compared), and where the index lies in the repository."""

    repo: git.Repo
    base: git.Commit
    head: git.Commit
    merge_base: git.Commit
    prefix: str  # the folder holding models/ ("" = the repository root)
    models_prefix: str  # "<prefix>/models/"
    base_ids: set[str]  # the model ids at the merge base
    bound: history.Bound | None = None  # computed on the first added record

    @classmethod
    def open(cls, repo: git.Repo, base: str, head: str, index_dir: str | None) -> "_IndexDiff":
        base_c = _resolve(repo, base)
        head_c = _resolve(repo, head)
        prefix = find_index_prefix(repo, head_c, index_dir)
        models_prefix = f"{prefix}/{MODELS_DIR}/" if prefix else f"{MODELS_DIR}/"
        merge_bases = repo.merge_base(base_c, head_c)
        if not merge_bases:
            raise IndexCheckError(f"{base} and {head} share no history", hint="rebase the branch onto the index's main branch")
        mb = merge_bases[0]
        base_ids: set[str] = set()
        try:
            for t in mb.tree[models_prefix.rstrip("/")].trees:
                if is_shard_name(t.name):  # a sharded index: the ids are in the file names
                    base_ids.update(k[0] for b in t.blobs if (k := parse_record_relpath(f"{MODELS_DIR}/{t.name}/{b.name}")))
                else:
                    base_ids.add(t.name)
        except KeyError:
            pass
        if not _has_tree(head_c, models_prefix) and not _has_tree(mb, models_prefix):
            # a mistyped --index-dir (or the wrong repository) would otherwise pass as "no record changes"
            raise IndexCheckError(f"{repo.working_dir}: no {models_prefix} folder at {head} or at {base}",
                                  hint="pass --index-dir with the folder that holds models/ ('' = the repository root)")
        return cls(repo, base_c, head_c, mb, prefix, models_prefix, base_ids)

    def rel(self, path: str) -> str:
        """A repository path relative to the index folder."""
        return path[len(self.prefix) + 1:] if self.prefix else path

    def is_record(self, path: str) -> bool:
        return path.startswith(self.models_prefix) and path.endswith(".json")

    def moves(self, entries: Sequence[tuple[str, str, str]]) -> dict[str, str]:
        """``{added path: deleted path}`` for each record version deleted at one path and added at
        its other layout's path (a move git did not pair as a rename)."""
        deleted = {k: p for ct, p, _ in entries if ct == "D" and self.is_record(p)
                   if (k := parse_record_relpath(self.rel(p)))}
        added = {k: p for ct, _, p in entries if ct == "A" and self.is_record(p)
                 if (k := parse_record_relpath(self.rel(p)))}
        return {added[k]: deleted[k] for k in added.keys() & deleted.keys()}

    def _twin_in_head(self, rel: str) -> str | None:
        """The same version's path in the other layout, when the head holds a file there too."""
        other = twin_relpath(rel)
        if other is None:
            return None
        try:
            self.head.tree[f"{self.prefix}/{other}" if self.prefix else other]
        except KeyError:
            return None
        return other

    def is_dataset(self, path: str) -> bool:
        return path.startswith(self.rel_prefix(dsr.DATASETS_DIR))

    def rel_prefix(self, folder: str) -> str:
        return f"{self.prefix}/{folder}/" if self.prefix else f"{folder}/"

    def check_dataset(self, result: IndexCheckResult, ct: str, path: str, old_path: str, new_path: str) -> None:
        """One changed file under datasets/: a record at datasets/<id>/<version>.json, never
        deleted or renamed once merged, valid, agreeing with the index (the dataset policy)
        and, when modified, changed only in its mutable fields."""
        if ct in ("D", "R"):
            result.problems.append(Problem(old_path, "$", (
                "a merged dataset version may not be deleted or renamed; withdraw it with "
                '"status": "yanked" and a "status_reason", or publish a new version')))
            if ct == "D":
                return
        rel = self.rel(path)
        stray = dataset_policy.stray_dataset_paths([rel[len(dsr.DATASETS_DIR) + 1:]])
        if stray:
            result.problems.append(Problem(path, "$", "only dataset records belong under datasets/, each at "
                                                      "datasets/<id>/<version>.json; move or remove this file"))
            return
        try:
            new_data = parse_bytes(_blob_bytes(self.head, path), path)
        except RecordError as exc:
            result.problems.extend(exc.problems)
            return
        errors = dsr.validate_dataset_data(new_data, path, rel)
        if not errors and isinstance(new_data, dict):
            more, warnings = dataset_policy.check_dataset(new_data, path, models_at(self.head, self.models_prefix),
                                                          files_at(self.head, self.prefix))
            errors += more
            result.warnings.extend(warnings)
        result.problems.extend(errors)
        ref = f"{new_data.get('id')}@{new_data.get('version')}" if isinstance(new_data, dict) else path
        if ct in ("A", "R"):
            result.added_datasets.append(ref)
        elif ct in ("M", "T"):
            old_data = self._merged(old_path)
            if isinstance(old_data, dict) and isinstance(new_data, dict):
                fields, problems = compare_records(old_data, new_data, path, dsr.MUTABLE_FIELDS, pins=False)
                result.problems.extend(problems)
                result.changed.append({"ref": ref, "fields": fields})

    def check_record(self, result: IndexCheckResult, ct: str, path: str, old_path: str, new_path: str) -> None:
        """One changed record file: never deleted or renamed, valid, and (added) not a
        deleted version re-added with other immutable fields or (modified) changed only in
        its mutable fields."""
        rel = self.rel(path)
        key = parse_record_relpath(rel)
        moved = ct == "R" and key is not None and parse_record_relpath(self.rel(old_path)) == key
        if moved:  # to the other layout (registry/record_paths.py): checked as a modification
            result.moved.append(f"{key[0]}@{key[1]}" if key else path)
            ct = "M"
        if ct == "D" or ct == "R":
            result.problems.append(Problem(old_path, "$", (
                "a merged version may not be deleted or renamed; withdraw it with "
                '"status": "yanked" and a "status_reason"') if ct == "D" else
                f"a merged version may not be renamed (to {new_path}); add a new file instead"))
            if ct == "D":
                return
        try:
            new_data = parse_bytes(_blob_bytes(self.head, path), path)
            errors, warnings = validate_data(new_data, path, rel)
        except RecordError as exc:
            result.problems.extend(exc.problems)
            return
        except RecursionError:  # pragma: no cover - parse_bytes bounds the depth
            result.problems.append(Problem(path, "$", "too deeply nested to validate"))
            return
        if ct in ("A", "R"):  # a new version speaks the controlled vocabulary (an old one keeps its words)
            errors += [Problem(w.path, w.json_path, w.message) for w in warnings if w.json_path == "$.modality"]
            warnings = [w for w in warnings if w.json_path != "$.modality"]
        twin = self._twin_in_head(rel)
        if twin is not None:
            errors.append(Problem(path, "$", f"this version is also at {twin}: an index holds each version once "
                                             "(keep the file in the index's layout and remove the other)"))
        result.problems.extend(errors)
        result.warnings.extend(warnings)
        ref = f"{new_data.get('id')}@{new_data.get('version')}" if isinstance(new_data, dict) else path
        if ct in ("A", "R"):
            (result.added_versions if key is not None and key[0] in self.base_ids else result.added_models).append(ref)
            if not errors and isinstance(new_data, dict):
                self._check_readded(result, path, rel, ref, new_data)
        elif ct in ("M", "T"):
            old_data = self._merged(old_path)
            if isinstance(old_data, dict) and isinstance(new_data, dict):
                fields, problems = compare_records(old_data, new_data, path)
                result.problems.extend(problems)
                if fields or not moved:
                    result.changed.append({"ref": ref, "fields": fields})

    def _merged(self, old_path: str) -> Any:
        """The parsed record at ``old_path`` on the merge base (None when it cannot be read)."""
        try:
            return parse_bytes(_blob_bytes(self.merge_base, old_path), old_path)
        except (RecordError, KeyError):
            return None

    def _check_readded(self, result: IndexCheckResult, path: str, rel: str, ref: str,
                       new_data: Mapping[str, Any]) -> None:
        """An added version that the base branch carried before keeps the immutable fields
        it was first merged with (registry/accepted.py)."""
        if self.bound is None:
            self.bound = _bound_versions(self.repo, self.merge_base, self.models_prefix, self.prefix)
        mine = history.AcceptedVersion.of(new_data, self.head.hexsha, rel)
        held = self.bound.get(mine.key)
        if held is None:
            return
        fields = history.conflict(held, mine)
        if fields:
            result.problems.append(Problem(path, "$", (
                f"{ref} was merged before (at {held.commit[:12]}, as {held.path}) and deleted since; "
                f"re-adding it with another {', '.join(fields)} is refused: a merged version is "
                "immutable even once deleted, and sites that accepted it refuse the new one. "
                "Publish a new version instead")))
        else:
            result.warnings.append(Problem(path, "$", (
                f"re-adds {ref}, merged at {held.commit[:12]} and deleted since, with the same package, "
                "inputs and outputs"), "warning"))

    def check_artefacts(self, result: IndexCheckResult, changed_other: list[tuple[str, str]]) -> None:
        """Artefacts inside the index that merged records point to never change."""
        if not changed_other:
            return
        referenced = _index_artefacts(self.merge_base, self.models_prefix)
        for k, refs in _index_artefacts(self.merge_base, self.rel_prefix(dsr.DATASETS_DIR)).items():
            referenced.setdefault(k, set()).update(refs)
        for ct, p in changed_other:
            rel = self.rel(p)
            if ct in ("M", "D", "R", "T") and rel in referenced:
                result.problems.append(Problem(p, "$", f"this artefact is used by merged record(s) "
                                                       f"{', '.join(sorted(referenced[rel]))} and may not change or go"))


def models_at(commit: git.Commit, models_prefix: str) -> dataset_policy.ModelLookup:
    """The model records of the index at ``commit`` (what the dataset policy checks against)."""
    index = models_prefix[: -len(MODELS_DIR) - 1]  # the folder holding models/, with its slash
    def lookup(model_id: str, version: str) -> Mapping[str, Any] | None:
        for rel in record_relpaths(model_id, version):
            path = f"{index}{rel}"
            try:
                data = parse_bytes(_blob_bytes(commit, path), path)
            except KeyError:
                continue
            except RecordError:
                return None
            return data if isinstance(data, dict) else None
        return None
    return lookup


def files_at(commit: git.Commit, prefix: str) -> dataset_policy.IndexFileLookup:
    """(sha256, size) of a file of the index at ``commit``, hashed from git's object."""
    def lookup(rel: str) -> tuple[str, int] | None:
        p = PurePosixPath(rel)
        if p.is_absolute() or ".." in p.parts:
            return None
        try:
            blob = commit.tree[f"{prefix}/{rel}" if prefix else rel]
        except KeyError:
            return None
        if not isinstance(blob, git.Blob):
            return None
        h = hashlib.sha256()
        stream = blob.data_stream
        while chunk := stream.read(1 << 20):
            h.update(chunk)
        return h.hexdigest(), int(blob.size)
    return lookup


def _index_artefacts(commit: git.Commit, models_prefix: str) -> dict[str, set[str]]:
    """``{index path: {record refs}}`` for every index: source of every record (a model's
    package, or under datasets/ a dataset's artefact) at commit."""
    out: dict[str, set[str]] = {}
    try:
        tree = commit.tree[models_prefix.rstrip("/")]
    except KeyError:
        return out
    for blob in tree.traverse():
        if not isinstance(blob, git.Blob) or not str(blob.path).endswith(".json"):
            continue
        try:
            data = parse_bytes(blob.data_stream.read(), str(blob.path))
            srcs = (data["artefact"] if "artefact" in data else data["package"]["artefact"])["sources"]
            ref = f"{data['id']}@{data['version']}"
        except (RecordError, ValueError, KeyError, TypeError):
            continue
        for s in srcs:
            if isinstance(s, str) and s.startswith("index:"):
                out.setdefault(s[len("index:"):], set()).add(ref)
    return out
