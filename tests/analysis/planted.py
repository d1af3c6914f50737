"""The planted-module run: `perftune profile` on a compute-bound CPU script with one expensive
module, shared by the module, phase and one-number tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLANTED = Path(__file__).with_name("data") / "planted_module.py"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def planted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("planted")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PLANTED_STEPS": "12",
           "PERFTUNE_CACHE_DIR": str(out / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "perftune", "profile", "--out", str(out / "run"), "--skip", "3",
         "--active", "5", str(PLANTED), str(out / "hand.json")],
        capture_output=True, text=True, env=env, cwd=out, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out / "stderr.txt").write_text(proc.stderr)
    return out, proc.stdout


