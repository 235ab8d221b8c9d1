"""Layer 8, authoring: index-authoring tools (pin, index check, medigan import, contribute, package init) and site.toml for `synthmed init`."""
