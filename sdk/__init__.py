"""synthmed: a federated registry of pretrained generative models for medical imaging.

``from synthmed import Generators`` keeps medigan's one-line API; ``Site`` is the plain
modern API under it. Heavy imports (torch) happen lazily, on first use.
"""

from __future__ import annotations

from typing import Any

from .registry.stamps import synthmed_version

__all__ = ["Generators", "Site", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # the installed version, read on first use (registry/stamps.py)
        return synthmed_version()
    if name == "Generators":
        from .generators import Generators

        return Generators
    if name == "Site":
        from .site import Site

        return Site
    if name == "errors":
        from .registry import errors

        return errors
    raise AttributeError(f"module 'synthmed' has no attribute {name!r}")
