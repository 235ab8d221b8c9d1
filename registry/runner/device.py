"""Device choice: ``auto`` (cuda when present, else cpu), ``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

import logging
import re
from typing import Sequence

from ..errors import ConfigError

log = logging.getLogger(__name__)

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def _cuda_count() -> int:
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def resolve_device(spec: str | None, supported: Sequence[str] | None = None, *, model: str = "") -> str:
    """The concrete device for a request; a clear error when it cannot be had.

    ``supported`` is the record's ``package.devices`` (``cpu``/``cuda``); empty means any.
    """
    want = (spec or "auto").strip().lower()
    allowed = [d.lower() for d in (supported or [])]
    where = f"{model}: " if model else ""
    if want == "auto":
        count = _cuda_count()
        if count and (not allowed or "cuda" in allowed):
            return "cuda"
        if not allowed or "cpu" in allowed:
            return "cpu"
        raise ConfigError(f"{where}the model runs only on {', '.join(allowed)}, and no CUDA device is available here",
                          hint="run it on a machine with a CUDA GPU")
    if want == "cpu":
        if allowed and "cpu" not in allowed:
            raise ConfigError(f"{where}the model does not run on cpu (it supports: {', '.join(allowed)})",
                              hint="use --device cuda on a machine with a GPU")
        return "cpu"
    m = _CUDA.match(want)
    if not m:
        raise ConfigError(f"{where}unknown device {spec!r}", hint="use auto, cpu, cuda or cuda:N")
    if allowed and "cuda" not in allowed:
        raise ConfigError(f"{where}the model does not run on cuda (it supports: {', '.join(allowed)})",
                          hint="use --device cpu")
    count = _cuda_count()
    if count == 0:
        raise ConfigError(f"{where}device {spec!r} was asked for, but torch sees no CUDA device here "
                          "(torch.cuda.is_available() is False)",
                          hint="use --device cpu (or auto), or install a CUDA build of torch on a GPU machine")
    index = int(m.group(1)) if m.group(1) is not None else None
    if index is not None and index >= count:
        raise ConfigError(f"{where}device {spec!r} does not exist: this machine has {count} CUDA device(s) "
                          f"(cuda:0 to cuda:{count - 1})", hint="pick an existing device index")
    return want
