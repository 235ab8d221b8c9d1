"""synthmed.registry: records, artefacts, the store, the catalog, the runner and model tests."""
