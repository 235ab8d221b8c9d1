"""The one table from ``package.format`` to its adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..errors import ModelRunError
from ..records import Record
from .base import LoadedModel, PackageFormat
from .medigan1 import Medigan1
from .pipeline1 import Pipeline1
from .synthmed1 import Synthmed1

FORMATS: Mapping[str, PackageFormat] = {f.name: f for f in (Synthmed1(), Medigan1(), Pipeline1())}


def format_for(record: Record) -> PackageFormat:
    """The adapter of ``record``'s package format; ModelRunError for a format this
    synthmed does not know (the record schema lists the known ones)."""
    fmt = record.package_format
    adapter = FORMATS.get(fmt)
    if adapter is None:
        raise ModelRunError(f"{record.ref}: unknown package format {fmt!r}",
                            hint=f"use one of {', '.join(FORMATS)}", model=record.ref)
    return adapter


def load_model(record: Record, package_dir: Path, device: str, package_key: str | None = None,
               chunk: int | None = None) -> LoadedModel:
    """The loaded model of an unpacked package (what the runner and the worker call)."""
    adapter = format_for(record)
    return adapter.load(record, package_dir, device, package_key or record.sha256 or record.ref,
                        adapter.load_chunk(chunk))
