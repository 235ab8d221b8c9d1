"""The scheme -> class table of artefact sources, and :func:`source_for_uri`.

This is the one place that knows every source class; it imports them all at module
level (the classes import only :mod:`.base`, so there is no cycle). A new scheme is a
:class:`~.base.Source` subclass and one line in :data:`SOURCE_CLASSES`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from .base import Source, SourceContext, scheme_of, source_error
from .dvc import DvcSource
from .file import FileSource
from .http import HttpSource
from .index import IndexSource
from .mirror import MirrorSource
from .zenodo import ZenodoSource

#: URI scheme (lower case, without the colon) -> the class that reads it
SOURCE_CLASSES: Mapping[str, type[Source]] = MappingProxyType({
    "index": IndexSource,
    "zenodo": ZenodoSource,
    "dvc": DvcSource,
    "https": HttpSource,
    "http": HttpSource,
    "file": FileSource,
    "mirror": MirrorSource,
})


def source_for_uri(uri: str, ctx: SourceContext, sha256: str | None = None) -> Source:
    """Turn a source URI into a :class:`~.base.Source`; ``sha256`` is needed by ``mirror:``.

    Raises :class:`~synthmed.registry.errors.SourceError` for an unknown scheme or a
    malformed URI; does no I/O (the offline rule and every read happen in ``open``).
    """
    cls = SOURCE_CLASSES.get(scheme_of(uri))
    if cls is None:
        forms = [f"{s}://" if s in ("https", "http", "file") else f"{s}:" for s in SOURCE_CLASSES]
        raise source_error(uri, "unknown source scheme", hint=f"use {', '.join(forms[:-1])} or {forms[-1]}")
    return cls(uri, ctx, sha256)
