"""Tests of the embedding engine (lib/engine)."""
