"""Package formats: one adapter per ``package.format`` behind one interface
(:class:`~.base.PackageFormat`); :func:`format_for` picks it, and a prepared package
carries it (``VerifiedPackage.format``)."""

from __future__ import annotations

from .base import LoadedModel, PackageFormat, PackageView
from .table import FORMATS, format_for, load_model

__all__ = ["FORMATS", "LoadedModel", "PackageFormat", "PackageView", "format_for", "load_model"]
