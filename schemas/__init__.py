"""JSON Schemas shipped with synthmed (package data)."""
