"""The step detector on ordinary training loops (scripts in tests/capture/loops/).

Each script prints one line per iteration, so a test can see that perftune's steps are the
script's iterations: with --skip S --active A the script is stopped after iteration S+A-1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from capture_helpers import write

LOOPS = Path(__file__).resolve().parent / "loops"


def _copy(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copy(LOOPS / name, tmp_path / name))


def _iterations(stdout: str, word: str = "ITERATION") -> list[int]:
    return [int(line.split()[1]) for line in stdout.splitlines() if line.startswith(word + " ")]


def _sane(steps: list[dict], count: int) -> None:
    assert [s["index"] for s in steps] == list(range(count))
    assert all(s["duration_ms"] > 0 for s in steps)
    starts = [s["start_s"] for s in steps]
    assert starts == sorted(starts)


def test_manual_sgd_steps_are_found_by_backward(tmp_path: Path, profile) -> None:
    script = _copy(tmp_path, "manual_sgd.py")

    done = profile("--skip", "3", "--active", "2", str(script))

    assert done.returncode == 0, done.stderr
    steps = done.steps
    assert steps["step_source"] == "backward"
    _sane(steps["steps"], 5)
    assert [s["phase"] for s in steps["steps"]] == ["warmup"] * 3 + ["profiled"] * 2
    # One step is one iteration: the script was stopped right after iteration 4.
    assert _iterations(done.stdout)[-1] == 4
    # Every step has its own loss (the tensor backward() ran on), read after the window.
    assert all(isinstance(s["loss"], float) for s in steps["steps"])
    assert "found by backward() calls" in done.stdout
    assert "time slices" not in done.stdout
    names = {e.get("name") for e in done.trace()["traceEvents"]}
    assert {"ProfilerStep#3", "ProfilerStep#4"} <= names


@pytest.mark.parametrize("critic", [1, 3])
def test_two_optimizers_make_one_iteration(tmp_path: Path, profile, critic: int) -> None:
    script = _copy(tmp_path, "gan.py")

    done = profile("--skip", "2", "--active", "2", str(script), "--critic", str(critic))

    assert done.returncode == 0, done.stderr
    steps = done.steps
    assert steps["step_source"] == "optimizer"
    _sane(steps["steps"], 4)
    assert _iterations(done.stdout)[-1] == 3
    # An iteration ends at the generator's step, the optimizer that joined the cycle last.
    assert "2 optimizers per iteration (Adam, Adam)" in steps["step_detail"]
    assert "2 optimizers per iteration" in done.stdout


def test_gradient_accumulation_with_a_scaler_is_one_step_per_optimizer_step(
        tmp_path: Path, profile) -> None:
    script = _copy(tmp_path, "grad_accum.py")

    # Iteration 1's loss is infinite: the scaler skips that optimizer.step(), and the
    # iteration still counts.
    done = profile("--skip", "2", "--active", "2", str(script), "--accumulate", "3",
                   "--inf-at", "1")

    assert done.returncode == 0, done.stderr
    steps = done.steps
    assert steps["step_source"] == "optimizer"
    _sane(steps["steps"], 4)
    assert _iterations(done.stdout)[-1] == 3
    assert steps["step_detail"] == "3 backward() calls per step (gradient accumulation)"
    assert steps["steps"][1]["loss"] is None or steps["steps"][1]["loss"] == float("inf")


def test_lr_schedulers_stepping_every_iteration_add_no_steps(tmp_path: Path, profile) -> None:
    script = _copy(tmp_path, "scheduler.py")

    done = profile("--skip", "2", "--active", "3", str(script))

    assert done.returncode == 0, done.stderr
    assert done.steps["step_source"] == "optimizer"
    _sane(done.steps["steps"], 5)
    assert _iterations(done.stdout)[-1] == 4


def test_inference_under_no_grad_steps_by_top_level_module_calls(tmp_path: Path,
                                                                 profile) -> None:
    script = _copy(tmp_path, "inference.py")

    done = profile("--skip", "2", "--active", "2", str(script))

    assert done.returncode == 0, done.stderr
    steps = done.steps
    assert steps["step_source"] == "module"
    _sane(steps["steps"], 4)
    # The model and the loss module are both called at the top level: one batch is one step.
    assert _iterations(done.stdout, "BATCH")[-1] == 3
    assert "INFERENCE DONE" not in done.stdout
    assert steps["step_detail"].startswith("2 top-level modules per iteration (Sequential, "
                                           "CrossEntropyLoss)")
    assert all(s["samples"] == 16 for s in steps["steps"])
    names = {e.get("name") for e in done.trace()["traceEvents"]}
    assert {"ProfilerStep#2", "ProfilerStep#3", "aten::linear"} <= names


def test_a_script_shorter_than_the_window_is_profiled_again_with_a_window_that_fits(
        tmp_path: Path, profile) -> None:
    script = _copy(tmp_path, "short.py")

    done = profile(str(script))  # the default window: 5 warm-up steps, 3 profiled

    assert done.returncode == 0, done.stderr
    steps = done.steps
    assert steps["status"] == "ok"
    assert steps["step_source"] == "optimizer"
    _sane(steps["steps"], 3)
    assert [s["phase"] for s in steps["steps"]] == ["warmup", "profiled", "profiled"]
    assert (done.run_dir / "trace.json.gz").is_file()
    assert "--skip 1 --active 2" in done.stderr
    assert "lower --skip" not in done.stdout + done.stderr
    # The window waited for the optimizer step: nothing was profiled and then dropped.
    assert not any("dropped" in note for note in steps["notes"])


def test_a_short_script_without_steps_is_profiled_whole_in_time_slices(tmp_path: Path,
                                                                       profile) -> None:
    script = write(tmp_path / "tensor_work.py", """\
        import time
        import torch
        x = torch.randn(64, 64)
        end = time.perf_counter() + 0.4
        while time.perf_counter() < end:
            y = torch.tanh(x @ x)
        print("DONE")
    """)

    done = profile(str(script))

    assert done.returncode == 0, done.stderr
    steps = done.steps
    assert steps["step_source"] == "time-window"
    assert steps["status"] == "ok"
    assert len(steps["steps"]) >= 1
    assert all(s["duration_ms"] < 1000 for s in steps["steps"])  # sized from the script's run
    names = {e.get("name") for e in done.trace()["traceEvents"]}
    assert "aten::tanh" in names


def test_a_script_with_its_own_profiler_is_pointed_at_and_its_steps_are_its_own(
        tmp_path: Path, profile) -> None:
    script = _copy(tmp_path, "own_profiler.py")
    logs = tmp_path / "tb"

    done = profile("--skip", "2", "--active", "2", str(script), str(logs))

    assert done.returncode == 0, done.stderr
    steps = done.steps
    # prof.step() marks the script's steps: perftune's step N is the trace's ProfilerStep#N.
    assert steps["step_source"] == "script-profiler"
    _sane(steps["steps"], 12)
    assert steps["profiler"] == "script"
    assert "TRAINING DONE" in done.stdout  # it runs to its end, so its trace gets written
    traces = list(logs.glob("*.pt.trace.json*"))
    assert traces
    assert steps["script_traces"] == [str(logs)]
    assert f"perftune analyze {logs}" in done.stdout
    assert not (done.run_dir / "trace.json.gz").exists()
