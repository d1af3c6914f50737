"""Shared fixtures: the real GPU traces in ../shared/traces (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
# One reason for every test that needs them, so that a fresh clone's skip summary is one line
# that says what is missing and where it is looked for (the core paths have generated fixtures).
SHARED_SKIP = (f"needs the real GPU traces in ../shared/traces ({SHARED_TRACES}), which are not "
               "beside this checkout")


def shared_trace(name: str) -> Path:
    path = SHARED_TRACES / name
    if not path.exists():
        pytest.skip(SHARED_SKIP)
    return path


@pytest.fixture
def real_trace():
    return shared_trace
