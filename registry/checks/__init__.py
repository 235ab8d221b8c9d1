"""Layer 7, checking: model tests (pure checks, one model, a site's models) and their reports."""
