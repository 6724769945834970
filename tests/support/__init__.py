"""Helpers shared by the tests: fixture images (images.py), the unprivileged user (unpriv.py)."""
