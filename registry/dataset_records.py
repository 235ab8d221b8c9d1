"""Dataset records (``synthmed-dataset/1``): loading and validation.

A dataset record lives at ``datasets/<id>/<version>.json`` inside an index folder, beside
the model records under ``models/``. It says which pinned model version made the dataset
(``model``: id, version, package sha256), how (``generation``: outputs, parameters, inputs,
first seed and count, file format, layout, the run manifest's sha256), where its packed
folder is (``artefact``), under which licence, with which memorisation audit and card
(schemas/dataset.schema.json). Validation reports every problem at once, as
:mod:`records` does for models; checks that need the index (the model version exists with
that sha256, the licence agrees with the model's) belong to the index check.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping

from . import spdx
from .errors import Problem, RecordError
from .records import MAX_RECORD_BYTES, Versioned, parse_bytes
from .schemas_io import validate_against
from .semver import parse_version

log = logging.getLogger(__name__)

DATASETS_DIR = "datasets"
DATASET_FORMAT = "synthmed-dataset/1"

#: fields of a merged dataset version that may change later; everything else is bound to it
MUTABLE_FIELDS = frozenset({"status", "status_reason", "description", "card"})


@dataclass(frozen=True)
class DatasetRecord(Versioned):
    """A validated dataset record and where it came from."""

    data: Mapping[str, Any]
    path: str = "<memory>"
    warnings: tuple[Problem, ...] = field(default=(), compare=False)

    @property
    def model(self) -> Mapping[str, Any]:
        return self.data["model"]  # type: ignore[no-any-return]

    @property
    def model_ref(self) -> str:
        return f"{self.model['id']}@{self.model['version']}"

    @property
    def generation(self) -> Mapping[str, Any]:
        return self.data["generation"]  # type: ignore[no-any-return]

    @property
    def artefact(self) -> Mapping[str, Any]:
        return self.data["artefact"]  # type: ignore[no-any-return]

    @property
    def sha256(self) -> str:
        return str(self.artefact["sha256"])

    @property
    def status(self) -> str:
        return str(self.data.get("status", "active"))

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def immutable_digest(data: Mapping[str, Any]) -> str:
    """The digest a merged dataset version is bound to: its record's canonical JSON without
    :data:`MUTABLE_FIELDS` (sites refuse a later appearance with another digest)."""
    fixed = {k: v for k, v in data.items() if k not in MUTABLE_FIELDS}
    text = json.dumps(fixed, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def immutable_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The top-level fields outside :data:`MUTABLE_FIELDS` that differ between two records."""
    keys = (set(old) | set(new)) - MUTABLE_FIELDS
    return sorted(k for k in keys if old.get(k) != new.get(k))


def dataset_relpath(dataset_id: str, version: str) -> str:
    return f"{DATASETS_DIR}/{dataset_id}/{version}.json"


def _semantic_checks(data: Mapping[str, Any], where: str, relpath: str | None) -> list[Problem]:
    """Checks a schema cannot express; ``data`` has passed the schema's type checks."""
    problems: list[Problem] = []

    def bad(jp: str, msg: str) -> None:
        problems.append(Problem(where, jp, msg))

    if relpath is not None and isinstance(data.get("id"), str) and isinstance(data.get("version"), str):
        parts = PurePosixPath(relpath).parts
        expected = dataset_relpath(data["id"], data["version"])
        if len(parts) < 3 or "/".join(parts[-3:]) != expected:
            bad("$.id", f"the file should be at {expected} for id {data['id']!r} and version {data['version']!r}, "
                        f"not at {relpath}")
    for jp, value in (("$.version", data.get("version")), ("$.model.version", (data.get("model") or {}).get("version"))):
        if isinstance(value, str):
            try:
                parse_version(value)
            except ValueError as exc:
                bad(jp, str(exc))
    lic = data.get("license")
    if isinstance(lic, str):
        msg = spdx.check_expression(lic)
        if msg:
            bad("$.license", msg)
    for i, src in enumerate((data.get("artefact") or {}).get("sources") or []):
        if isinstance(src, str) and src.startswith("index:"):
            p = PurePosixPath(src[len("index:"):])
            if p.is_absolute() or ".." in p.parts:
                bad(f"$.artefact.sources[{i}]", f"{src!r} leaves the index folder; use a path inside it")
    gen = data.get("generation") or {}
    names = [i.get("name") for i in gen.get("inputs") or [] if isinstance(i, Mapping)]
    for name in {n for n in names if names.count(n) > 1}:
        bad("$.generation.inputs", f"input {name!r} is listed twice")
    return problems


def validate_dataset_data(data: Any, where: str = "<memory>", relpath: str | None = None) -> list[Problem]:
    """Every problem of one dataset record (schema, then the checks beyond it)."""
    problems = validate_against("dataset", data, where)
    if isinstance(data, Mapping):
        problems += _semantic_checks(data, where, relpath)
    return problems


def load_dataset_bytes(data: bytes, where: str, relpath: str | None = None) -> DatasetRecord:
    """Parse (size- and depth-bounded, as model records) and validate one dataset record;
    raise RecordError listing every problem."""
    parsed = parse_bytes(data, where)
    try:
        problems = validate_dataset_data(parsed, where, relpath)
    except RecursionError:  # pragma: no cover - parse_bytes bounds the depth
        raise RecordError([Problem(where, "$", "too deeply nested to validate")]) from None
    if problems:
        raise RecordError(problems, hint="fix the dataset record (schemas/dataset.schema.json; docs/datasets.md)")
    return DatasetRecord(data=parsed, path=where)


def load_dataset_record(path: Path | str) -> DatasetRecord:
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        raise RecordError([Problem(str(p), "$", "file not found")],
                          hint="check the path; dataset records live at datasets/<id>/<version>.json") from None
    parts = p.resolve().parts
    relpath = "/".join(parts[-3:]) if len(parts) >= 3 else None
    return load_dataset_bytes(raw, str(p), relpath)


def iter_dataset_files(index_dir: Path) -> Iterator[Path]:
    """Every file that should be a dataset record under ``index_dir/datasets/``, sorted."""
    folder = index_dir / DATASETS_DIR
    if not folder.is_dir():
        return
    yield from sorted(folder.glob("*/*.json"))
