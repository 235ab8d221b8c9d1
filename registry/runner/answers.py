"""A model's answer checked against its record: every output present, numeric, one
sample per seed along the first axis (inline and in a worker alike)."""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ModelRunError
from ..formats.base import to_numpy
from ..records import Record
from .protocol import ARRAY_KINDS

log = logging.getLogger(__name__)

#: numpy dtype kinds a model's output may have (bool, integers, floats, complex): what the
#: worker protocol carries, so inline and worker runs accept the same answers
NUMERIC_KINDS = ARRAY_KINDS


def normalise_outputs(record: Record, seeds: Sequence[int], raw: Any) -> dict[str, np.ndarray]:
    """Check a model's answer against the record: every output present, batch first."""
    ref = record.ref
    if not isinstance(raw, Mapping):
        raise ModelRunError(f"{ref}: sample() returned {type(raw).__name__}, expected a dict of output name -> array",
                            hint="the package's sample() must return {name: array} for the record's outputs", model=ref)
    names = [str(o["name"]) for o in record.outputs]
    missing = [n for n in names if n not in raw]
    if missing:
        raise ModelRunError(f"{ref}: the model returned no {', '.join(repr(m) for m in missing)} output "
                            f"(it returned {', '.join(map(repr, raw)) or 'nothing'}; the record's outputs are {names})",
                            model=ref)
    extra = [k for k in raw if k not in names]
    if extra:
        log.debug("%s: ignoring outputs not in the record: %s", ref, extra)
    out: dict[str, np.ndarray] = {}
    for name in names:
        try:
            arr = to_numpy(raw[name])
        except Exception as exc:  # noqa: BLE001 - an object numpy cannot read is the model's error
            raise ModelRunError(f"{ref}: output {name!r} ({type(raw[name]).__name__}) is not an array: {exc}",
                                model=ref) from None
        if arr.dtype.hasobject or arr.dtype.kind not in NUMERIC_KINDS or arr.dtype.fields is not None:
            raise ModelRunError(f"{ref}: output {name!r} has dtype {arr.dtype}; a model returns numeric arrays "
                                "(bool, integer, float or complex), never objects",
                                hint="the package's sample() must return numpy arrays (or tensors) of numbers",
                                model=ref)
        if arr.ndim == 0 or arr.shape[0] != len(seeds):
            raise ModelRunError(f"{ref}: output {name!r} has shape {arr.shape}, expected {len(seeds)} samples "
                                "along the first axis (one per seed)", model=ref)
        out[name] = arr
    return out
