"""The module-name map stays out of torch.compile's way: a script that compiled its model gets
no module hook (the profiler's names stay, and a note says why)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""\
    import torch
    import torch.nn as nn

    model = torch.compile(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)), backend="eager")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(6):
        opt.zero_grad()
        model(torch.randn(4, 8)).sum().backward()
        opt.step()
""")


def test_compiled_model_gets_no_module_hook(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    (tmp_path / "compiled.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PERFTUNE_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "perftune", "profile", "--out", str(tmp_path / "run"),
                           "--skip", "2", "--active", "2", "compiled.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    trace = json.loads(gzip.decompress((tmp_path / "run" / "trace.json.gz").read_bytes()))
    assert "perftune_modules" not in trace
    notes = json.loads((tmp_path / "run" / "steps.json").read_text())["notes"]
    assert any("torch.compile" in n and "module names" in n for n in notes), notes
