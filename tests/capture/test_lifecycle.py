"""How a capture's processes end: signals, a killed perftune, a killed script, leftovers.

Real processes and real signals throughout; every wait has a generous deadline and the
assertions are about what happened, never how fast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from capture_helpers import child_env, profile_command, write

pytestmark = pytest.mark.slow

# Writes its pid into PIDS/<name>.pid, then trains slowly (0.2 s a step) for a long time.
SLOW = """\
import os, sys, time
import torch
pids = sys.argv[1]
with open(os.path.join(pids, "script.pid.tmp"), "w") as fh:
    fh.write(str(os.getpid()))
os.replace(os.path.join(pids, "script.pid.tmp"), os.path.join(pids, "script.pid"))
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(3000):
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    time.sleep(0.2)
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(condition: Callable[[], bool], limit: float = 60.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def read_pid(path: Path, proc: subprocess.Popen[str], limit: float = 120.0) -> int:
    assert wait_until(lambda: path.exists() or proc.poll() is not None, limit), "no pid file"
    assert path.exists(), proc.communicate()
    return int(path.read_text())


def start_profile(tmp_path: Path, *args: str, ignore_sigint: bool = False) -> subprocess.Popen[str]:
    def ignore() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen(
        profile_command("--out", str(tmp_path / "run"), "--no-analyze", *args),
        cwd=tmp_path,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignore if ignore_sigint else None,
    )


def slow_run(tmp_path: Path, ignore_sigint: bool = False) -> tuple[subprocess.Popen[str], int]:
    script = write(tmp_path / "slow.py", SLOW)
    pids = tmp_path / "pids"
    pids.mkdir()
    proc = start_profile(tmp_path, "--skip", "1000", str(script), str(pids), ignore_sigint=ignore_sigint)
    return proc, read_pid(pids / "script.pid", proc)


# -- signals to perftune ---------------------------------------------------------------------


def test_sigint_stops_the_script_when_perftune_started_with_sigint_ignored(tmp_path: Path) -> None:
    # nohup and `cmd &` in a script start perftune with SIGINT ignored; its children inherit
    # that, so the Ctrl-C perftune forwards used to be swallowed and the run never ended.
    proc, script_pid = slow_run(tmp_path, ignore_sigint=True)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("perftune profile did not stop on SIGINT")
    assert proc.returncode == 130, err
    # (The script's own KeyboardInterrupt traceback is shown, as plain python shows it.)
    assert wait_until(lambda: not alive(script_pid))
    steps = json.loads((tmp_path / "run" / "steps.json").read_text())
    assert steps["status"] == "interrupted"


def test_sigterm_exits_143(tmp_path: Path) -> None:
    proc, script_pid = slow_run(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert wait_until(lambda: not alive(script_pid))


def test_the_script_dies_with_a_killed_perftune(tmp_path: Path) -> None:
    proc, script_pid = slow_run(tmp_path)
    proc.kill()
    proc.wait(timeout=30)  # not communicate(): an orphan would hold the pipes open
    gone = wait_until(lambda: not alive(script_pid), limit=30)
    if not gone:
        os.kill(script_pid, signal.SIGKILL)
    assert gone, "the script kept running after perftune was killed"
