"""A `perftune tune` that is killed outright (kill -9) leaves no trial running behind it."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from tune_helpers import perftune_cmd

pytestmark = pytest.mark.slow

# Each trial process leaves its pid in PIDS, then takes 0.3 s a step.
SCRIPT = """\
import os, sys, time
import torch
import perftune
label = perftune.knob("label", "a")
with open(os.path.join({pids!r}, str(os.getpid())), "w") as fh:
    fh.write(label)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for _step in range(1000):
    model(torch.randn(8, 4)).pow(2).mean().backward()
    optimizer.step()
    optimizer.zero_grad()
    time.sleep(0.3)
"""


def _running(cwd: Path) -> list[int]:
    """Processes (not zombies) working in `cwd`: the tuner's trials, their clients, the zygote."""
    found = []
    for proc in psutil.process_iter(["pid", "cwd", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and proc.info["cwd"] == str(cwd):
                found.append(proc.info["pid"])
        except psutil.Error:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_trials_die_with_a_killed_tuner(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    script = tmp_path / "slow_trial.py"
    script.write_text(SCRIPT.format(pids=str(pids)))
    proc = subprocess.Popen(
        perftune_cmd("tune", "--knob", "label=a,b,c", "--no-declared", "--repeats", "0",
                     "--trial-warmup", "1", "--trial-steps", "500", "-q", "--out", str(tmp_path / "run"),
                     str(script)),
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while not list(pids.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(pids.iterdir()), f"no trial started (perftune exited {proc.poll()})"
    proc.kill()
    proc.wait(timeout=30)

    # Before the fix the client of a zygote trial lived on and ran the trial again, fresh.
    deadline = time.monotonic() + 30
    while (_running(tmp_path) or any(_alive(int(p.name)) for p in pids.iterdir())) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    left = _running(tmp_path)
    trials = [int(p.name) for p in pids.iterdir() if _alive(int(p.name))]
    for pid in {*left, *trials}:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    assert not left and not trials, f"still running after the tuner was killed: {left} {trials}"
