"""Artefact sources: one small interface (a byte stream, optionally from an offset) per
URI scheme (``index:``, ``zenodo:``, ``dvc:``, ``https://``/``http://``, ``file://``,
``mirror:``). See docs/artefacts.md."""

from .base import Source, SourceContext, SourceStream, candidate_uris, last_path_part, resolve

__all__ = ["Source", "SourceContext", "SourceStream", "candidate_uris", "last_path_part", "resolve"]
