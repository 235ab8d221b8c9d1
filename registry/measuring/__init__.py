"""Layer 7, measuring: metrics, extractors, site-local reference sets, ranking and evaluate."""
