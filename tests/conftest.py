"""Shared fixtures: the real GPU traces in ../shared/traces (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"


def shared_trace(name: str) -> Path:
    path = SHARED_TRACES / name
    if not path.exists():
        pytest.skip(f"real trace {name} not found in {SHARED_TRACES} (the shared/ folder is absent)")
    return path


@pytest.fixture
def real_trace():
    return shared_trace
