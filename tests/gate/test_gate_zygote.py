"""Gate launches forked from a zygote per side: real git repo, real training processes.

Each side's launches are forked from a zygote that imported torch once in that side's working
directory and environment, so the script's own modules still come from that side's checkout
(the base from the temporary worktree, the head from the working tree). Asserted on what load
cannot flip: how each launch was started. (That each side's zygote imports that side's own
modules is asserted on test_gate_cli.py's 4x regression gate, whose work comes from a module.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TRAIN = """\
import time

import torch
from torch import nn

from work import WORK

torch.set_num_threads(1)
model = nn.Linear(64, 64)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(16, 64)
for step in range(30):
    optimizer.zero_grad()
    for _ in range(WORK * 4):
        model(x).pow(2).mean().backward()
        time.sleep(0.002)  # a fixed wait: the same on a busy runner as on a quiet one
    optimizer.step()
"""
MEASURE = ["--warmup", "2", "--steps", "4", "-q", "--no-explain"]


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def perftune(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY")}
    return subprocess.run([sys.executable, "-m", "perftune", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "ci@example.com")
    git(root, "config", "user.name", "ci")
    (root / "train.py").write_text(TRAIN)
    (root / "work.py").write_text("WORK = 1\n")
    git(root, "add", "train.py", "work.py")
    git(root, "commit", "-q", "-m", "reference")
    return root


def test_no_reuse_launches_fresh_processes(repo: Path, tmp_path: Path) -> None:
    # (A --baseline gate's launches are fresh too: asserted in test_gate_cli.py's round trip.)
    out = perftune("gate", "--against", "HEAD", *MEASURE, "--launches", "2", "--max-launches", "2",
                   "--no-reuse", "--out", str(tmp_path / "fresh"), "train.py", cwd=repo)
    assert out.returncode in (0, 4), out.stdout + out.stderr
    verdict = json.loads((tmp_path / "fresh" / "gate.json").read_text())
    assert {launch["started_by"] for launch in verdict["launches"]} == {"fresh"}
    assert not any("zygote" in note for note in verdict["notes"])
