"""Recommendation tests (tags and tag text search)."""
