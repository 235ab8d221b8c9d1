"""Artefact sources: one base class (:class:`Source`: a byte stream, optionally from an
offset; every transport failure a :class:`~synthmed.registry.errors.SourceError`; the
offline rule applied once) and one subclass per URI scheme (``index:``, ``zenodo:``,
``dvc:``, ``https://``/``http://``, ``file://``, ``mirror:``), looked up by
:func:`source_for_uri` in :data:`SOURCE_CLASSES`. See docs/artefacts.md."""

from .base import GuardedStream, Source, SourceContext, SourceStream, candidate_uris, last_path_part
from .table import SOURCE_CLASSES, source_for_uri

__all__ = ["GuardedStream", "SOURCE_CLASSES", "Source", "SourceContext", "SourceStream", "candidate_uris",
           "last_path_part", "source_for_uri"]
