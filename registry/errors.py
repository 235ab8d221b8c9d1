"""The one errors module of synthmed.

Every error derives from :class:`SynthmedError`; where a built-in exception fits,
the subclass inherits it too (``ArtefactNotFound`` is a ``FileNotFoundError``), so
callers may catch either. Each error carries its fields and a message that says what
was wrong, where, and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


class SynthmedError(Exception):
    """Root of every synthmed error."""

    #: a short hint telling the user what to do; appended to the message
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        self.message = message
        if hint is not None:
            self.hint = hint
        for key, value in fields.items():
            setattr(self, key, value)
        super().__init__(message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


# --- configuration -----------------------------------------------------------------


class ConfigError(SynthmedError, ValueError):
    """A setting, flag, environment variable or site.toml entry is wrong."""


class SiteNotFound(SynthmedError, FileNotFoundError):
    """No site folder (site.toml) where one was expected."""


# --- records and the index -----------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One problem found in a record: where (file and JSON path) and what."""

    path: str
    json_path: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.path}: {self.json_path}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {
            "path": self.path,
            "json_path": self.json_path,
            "message": self.message,
            "severity": self.severity,
        }


class RecordError(SynthmedError, ValueError):
    """A record failed validation; ``problems`` lists every error found."""

    problems: Sequence[Problem]

    def __init__(self, problems: Sequence[Problem], *, hint: str | None = None) -> None:
        lines = "\n".join(str(p) for p in problems)
        super().__init__(
            f"{len(problems)} problem(s):\n{lines}",
            hint=hint or "fix the fields named above, then run `synthmed index validate PATH`",
            problems=list(problems),
        )


class IndexCheckError(SynthmedError):
    """A pull-request check of the index failed (immutability, deletion, validation)."""


class ImportError_(SynthmedError, ValueError):
    """An entry of a foreign catalogue (medigan) cannot be imported."""


class ModelNotFound(SynthmedError, LookupError):
    """No record matches a model reference."""


class DatasetNotFound(SynthmedError, LookupError):
    """No published dataset on this site matches a dataset reference."""


class RecordYanked(SynthmedError, LookupError):
    """The requested version is yanked and is never served."""


class Unverified(SynthmedError, PermissionError):
    """A package that may not run here. The refusals are typed by subclass: callers compare
    classes, never reasons (the ``reason`` field stays for the JSON output)."""


class NotPinned(Unverified):
    """A record has no pinned sha256; it is searchable but never executed."""


class CodeNotAllowed(Unverified):
    """The site does not run code from the record's upstream (``allow_code = false``)."""


class StageUnavailable(Unverified):
    """A pipeline's stage cannot run here: it does not resolve, is not the package the
    pipeline pins, or its own preparation was refused or failed (the message is the
    stage's own; ``stage`` names it)."""


# --- artefacts ---------------------------------------------------------------------


class ArtefactError(SynthmedError, OSError):
    """Root of artefact transport and store errors."""


class ArtefactNotFound(ArtefactError, FileNotFoundError):
    """No source could provide the artefact, or a blob is missing from the store."""


class SourceError(ArtefactError):
    """One source failed (network, protocol, size, hash); the next source may work."""


class HashMismatch(SourceError):
    """Bytes from a source do not hash to the pinned sha256."""


class SizeMismatch(SourceError):
    """A source delivered fewer or more bytes than declared."""


class BlobCorrupt(ArtefactError):
    """A blob in the store no longer hashes to its name."""


class UnsafeArchive(ArtefactError, ValueError):
    """An archive entry is unsafe to unpack (absolute path, '..', link, device, bomb)."""


# --- catalog, sync and daemon --------------------------------------------------------


class CatalogError(SynthmedError, RuntimeError):
    """The SQLite catalog is missing, locked or of an unknown generation."""


class SyncRefused(SynthmedError, RuntimeError):
    """An upstream update was refused (not a fast-forward, unsigned commit, ...)."""


class SiteLocked(SynthmedError, RuntimeError):
    """Another daemon or sync already holds this site's lock."""


class BundleError(SynthmedError, ValueError):
    """An export bundle is incomplete or tampered."""


# --- running models ----------------------------------------------------------------


class ParamError(SynthmedError, ValueError):
    """Generation parameters do not match the record's `inputs` schema."""


class InputError(ParamError):
    """An array input (image, mask, volume, label map) is missing, unreadable or does not
    match the record's ``array_inputs``: which input, which file, and what was wrong."""


class DecodeError(SynthmedError, ValueError):
    """An image or array file could not be decoded within bounds: its header declares
    more than the limit (refused before anything is allocated or decompressed), or the
    header itself is malformed. ``path`` names the file."""


class ModelRunError(SynthmedError, RuntimeError):
    """A model raised, crashed, hung past its timeout or returned bad outputs."""


class ModelTimeout(ModelRunError, TimeoutError):
    """A model ran past its timeout."""


class EnvironmentBuildError(SynthmedError, RuntimeError):
    """A per-model environment could not be built."""


class ContributeError(SynthmedError, RuntimeError):
    """A contribution could not be validated, tested, uploaded or committed."""


class DatasetPublishError(ContributeError):
    """A synthetic dataset could not be published: its folder, its model, its licence, its
    audit or the index refused it (nothing was committed or uploaded)."""


# --- evaluation --------------------------------------------------------------------


class EvaluationError(SynthmedError, ValueError):
    """A metric, feature extractor or reference set cannot be used as asked (too few
    images, mismatched features, a reference set whose files changed, ...)."""
