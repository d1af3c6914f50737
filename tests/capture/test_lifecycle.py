"""How a capture's processes end: signals, a killed perftune, a killed script, leftovers.

Real processes and real signals throughout; every wait has a generous deadline and the
assertions are about what happened, never how fast.
"""

from __future__ import annotations

import array
import fcntl
import json
import os
import signal
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from capture_helpers import Profiled, child_env, profile_command, write

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


# Writes its pid, then nearly fills its stdout pipe (all but 64 bytes) before training: the
# perftune parent, which shares that pipe, blocks when it prints its summary after the script
# ended, until the test reads. The test can thus signal perftune at a moment it knows no child
# runs, instead of hoping to hit one.
FILLS_STDOUT = """\
import fcntl, os, sys
import torch
pids = sys.argv[1]
with open(os.path.join(pids, "script.pid.tmp"), "w") as fh:
    fh.write(str(os.getpid()))
os.replace(os.path.join(pids, "script.pid.tmp"), os.path.join(pids, "script.pid"))
room = fcntl.fcntl(1, fcntl.F_GETPIPE_SZ) - 64
os.write(1, b"x" * room)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(50):
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
"""


def perftune_wrote_after_the_script(reader: int) -> bool:
    """More bytes wait in the pipe than the script wrote: perftune has started printing its
    summary (262 bytes; it blocks on a line that does not fit the 64 left)."""
    waiting = array.array("i", [0])
    fcntl.ioctl(reader, termios.FIONREAD, waiting)
    return waiting[0] > fcntl.fcntl(reader, fcntl.F_GETPIPE_SZ) - 64


def test_sigint_between_child_processes_stops_perftune_started_with_sigint_ignored(
        tmp_path: Path) -> None:
    """Regression (the Ctrl-C "sometimes lost" in CI): a shell's background job (`cmd &` in a
    script, a backgrounded CI run and its pytest-xdist workers) starts with SIGINT ignored, and
    python keeps it ignored. perftune heeded SIGINT only while a child ran (the supervisor's
    handler) and restored "ignored" after it, so a SIGINT at any other moment (between launches
    or trials, while analysing) was discarded and the command ran on to its end."""
    script = write(tmp_path / "fills.py", FILLS_STDOUT)
    pids = tmp_path / "pids"
    pids.mkdir()
    proc = start_profile(tmp_path, "--skip", "1", "--active", "2", str(script), str(pids),
                         ignore_sigint=True)
    script_pid = read_pid(pids / "script.pid", proc)
    assert proc.stdout is not None
    # The script has ended and perftune printed after it: perftune is past the child and will
    # block on its summary until the test reads (no child runs when the signal comes).
    assert wait_until(lambda: (not alive(script_pid)
                               and perftune_wrote_after_the_script(proc.stdout.fileno()))
                      or proc.poll() is not None, 120)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert "perftune: interrupted" in err and "Traceback" not in err


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


# -- the end of a script stopped after the window ----------------------------------------------

# A worker thread the script stops only after its training loop, as plain python ends it.
WORKER_AFTER_TRAINING = """\
import threading, time
import torch
stop = threading.Event()
def work():
    while not stop.is_set():
        time.sleep(0.05)
worker = threading.Thread(target=work, name="script-worker")
worker.start()
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(20):
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
stop.set()
worker.join()
print("TRAINING DONE", flush=True)
"""

# The same worker, stopped by an atexit handler: python would run it after the thread ended,
# which is never; perftune runs exit handlers first, so this one ends at once.
WORKER_STOPPED_AT_EXIT = WORKER_AFTER_TRAINING.replace(
    "worker.start()\n", "worker.start()\nimport atexit\natexit.register(stop.set)\n"
)

# Starts a long-lived child process and records its pid.
SLEEP_CHILD = """\
import subprocess, sys
import torch
child = subprocess.Popen(["sleep", "300"])
with open(sys.argv[1], "w") as fh:
    fh.write(str(child.pid))
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(20):
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
child.wait()
"""


def run_profile(tmp_path: Path, script_text: str, *args: str, options: tuple[str, ...] = ()) -> Profiled:
    script = write(tmp_path / "script.py", script_text)
    done = subprocess.run(
        profile_command("--out", str(tmp_path / "run"), "--no-analyze", *options, str(script), *args),
        cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=300,  # before the fix: hangs forever
    )
    return Profiled(done.returncode, done.stdout, done.stderr, tmp_path / "run")


def test_a_worker_thread_stopped_after_training_does_not_hang_the_run(tmp_path: Path) -> None:
    out = run_profile(tmp_path, WORKER_AFTER_TRAINING)
    assert out.returncode == 0, out.stderr
    assert out.steps["status"] == "ok"
    assert len(out.steps["steps"]) == 8  # 5 warm-up + 3 profiled
    notes = " ".join(out.steps["notes"])
    assert "script-worker" in notes and "non-daemon threads" in notes


def test_exit_handlers_run_before_the_threads_are_waited_for(tmp_path: Path) -> None:
    out = run_profile(tmp_path, WORKER_STOPPED_AT_EXIT)
    assert out.returncode == 0, out.stderr
    assert out.steps["status"] == "ok"
    assert not any("thread" in note for note in out.steps["notes"])


# An exit handler that outlasts perftune's --timeout.
SLOW_EXIT_HANDLER = WORKER_STOPPED_AT_EXIT.replace(
    "atexit.register(stop.set)\n", "atexit.register(stop.set)\natexit.register(time.sleep, 300)\n"
)


def test_a_timeout_during_the_scripts_shutdown_prints_no_traceback_of_perftune(
    tmp_path: Path,
) -> None:
    # The timeout must come after the training loop, in the exit handler's sleep: a short one
    # first; when the 8 steps were not all recorded the script was still starting or training
    # (torch's import is slow on a busy machine), so it runs again with a long one.
    for attempt, timeout in enumerate(("15", "30")):
        (tmp_path / f"attempt-{attempt}").mkdir()
        out = run_profile(tmp_path / f"attempt-{attempt}", SLOW_EXIT_HANDLER,
                          options=("--timeout", timeout))
        if (out.run_dir / "steps.json").exists() and len(out.steps["steps"]) == 8:
            break
    assert "Traceback" not in out.stderr, out.stderr
    assert len(out.steps["steps"]) == 8
    assert out.steps["status"] == "timeout"


def test_a_child_process_the_script_started_is_ended(tmp_path: Path) -> None:
    pid_file = tmp_path / "sleep.pid"
    out = run_profile(tmp_path, SLEEP_CHILD, str(pid_file))
    sleep_pid = int(pid_file.read_text())
    gone = wait_until(lambda: not alive(sleep_pid), limit=10)
    if not gone:
        os.kill(sleep_pid, signal.SIGKILL)
    assert gone, "the script's sleep child outlived the run"
    assert out.returncode == 0, out.stderr
    assert len(out.steps["steps"]) == 8
    assert f"sleep (pid {sleep_pid})" in " ".join(out.steps["notes"])


# -- a script killed outright ------------------------------------------------------------------

# perftune.step() marks 6 steps, the last one after a pause long enough for the steps to be
# saved (they are saved at most every 0.5 s), then the script SIGKILLs itself.
KILLS_ITSELF = """\
import os, signal, time
import perftune
for step in range(5):
    time.sleep(0.02)
    perftune.step()
time.sleep(0.7)
perftune.step()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_script_killed_by_sigkill_keeps_its_steps_and_is_not_called_oom(tmp_path: Path) -> None:
    out = run_profile(tmp_path, KILLS_ITSELF, options=("--skip", "100"))
    assert out.returncode == 3, out.stderr
    steps = out.steps
    assert len(steps["steps"]) >= 6
    assert steps["status"] == "crashed"
    assert "SIGKILL" in steps["error"] and "memory" not in steps["error"]


def test_a_sigkilled_trial_is_crashed_not_oom(tmp_path: Path) -> None:
    from perftune.capture.parent.runner import CaptureOptions, ScriptTarget, run_capture
    from perftune.tune.objective import Objective
    from perftune.tune.trial import Measurement, outcome_from_capture

    script = write(tmp_path / "script.py", KILLS_ITSELF)
    run_dir = tmp_path / "trial"
    result = run_capture(ScriptTarget(path=script, cwd=tmp_path), run_dir,
                         CaptureOptions(skip=2, active=100, profile=False, quiet=True))
    assert len(result.steps) >= 6
    outcome = outcome_from_capture(
        status=result.status, error=result.error, exit_code=result.exit_code,
        measured=result.measured(), peak_memory_bytes=None, run_dir=run_dir, wall_s=1.0,
        values={}, objective=Objective(), measurement=Measurement(warmup=2, steps=100),
    )
    assert outcome.status == "crashed", outcome
    assert "SIGKILL" in (outcome.reason or "")


# An exit handler that is still running when Ctrl-C comes (torch registers some of its own).
TWO_SECOND_EXIT_HANDLER = WORKER_STOPPED_AT_EXIT.replace(
    "atexit.register(stop.set)\n",
    "atexit.register(stop.set)\n"
    "def slow():\n"
    "    open('exit-handler-started', 'w').close()\n"
    "    time.sleep(2)\n"
    "atexit.register(slow)\n",
)


def test_ctrl_c_while_the_exit_handlers_run_ends_quietly(tmp_path: Path) -> None:
    """Regression: a Ctrl-C that landed inside an atexit handler printed "Exception ignored in
    atexit callback" and a traceback; it now waits for the handlers, then ends the child."""
    script = write(tmp_path / "script.py", TWO_SECOND_EXIT_HANDLER)
    proc = start_profile(tmp_path, str(script))
    marker = tmp_path / "exit-handler-started"
    assert wait_until(lambda: marker.exists() or proc.poll() is not None, 120)
    assert marker.exists(), proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert "Traceback" not in err, err
    assert "Exception ignored" not in err, err
    # The window was complete, but Ctrl-C stops perftune (it used to go on and exit 0).
    assert proc.returncode == 130, err
    steps = json.loads((tmp_path / "run" / "steps.json").read_text())
    assert len(steps["steps"]) == 8 and steps["status"] == "interrupted"


def test_ctrl_c_during_the_grace_period_ends_quietly(tmp_path: Path) -> None:
    script = write(tmp_path / "script.py", WORKER_AFTER_TRAINING)
    run = tmp_path / "run"
    proc = start_profile(tmp_path, str(script))
    # The child's private results file appears when the window is done and the results are
    # written; the wind-down (3 s of grace for the lingering thread) follows.
    assert wait_until(lambda: (run / ".capture-child.json").exists() or proc.poll() is not None, 120)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert "Traceback" not in err, err
    # The steps are all kept; the Ctrl-C that came while perftune was ending the script stops
    # perftune too (it was swallowed: the child had reported "ok", so perftune ran on, exit 0).
    assert proc.returncode == 130, err
    steps = json.loads((run / "steps.json").read_text())
    assert len(steps["steps"]) == 8 and steps["status"] == "interrupted"
