"""Finding steps: the optimizer hook, perftune.step(), --step-marker, and the time-slice fallback."""

from __future__ import annotations

from pathlib import Path

import pytest
from capture_helpers import train_script, write

# A training loop without an optimizer: a hand-written SGD update.
MANUAL_SGD = """\
import torch
import perftune
{marker_import}
w = torch.zeros(8, 1, requires_grad=True)
x, y = torch.randn(16, 8), torch.randn(16, 1)
for step in range({steps}):
    loss = ((x @ w - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        w -= 0.01 * w.grad
        w.grad.zero_()
    {end_of_step}
print("TRAINING DONE")
"""


def test_perftune_step_marks_steps_without_an_optimizer(tmp_path: Path, profile) -> None:
    script = write(
        tmp_path / "manual.py",
        MANUAL_SGD.format(marker_import="", steps=1000, end_of_step="perftune.step()"),
    )

    done = profile("--skip", "2", "--active", "2", str(script))

    assert done.returncode == 0, done.stderr
    steps = done.steps
    assert steps["step_source"] == "perftune.step"
    assert [s["phase"] for s in steps["steps"]] == ["warmup"] * 2 + ["profiled"] * 2
    assert all(isinstance(s["loss"], float) for s in steps["steps"])
    assert "TRAINING DONE" not in done.stdout
    assert "perftune.step() calls" in done.stdout


def test_script_with_perftune_step_runs_unchanged_without_perftune(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = write(
        tmp_path / "manual.py",
        MANUAL_SGD.format(marker_import="", steps=3, end_of_step="perftune.step()"),
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and "TRAINING DONE" in done.stdout


def test_step_marker_wraps_a_function_in_a_module(tmp_path: Path, profile) -> None:
    write(
        tmp_path / "loop.py",
        """\
        import torch

        def train_step(w, x, y):
            loss = ((x @ w - y) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                w -= 0.01 * w.grad
                w.grad.zero_()
            return loss
    """,
    )
    script = write(
        tmp_path / "main.py",
        MANUAL_SGD.format(
            marker_import="from loop import train_step", steps=1000, end_of_step="pass"
        ).replace(
            "    loss = ((x @ w - y) ** 2).mean()\n    loss.backward()\n",
            "    train_step(w, x, y)\n",
        ),
    )

    done = profile("--step-marker", "loop:train_step", "--skip", "2", "--active", "1", str(script))

    assert done.returncode == 0, done.stderr
    assert done.steps["step_source"] == "marker"
    assert len(done.steps["steps"]) == 3


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("no_such_module:fn", "cannot import no_such_module"),
        ("loop:missing", "loop has no missing"),
        ("__main__:train", "functions of the script itself"),
        ("not a marker", "must look like module:function"),
    ],
)
def test_unusable_step_marker_is_a_usage_error(
    tmp_path: Path, profile, marker: str, message: str
) -> None:
    write(tmp_path / "loop.py", "def train_step():\n    pass\n")
    script = write(tmp_path / "main.py", "print('should not run')\n")

    done = profile("--step-marker", marker, str(script))

    assert done.returncode == 2
    assert message in done.stderr
    assert "should not run" not in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_time_slices_when_no_step_is_visible(tmp_path: Path, profile) -> None:
    script = write(
        tmp_path / "nosteps.py",
        """\
        import pathlib, sys, time
        import torch

        # Works until perftune has written the time-sliced trace (however slow the machine),
        # then a little longer, then ends by itself.
        trace = pathlib.Path(sys.argv[1]) / "trace.json.gz"
        x = torch.randn(64, 64)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not trace.exists():
            y = torch.tanh(x @ x)
            time.sleep(0.01)
        time.sleep(0.5)
        print("SCRIPT DONE")
    """,
    )
    run_dir = tmp_path / "run"

    done = profile(
        "--time-slice",
        "0.3",
        "--skip",
        "2",
        "--active",
        "2",
        str(script),
        str(run_dir),
        out=run_dir,
    )

    assert done.returncode == 0, done.stderr
    steps = done.steps
    assert steps["status"] == "ok"
    assert steps["step_source"] == "time-window"
    phases = [s["phase"] for s in steps["steps"]]
    assert phases[:4] == ["warmup"] * 2 + ["profiled"] * 2
    assert set(phases[4:]) <= {"measured"}
    # Time slices never stop the script: they may only mean a slow start.
    assert "SCRIPT DONE" in done.stdout
    assert "no training step seen so far" in done.stderr
    assert "time slices" in done.stdout and "perftune.step()" in done.stdout
    names = {e.get("name") for e in done.trace()["traceEvents"]}
    assert "aten::tanh" in names


def test_real_steps_after_a_slow_start_replace_the_time_slices(tmp_path: Path, profile) -> None:
    script = write(
        tmp_path / "slow_start.py",
        train_script(
            header="""\
        import time
        import torch
        x = torch.randn(64, 64)
        deadline = time.monotonic() + 2.5  # "loading data" long enough for a time window
        while time.monotonic() < deadline:
            torch.tanh(x @ x)
            time.sleep(0.01)
    """
        ),
    )

    done = profile("--time-slice", "0.3", "--skip", "2", "--active", "2", str(script))

    assert done.returncode == 0, done.stderr
    steps = done.steps
    assert steps["step_source"] == "optimizer"
    assert [s["phase"] for s in steps["steps"]] == ["warmup"] * 2 + ["profiled"] * 2
    assert "TRAINING DONE" not in done.stdout
    names = {e.get("name") for e in done.trace()["traceEvents"]}
    assert {"ProfilerStep#2", "ProfilerStep#3", "aten::linear"} <= names
    assert "aten::tanh" not in names  # the time-sliced trace was dropped


def test_explicit_marks_beat_the_optimizer(tmp_path: Path, profile) -> None:
    # Two optimizer steps per training step (a GAN-like loop) marked with perftune.step().
    script = write(
        tmp_path / "two.py",
        train_script(
            header="import perftune\n",
            before_step="print('ITERATION', step)",
            after_step="""\
            optimizer.step()
            perftune.step()
        """,
        ),
    )

    done = profile("--skip", "2", "--active", "2", str(script))

    assert done.returncode == 0, done.stderr
    assert done.steps["step_source"] == "perftune.step"
    assert len(done.steps["steps"]) == 4
    # The optimizer's two boundaries in iteration 0 were dropped when perftune.step() showed up;
    # the four steps are iterations 1 to 4.
    assert "ITERATION 4" in done.stdout and "ITERATION 5" not in done.stdout
    assert "steps are marked by perftune.step" in done.stdout


def test_only_the_first_optimizer_marks_steps(tmp_path: Path, profile) -> None:
    script = write(
        tmp_path / "gan.py",
        train_script(
            before_step="print('ITERATION', step)",
            header="""\
            import torch
            critic = torch.nn.Linear(8, 1)
            critic_opt = torch.optim.SGD(critic.parameters(), lr=0.01)
        """,
            after_step="""\
            critic_opt.zero_grad()
            critic(x).mean().backward()
            critic_opt.step()
        """,
        ),
    )

    done = profile("--skip", "2", "--active", "2", str(script), "--steps", "1000")

    assert done.returncode == 0, done.stderr
    assert done.steps["step_source"] == "optimizer"
    assert len(done.steps["steps"]) == 4
    assert "ITERATION 3" in done.stdout and "ITERATION 4" not in done.stdout


def test_script_without_steps_that_ends_quickly_measured_nothing(tmp_path: Path, profile) -> None:
    script = write(tmp_path / "quick.py", "print('hello')\n")

    done = profile(str(script))

    assert done.returncode == 3
    assert done.steps["status"] == "window-not-reached"
    assert done.steps["steps"] == []
    # Not profiled again: it did no work, however long a loaded machine made its run last (a
    # CI run under load re-ran it when only its wall time was read).
    assert done.stdout.count("hello") == 1
    assert 0 <= done.steps["script_cpu_s"] < 0.05
    assert done.steps["script_cpu_s"] <= done.steps["script_s"] + 0.01
