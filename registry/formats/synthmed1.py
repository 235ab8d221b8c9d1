"""``synthmed-1``: an archive whose root holds the code; the record's entry point
``module:factory`` is called as ``factory(package_dir, device)`` and returns an object
with ``sample(seeds, **params) -> {output: array, batch first}`` (sample i depends only on
seeds[i] and the parameters)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..errors import ModelRunError
from ..records import Record
from .base import LoadedModel, PackageFormat, split_entry_point
from .loader import import_package_module

FORMAT = "synthmed-1"


class SynthmedModel:
    def __init__(self, record: Record, package_dir: Path, device: str, package_key: str) -> None:
        module_name, factory_name = split_entry_point(record.entry_point)
        if not factory_name:
            raise ModelRunError(f"{record.ref}: entry point {record.entry_point!r} names no factory "
                                "(synthmed-1 needs 'module:factory')", model=record.ref)
        module = import_package_module(package_dir, module_name, package_key)
        factory = getattr(module, factory_name, None)
        if not callable(factory):
            raise ModelRunError(f"{record.ref}: {module_name} in {package_dir} has no callable {factory_name!r} "
                                f"(entry point {record.entry_point!r})", model=record.ref)
        self.impl = factory(package_dir, device)
        if not callable(getattr(self.impl, "sample", None)):
            raise ModelRunError(f"{record.ref}: {record.entry_point}(package_dir, device) returned "
                                f"{type(self.impl).__name__}, which has no sample(seeds, **params) method",
                                model=record.ref)

    def sample(self, seeds: list[int], **params: Any) -> Mapping[str, Any]:
        result: Mapping[str, Any] = self.impl.sample(list(seeds), **params)
        return result

    def close(self) -> None:
        close = getattr(self.impl, "close", None)
        if callable(close):
            close()


class Synthmed1(PackageFormat):
    """The adapter of ``synthmed-1`` packages: one model, no chunks, nothing extra recorded."""

    name = FORMAT

    def load(self, record: Record, package_dir: Path, device: str, package_key: str,
             chunk: int | None = None) -> LoadedModel:
        return SynthmedModel(record, package_dir, device, package_key)
