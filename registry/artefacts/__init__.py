"""Layer 4, artefacts: sources (transports), the content-addressed store, the copy pipeline, safe archives and the packages folder."""
