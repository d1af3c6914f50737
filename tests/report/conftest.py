"""Fixtures for the report tests (helpers live in report_helpers.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from report_helpers import CHROMIUM, CHROMIUM_ARGS, REPO, capture_cpu_traces

SMALL, BIG = 16, 768


@pytest.fixture(scope="session")
def cpu_traces(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Two real CPU traces of the same loop: a small and a much bigger hidden layer."""
    return capture_cpu_traces(tmp_path_factory.mktemp("cpu-traces"), (SMALL, BIG))


@pytest.fixture(scope="session")
def profiled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory written by the real `perftune profile` on a sample with findings."""
    pytest.importorskip("torch", reason="perftune profile needs torch")
    sample = REPO / "samples" / "scalar_readback.py"
    if not sample.exists():
        pytest.skip(f"{sample} is absent")
    run_dir = tmp_path_factory.mktemp("profiled") / "run"
    env = {**os.environ, "PERFTUNE_NO_PROGRESS": "1"}
    env.pop("PERFTUNE_KNOBS", None)
    done = subprocess.run([sys.executable, "-m", "perftune", "profile", "--out", str(run_dir),
                           "--detail", "full", "--quiet", "--skip", "2", "--active", "3",
                           str(sample)], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path_factory.getbasetemp())
    missing = [name for name in ("trace.json.gz", "steps.json", "findings.json", "report.html")
               if not (run_dir / name).exists()]
    if missing:
        pytest.skip(f"`perftune profile` did not write {', '.join(missing)} (rc {done.returncode}): "
                    f"{done.stderr[-800:]}")
    return run_dir


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
