"""Fixtures for the capture tests (helpers live in capture_helpers.py)."""

from capture_helpers import profile

__all__ = ["profile"]
