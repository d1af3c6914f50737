"""Shared fixtures: the real GPU traces in ../shared/traces (skipped when absent)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def shared_trace_names() -> list[Any]:
    """Every shared trace (*.json.gz) by name, to parametrize over; without ../shared, one
    placeholder that skips with SHARED_SKIP (not an empty parameter set, whose skip says
    nothing about what is missing)."""
    names = sorted(p.name for p in SHARED_TRACES.glob("*.json.gz")) if SHARED_TRACES.is_dir() else []
    return names or [pytest.param("<no shared traces>", marks=pytest.mark.skip(reason=SHARED_SKIP))]


@pytest.fixture
def real_trace():
    return shared_trace


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A SHARED_SKIP skip is reported at shared_trace(), wherever it was raised (a module
    fixture, a parameter's mark), so `-rs` shows one line for all of them."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple) and report.longrepr[2].endswith(SHARED_SKIP):
        report.longrepr = (__file__, _skip_line(), f"Skipped: {SHARED_SKIP}")


def _skip_line() -> int:
    """The line (1-based) of the pytest.skip call in shared_trace()."""
    import inspect

    lines, first = inspect.getsourcelines(shared_trace)
    return first + next(k for k, line in enumerate(lines) if "pytest.skip" in line)
