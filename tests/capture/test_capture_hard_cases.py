"""Scripts that do awkward things: their own profiler, workers, early exits, crashes, Ctrl-C."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from capture_helpers import child_env, profile_command, train_script, write


def test_script_with_its_own_profiler_around_the_loop(tmp_path: Path, profile) -> None:
    script = write(
        tmp_path / "own.py",
        train_script(
            header="""\
            import torch.profiler as tp
            own = tp.profile(activities=[tp.ProfilerActivity.CPU],
                             schedule=tp.schedule(wait=1, warmup=1, active=2, repeat=1),
                             on_trace_ready=lambda p: p.export_chrome_trace("own_trace.json"))
            own.start()
        """,
            after_step="own.step()",
        )
        + "own.stop()\n",
    )

    done = profile(str(script), "--steps", "12")

    assert done.returncode == 0, done.stderr
    assert done.steps["status"] == "ok"
    assert done.steps["profiler"] == "script"
    assert not (done.run_dir / "trace.json.gz").exists()
    assert {s["phase"] for s in done.steps["steps"]} == {"warmup", "measured"}
    assert len(done.steps["steps"]) == 12  # let run to its end so its own trace is written
    own = json.loads((tmp_path / "own_trace.json").read_text())
    assert any(e.get("name") == "ProfilerStep#2" for e in own["traceEvents"])
    assert "runs its own torch.profiler" in done.stdout


def test_script_starting_its_profiler_inside_perftunes_window(tmp_path: Path, profile) -> None:
    script = write(
        tmp_path / "own.py",
        train_script(
            header="import torch.profiler as tp\n",
            before_step="""\
            if step == 6:
                own = tp.profile(activities=[tp.ProfilerActivity.CPU])
                own.start()
        """,
            after_step="""\
            if step == 9:
                own.stop()
                own.export_chrome_trace("own_trace.json")
        """,
        ),
    )

    done = profile(str(script), "--steps", "12")  # perftune's window: steps 5-7

    assert done.returncode == 0, done.stderr
    steps = done.steps
    assert steps["profiler"] == "script"
    assert not (done.run_dir / "trace.json.gz").exists()
    assert "profiled" not in {s["phase"] for s in steps["steps"]}
    own = json.loads((tmp_path / "own_trace.json").read_text())
    assert any(e.get("name") == "aten::linear" for e in own["traceEvents"])


def test_dataloader_workers_do_not_record_steps(tmp_path: Path, profile) -> None:
    script = write(
        tmp_path / "workers.py",
        """\
        import os
        import torch
        from torch.utils.data import DataLoader, Dataset

        class Data(Dataset):
            def __len__(self):
                return 64
            def __getitem__(self, i):
                # Workers must not inherit perftune's configuration.
                assert "PERFTUNE_CAPTURE_SPEC" not in os.environ
                return torch.randn(8), torch.randn(1)

        if __name__ == "__main__":
            model = torch.nn.Linear(8, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            loader = DataLoader(Data(), batch_size=6, num_workers=2)
            for epoch in range(3):
                for x, y in loader:
                    opt.zero_grad()
                    torch.nn.functional.mse_loss(model(x), y).backward()
                    opt.step()
            print("TRAINING DONE")
    """,
    )

    done = profile("--skip", "3", "--active", "2", str(script))

    assert done.returncode == 0, done.stderr
    steps = done.steps
    assert steps["status"] == "ok"
    assert [s["index"] for s in steps["steps"]] == [0, 1, 2, 3, 4]
    assert [s["samples"] for s in steps["steps"]] == [6] * 5  # batch size from the DataLoader
    assert "Traceback" not in done.stderr


def test_exit_before_the_window_is_profiled_again_with_a_window_that_fits(
        tmp_path: Path, profile) -> None:
    script = write(
        tmp_path / "short.py",
        train_script(
            after_step="""\
        if step == 2:
            sys.exit(0)
    """,
            header="import sys\n",
        ),
    )

    done = profile(str(script))

    assert done.returncode == 0  # the script's own exit code
    steps = done.steps
    # It ended after 3 steps, before the default window (steps 5 to 7): a short run is run
    # again with a window that fits, not left without a trace.
    assert steps["status"] == "ok"
    assert steps["exit_code"] == 0
    assert [s["phase"] for s in steps["steps"]] == ["warmup", "profiled", "profiled"]
    assert (done.run_dir / "trace.json.gz").exists()
    assert "ended after 3 steps" in done.stdout
    assert "--skip 1 --active 2" in done.stdout
    assert "lower --skip" not in done.stdout + done.stderr


def test_crash_shows_the_scripts_traceback_and_keeps_steps(tmp_path: Path, profile) -> None:
    script = write(
        tmp_path / "crash.py",
        train_script(
            after_step="""\
        if step == 6:
            raise ValueError("boom at step 6")
    """
        ),
    )

    done = profile(str(script))

    assert done.returncode == 3
    assert "Traceback (most recent call last):" in done.stderr
    assert f'File "{script}", line' in done.stderr
    assert "ValueError: boom at step 6" in done.stderr
    assert "perftune/capture" not in done.stderr  # the traceback starts in the script
    steps = done.steps
    assert steps["status"] == "crashed"
    assert steps["error"] == "ValueError: boom at step 6"
    assert steps["exit_code"] == 1
    assert len(steps["steps"]) == 7
    # The window was cut short: the trace holds the profiled steps done before the crash.
    assert any(e.get("name") == "ProfilerStep#5" for e in done.trace()["traceEvents"])
    assert "cut short" in done.stdout


def test_memory_error_is_reported_as_oom(tmp_path: Path, profile) -> None:
    script = write(
        tmp_path / "oom.py",
        train_script(
            after_step="""\
        if step == 1:
            raise MemoryError("cannot allocate")
    """
        ),
    )

    done = profile(str(script))

    assert done.returncode == 3
    assert done.steps["status"] == "oom"
    assert "MemoryError" in done.stderr
    assert len(done.steps["steps"]) == 2


def test_nan_loss_is_reported(tmp_path: Path, profile) -> None:
    script = write(
        tmp_path / "nan.py",
        train_script(
            before_step="""\
        if step == 3:
            y = y * float("nan")
    """
        ),
    )

    done = profile(str(script))

    assert done.returncode == 0
    assert done.steps["status"] == "nan"
    assert "not finite at step 5" in done.steps["error"]
    assert done.steps["steps"][5]["loss"] is None


def _wait_for(path: Path, proc: subprocess.Popen[str], limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the script never started its steps"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_ctrl_c_keeps_partial_results(tmp_path: Path, terminal: bool) -> None:
    """SIGINT sent to perftune alone reaches the script, with stdin piped or a terminal.

    With a terminal the script shares perftune's process group (so it may read the terminal);
    perftune then forwards a SIGINT that only it received after a short delay.
    """
    ready = tmp_path / "ready"
    script = write(
        tmp_path / "endless.py",
        train_script(
            header="import pathlib, time\n",
            after_step=f"""\
            time.sleep(0.02)
            if step == 3:
                pathlib.Path({str(ready)!r}).touch()
        """,
        ),
    )
    run_dir = tmp_path / "run"
    controller, terminal_side = pty.openpty() if terminal else (None, None)
    proc = subprocess.Popen(
        profile_command("--no-analyze", "--out", str(run_dir), "--skip", "100000", str(script)),
        cwd=tmp_path,
        env=child_env(),
        stdin=terminal_side if terminal else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(ready, proc)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to perftune
        _, stderr = proc.communicate(timeout=60)
    finally:
        for fd in (controller, terminal_side):
            if fd is not None:
                os.close(fd)

    assert proc.returncode == 130
    steps = json.loads((run_dir / "steps.json").read_text())
    assert steps["status"] == "interrupted"
    assert len(steps["steps"]) >= 4
    assert "KeyboardInterrupt" in stderr  # the script saw Ctrl-C as python would show it


@pytest.mark.slow
def test_timeout_kills_the_script_and_what_it_started(tmp_path: Path, profile) -> None:
    pid_file = tmp_path / "grandchild.pid"
    # No optimizer (whose creation costs a second): steps start as soon as torch is imported.
    script = write(
        tmp_path / "hang.py",
        f"""\
        import pathlib, subprocess, sys, time
        import perftune
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        pathlib.Path({str(pid_file)!r}).write_text(str(sleeper.pid))
        while True:
            time.sleep(0.05)
            perftune.step()
        """,
    )

    # The timeout must come after the script started its sleeper and measured a step: a short
    # one first; when it came earlier (torch's import is slow on a busy machine) the case was not
    # reached and the script runs again with a long one.
    for attempt, timeout in enumerate((8, 30)):
        pid_file.unlink(missing_ok=True)
        started = time.monotonic()
        done = profile("--timeout", str(timeout), "--skip", "100000", str(script),
                       out=tmp_path / f"run-{attempt}")
        elapsed = time.monotonic() - started
        if pid_file.exists() and (done.run_dir / "steps.json").exists() and done.steps["steps"]:
            break

    assert elapsed < timeout + 70
    assert done.returncode == 3
    steps = done.steps
    assert steps["status"] == "timeout"
    assert f"timeout of {timeout} s" in steps["error"]
    assert len(steps["steps"]) > 0  # the steps measured before the timeout are kept
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
