"""Gate launches forked from a zygote per side: real git repo, real training processes.

Each side's launches are forked from a zygote that imported torch once in that side's working
directory and environment, so the script's own modules still come from that side's checkout
(the base from the temporary worktree, the head from the working tree). Asserted on what load
cannot flip: a 4x change of work imported from a module, and how each launch was started.
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


def test_each_side_forks_from_its_own_zygote_and_imports_its_own_modules(repo: Path, tmp_path: Path) -> None:
    (repo / "work.py").write_text("WORK = 4\n")  # uncommitted: only the head has it
    out = perftune("gate", "--against", "HEAD", *MEASURE, "--launches", "3", "--max-launches", "5",
                   "--out", str(tmp_path / "run"), "train.py", cwd=repo)
    assert out.returncode == 1, out.stdout + out.stderr
    verdict = json.loads((tmp_path / "run" / "gate.json").read_text())
    # The base's forks imported the worktree's work.py (WORK = 1), the head's the working tree's.
    assert verdict["ratio"] > 2.0
    assert {launch["started_by"] for launch in verdict["launches"]} == {"zygote"}
    assert any("forked from a zygote" in note for note in verdict["notes"])
    for side in ("base", "head"):
        assert (tmp_path / "run" / "zygote" / side / "zygote.log").exists()


def test_no_reuse_and_a_stored_baseline_launch_fresh_processes(repo: Path, tmp_path: Path) -> None:
    out = perftune("gate", "--against", "HEAD", *MEASURE, "--launches", "2", "--max-launches", "2",
                   "--no-reuse", "--out", str(tmp_path / "fresh"), "train.py", cwd=repo)
    assert out.returncode in (0, 4), out.stdout + out.stderr
    verdict = json.loads((tmp_path / "fresh" / "gate.json").read_text())
    assert {launch["started_by"] for launch in verdict["launches"]} == {"fresh"}
    assert not any("zygote" in note for note in verdict["notes"])

    # The stored samples were measured in fresh processes, so the head is measured alike.
    stored = tmp_path / "perf-baseline.json"
    rec = perftune("baseline", "-o", str(stored), "--warmup", "2", "--steps", "4", "--launches", "2",
                   "-q", "--no-explain", "--out", str(tmp_path / "rec"), "train.py", cwd=repo)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    gated = perftune("gate", "--baseline", str(stored), "--launches", "2", "--max-launches", "2",
                     "-q", "--no-explain", "--out", str(tmp_path / "base"), "train.py", cwd=repo)
    assert gated.returncode in (0, 1, 4), gated.stdout + gated.stderr
    verdict = json.loads((tmp_path / "base" / "gate.json").read_text())
    assert {launch["started_by"] for launch in verdict["launches"]} == {"fresh"}
