"""Fixtures for the report tests (helpers live in report_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from report_helpers import CHROMIUM, CHROMIUM_ARGS, REPO, capture_cpu_traces, profile_into

SMALL, BIG = 16, 768


@pytest.fixture(scope="session")
def cpu_traces(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Two real CPU traces of the same loop: a small and a much bigger hidden layer."""
    return capture_cpu_traces(tmp_path_factory.mktemp("cpu-traces"), (SMALL, BIG))


@pytest.fixture(scope="session")
def profiled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory written by the real `perftune profile` on a sample with findings."""
    return profile_into(REPO / "samples" / "scalar_readback.py",
                        tmp_path_factory.mktemp("profiled") / "run")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"headless browser tests need Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="browser tests need the playwright package")
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()
