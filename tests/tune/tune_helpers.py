"""Helpers for the tuner tests: paths of the test scripts and a way to run `perftune tune`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "scripts"
ROOT = HERE.parents[1]
SAMPLES = ROOT / "samples"
# A GPT small enough for a trial to take a second or two on a loaded 2-core machine.
TINY_GPT = (
    str(SAMPLES / "gpt.py"),
    "--seq-len", "16", "--d-model", "32", "--layers", "2", "--heads", "2", "--vocab", "64",
)


def perftune_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "perftune", *args]


def run_tune(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`perftune tune ARGS` in a subprocess, as a user runs it."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        perftune_cmd("tune", *args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def load_tuning(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "tuning.json").read_text())
