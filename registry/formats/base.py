"""What a package format is to synthmed: one interface, :class:`PackageFormat`, with one
adapter per ``package.format`` (``synthmed-1``, ``medigan-1``, ``synthmed-pipeline-1``).

An adapter owns everything that differs between formats:

- **loading**: how the runner (inline, or in a worker) turns an unpacked package into a
  model with ``sample(seeds, **params) -> {output: array}``;
- **stage preparation**: the other packages a package runs with (a pipeline's stages),
  prepared by :func:`synthmed.registry.packages.prepare` through the same boundary;
- **the seed-chunk policy**: how many consecutive seeds one call of the model makes
  (medigan-1), chosen per run, and the rule that a resumed run keeps its chunk;
- **what it records**: the runner information that goes into a run's sidecar.

Adapters are stateless singletons (:func:`~.table.format_for`); callers never compare
``package_format`` strings.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, TypeVar

import numpy as np

from ..catalog.entry import CatalogEntry
from ..records import Record


class PackageView(Protocol):
    """What an adapter reads of a prepared package (a ``VerifiedPackage``)."""

    @property
    def record(self) -> Record: ...

    @property
    def folder(self) -> Path: ...

    @property
    def upstream(self) -> str | None: ...

    @property
    def ref(self) -> str: ...


class LoadedModel(Protocol):
    """A loaded model, as the runner and the worker call it."""

    def sample(self, seeds: list[int], **params: Any) -> Mapping[str, Any]: ...

    def close(self) -> None: ...


P = TypeVar("P", bound=PackageView)

#: resolve a model reference (``id@version`` or ``upstream/id@version``) to a catalog entry
Resolve = Callable[[str], CatalogEntry]


def to_numpy(value: Any) -> np.ndarray:
    """A model's output value (a numpy array, a torch tensor, a list) as a numpy array."""
    if isinstance(value, np.ndarray):
        return value
    detach = getattr(value, "detach", None)
    if callable(detach):  # a torch tensor
        return np.asarray(detach().cpu().numpy())
    return np.asarray(value)


def split_entry_point(entry_point: str) -> tuple[str, str | None]:
    module, _, attr = entry_point.partition(":")
    return module, (attr or None)


class PackageFormat(abc.ABC):
    """One package format. The defaults are those of a format that runs one model, makes
    each sample from its own seed alone and needs no other package."""

    #: the record's ``package.format``
    name: str = ""
    #: runs as stages, each a package of its own (the runner composes them), never loaded itself
    staged: bool = False

    @abc.abstractmethod
    def load(self, record: Record, package_dir: Path, device: str, package_key: str,
             chunk: int | None = None) -> LoadedModel:
        """The model of the unpacked package in ``package_dir`` on ``device``; ``package_key``
        names its private module namespace, ``chunk`` is :meth:`load_chunk`'s answer."""

    def prepare_stages(self, package: P, resolve: Resolve, prepare: Callable[[CatalogEntry], P]) -> dict[str, P]:
        """The packages this one runs with, each prepared with ``prepare`` (the package
        boundary's own rules); none for a plain model."""
        return {}

    # -- the seed-chunk policy ------------------------------------------------------

    def load_chunk(self, asked: int | None) -> int | None:
        """The chunk a runner loads the model with, given the options' (None: no chunks)."""
        return None

    def run_chunk(self, num_samples: int, asked: int | None, sample_bytes: int,
                  memory_budget_mb: float | None) -> int | None:
        """The chunk for a run of ``num_samples`` samples (``asked``: the user's, if any);
        None when the format serves seeds without chunks."""
        return None

    def resume_chunk(self, folder: Path, recorded: Mapping[str, Any], asked: int | None) -> int | None:
        """The chunk an earlier run into ``folder`` recorded (``recorded``: the runner section
        of its sidecar, read once by the output folder that owns it); a run into ``folder``
        must keep it, so ConfigError when ``asked`` is another. None: nothing recorded, or
        no chunks."""
        return None

    # -- what it records ------------------------------------------------------------

    def runner_info(self, record: Record, chunk: int | None) -> dict[str, Any]:
        """What a run of this format records about its seeds beyond the runner's mode,
        device and batch (it goes into the run's sidecar)."""
        return {}
