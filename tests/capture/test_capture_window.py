"""The schedule: warm-up steps, the profiled window, the early stop, and the trace it leaves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from capture_helpers import train_script, write


def test_stops_a_long_script_right_after_the_window(tmp_path: Path, profile) -> None:
    script = write(tmp_path / "train.py", train_script())  # 1000 steps unless stopped

    done = profile("--skip", "3", "--active", "2", str(script), "--steps", "1000")

    assert done.returncode == 0, done.stderr
    assert "TRAINING DONE" not in done.stdout  # stopped, not run to the end
    steps = done.steps
    assert steps["status"] == "ok"
    assert steps["exit_code"] == 0
    assert steps["step_source"] == "optimizer"
    assert [s["index"] for s in steps["steps"]] == [0, 1, 2, 3, 4]
    assert [s["phase"] for s in steps["steps"]] == ["warmup"] * 3 + ["profiled"] * 2
    assert all(s["duration_ms"] > 0 for s in steps["steps"])
    starts = [s["start_s"] for s in steps["steps"]]
    assert starts == sorted(starts)
    # Losses are read back after the window: all present and finite, and training went down.
    losses = [s["loss"] for s in steps["steps"]]
    assert all(isinstance(loss, float) for loss in losses)
    assert losses[-1] < losses[0]
    assert steps["peak_memory_bytes"] > 0 and steps["memory_kind"] == "rss"
    assert "5 found by the optimizer.step() hook" in done.stdout
    assert re.search(r"profiled\s+[\d.]+ ms\s+[\d.]+ ms\s+[\d.]+ ms\s+3-4", done.stdout)
    assert re.search(r"warm-up\s+[\d.]+ ms.*\s1-2", done.stdout)
    # No steps after the window (the script was stopped): no overhead against warm-up steps.
    assert "on the median step" not in done.stdout


def test_trace_is_a_torch_profiler_chrome_trace_of_the_active_steps(
    tmp_path: Path, profile
) -> None:
    script = write(tmp_path / "train.py", train_script())

    done = profile(str(script))  # defaults: skip 5, active 3, detail default

    assert done.returncode == 0, done.stderr
    trace = done.trace()
    events = trace["traceEvents"]
    names = {e.get("name") for e in events}
    assert {"ProfilerStep#5", "ProfilerStep#6", "ProfilerStep#7"} <= names
    assert not any(
        str(n).startswith("ProfilerStep#")
        and n not in {"ProfilerStep#5", "ProfilerStep#6", "ProfilerStep#7"}
        for n in names
    )
    assert {"aten::linear", "aten::mse_loss"} <= names
    assert any(str(n).startswith("Optimizer.step#SGD") for n in names)
    # Default detail records shapes and Python stacks (source lines for the rules).
    assert any(e.get("cat") == "python_function" for e in events)
    assert any("Input Dims" in e.get("args", {}) for e in events if e.get("cat") == "cpu_op")
    assert trace["perftune"]["step_source"] == "optimizer"
    assert [s["phase"] for s in done.steps["steps"]].count("profiled") == 3


def test_light_detail_has_no_python_stacks(tmp_path: Path, profile) -> None:
    script = write(tmp_path / "train.py", train_script())

    done = profile("--detail", "light", "--skip", "2", "--active", "1", str(script))

    assert done.returncode == 0, done.stderr
    events = done.trace()["traceEvents"]
    assert not any(e.get("cat") == "python_function" for e in events)
    assert any(e.get("name") == "ProfilerStep#2" for e in events)


@pytest.mark.slow
def test_full_detail_records_memory_and_flops(tmp_path: Path, profile) -> None:
    script = write(tmp_path / "train.py", train_script())

    done = profile("--detail", "full", "--skip", "2", "--active", "1", str(script))

    assert done.returncode == 0, done.stderr
    trace = done.trace()
    assert any(e.get("name") == "[memory]" for e in trace["traceEvents"])
    # torch.profiler records its settings in the trace's metadata.
    assert trace["profile_memory"] == 1 and trace["with_flops"] == 1
    assert trace["with_modules"] == 1 and trace["with_stack"] == 1


def test_full_runs_the_script_to_its_end_and_measures_every_step(tmp_path: Path, profile) -> None:
    script = write(tmp_path / "train.py", train_script())

    done = profile("--full", "--skip", "2", "--active", "2", str(script), "--steps", "7")

    assert done.returncode == 0, done.stderr
    assert "TRAINING DONE" in done.stdout
    phases = [s["phase"] for s in done.steps["steps"]]
    assert phases == ["warmup"] * 2 + ["profiled"] * 2 + ["measured"] * 3
    assert done.steps["status"] == "ok"
    assert (done.run_dir / "trace.json.gz").exists()


def test_json_summary(tmp_path: Path, profile) -> None:
    import json

    script = write(tmp_path / "train.py", train_script())

    done = profile("--format", "json", "--skip", "2", "--active", "2", str(script))

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["status"] == "ok"
    assert summary["steps"] == 4
    assert summary["profiled"]["steps"] == [2, 3]
    # Warm-up steps do not compare with profiled ones: without steps measured after the window
    # (--full) there is no un-profiled distribution and no overhead figure.
    assert summary["unprofiled"] is None
    assert summary["profiler_overhead"] is None
    assert summary["trace"].endswith("trace.json.gz")
