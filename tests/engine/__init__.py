"""Tests against the real Docker engine, Compose and the local registry (marker: engine)."""
