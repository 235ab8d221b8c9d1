"""synthmed.daemon: the sync service."""
