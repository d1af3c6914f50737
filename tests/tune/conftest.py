"""Fixtures of the tuner tests (helpers live in tune_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A working directory with a pyproject.toml, so no [tool.perftune] of a parent applies."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    return tmp_path
