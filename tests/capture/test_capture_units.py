"""Pure pieces of capture: the window schedule, step records, statistics, argument splitting."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perftune.capture.child.steps import StepLog, phase_of, window_action
from perftune.capture.parent.results import (
    CaptureResult,
    StepRecord,
    load_capture,
    steps_document,
    write_json,
)
from perftune.capture.parent.summary import (
    overhead,
    percentile,
    split_steps,
    step_stats,
    summary_lines,
)
from perftune.cli._options import default_run_dir
from perftune.cli.profile import exit_code_for, profile


@given(skip=st.integers(0, 20), active=st.integers(1, 10))
def test_window_schedule_starts_steps_and_stops_once(skip: int, active: int) -> None:
    actions = [window_action(done, skip, active) for done in range(1, skip + active + 5)]
    assert actions.count("start") == (1 if skip > 0 else 0)
    assert actions.count("stop") == 1
    assert actions.count("step") == active - 1
    if skip > 0:
        assert actions.index("start") == skip - 1
    assert actions.index("stop") == skip + active - 1
    phases = [phase_of(i, skip, active, profiled=True) for i in range(skip + active + 2)]
    assert phases == ["warmup"] * skip + ["profiled"] * active + ["measured"] * 2
    assert phase_of(skip, skip, active, profiled=False) == "measured"


def test_step_log_times_are_relative_to_the_start() -> None:
    log = StepLog(t0=100.0)
    log.step_start = 100.5
    log.add(101.0, "warmup", loss=None, samples=8)
    log.step_start = 101.25
    log.add(101.5, "profiled", loss=object(), samples=None)
    log.convert_losses(lambda loss: 2.5)
    steps = log.to_json()
    assert steps[0]["cpu_ms"] >= 0  # the process's CPU time, next to the wall time
    del steps[0]["cpu_ms"]
    assert steps[0] == {
        "index": 0,
        "start_s": 0.5,
        "duration_ms": 500.0,
        "phase": "warmup",
        "loss": None,
        "samples": 8,
    }
    assert steps[1]["start_s"] == 1.25 and steps[1]["duration_ms"] == 250.0
    assert steps[1]["loss"] == 2.5
    log.relabel("profiled", "measured", first_index=1)
    assert [s.phase for s in log.steps] == ["warmup", "measured"]


def test_percentile_interpolates() -> None:
    assert percentile([5.0], 90) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 10) == pytest.approx(1.4)
    assert percentile([4.0, 1.0, 3.0, 2.0], 90) == pytest.approx(3.7)


@given(st.lists(st.floats(0.001, 1e6), min_size=1, max_size=50))
def test_percentiles_are_ordered_and_within_range(values: list[float]) -> None:
    p10, p50, p90 = (percentile(values, q) for q in (10, 50, 90))
    assert min(values) <= p10 <= p50 <= p90 <= max(values)


def _result(tmp_path: Path, phases: list[str], durations: list[float]) -> CaptureResult:
    steps = tuple(
        StepRecord(i, float(i), d, p, None, None)
        for i, (p, d) in enumerate(zip(phases, durations, strict=True))
    )
    return CaptureResult(
        run_dir=tmp_path,
        status="ok",
        exit_code=0,
        error=None,
        step_source="optimizer",
        steps=steps,
        peak_memory_bytes=3 * 2**20,
        trace_path=None,
        meta={},
        skip=3,
        active=2,
    )


def test_profiler_overhead_compares_profiled_with_steps_after_the_window(tmp_path: Path) -> None:
    result = _result(tmp_path, ["warmup"] * 3 + ["profiled"] * 2 + ["measured"] * 2,
                     [900.0, 5.0, 30.0, 12.0, 12.0, 10.0, 10.0])
    profiled, plain = split_steps(result)
    assert [s.index for s in plain] == [5, 6]  # warm-up steps are not comparable
    ratio = overhead(step_stats("p", profiled), step_stats("u", plain))
    assert ratio == pytest.approx(0.2)
    lines = "\n".join(summary_lines(result))
    assert "+20.0%" in lines
    assert "7 found by the optimizer.step() hook" in lines
    assert "3.00 MiB" in lines


def test_no_profiler_overhead_against_warmup_steps(tmp_path: Path) -> None:
    """Warm-up steps (before the window) used to be the baseline, and the figure swung from
    -10 % to +155 % with what the warm-up happened to do: no steps after the window, no figure."""
    result = _result(tmp_path, ["warmup"] * 3 + ["profiled"] * 2, [900.0, 10.0, 10.0, 12.0, 12.0])
    profiled, plain = split_steps(result)
    assert plain == []
    assert overhead(step_stats("p", profiled), step_stats("u", plain)) is None
    lines = "\n".join(summary_lines(result))
    assert "profiler " not in lines and "%" not in lines
    assert re.search(r"warm-up\s+[\d.]+ ms.*\s1-2", lines)  # shown, not compared
    assert result.median_step_ms() == 12.0


def test_steps_json_round_trip(tmp_path: Path) -> None:
    result = _result(tmp_path, ["warmup", "profiled"], [2.0, 3.0])
    write_json(tmp_path / "steps.json", steps_document(result, {"knobs": {"a": 1}}))
    loaded = load_capture(tmp_path)
    assert loaded.steps == result.steps and loaded.status == "ok"
    assert json.loads((tmp_path / "steps.json").read_text())["knobs"] == {"a": 1}


@pytest.mark.parametrize(
    ("status", "steps", "code"),
    [
        ("ok", 8, 0),
        ("nan", 8, 0),
        ("window-not-reached", 3, 0),
        ("window-not-reached", 0, 3),
        ("crashed", 4, 3),
        ("oom", 4, 3),
        ("timeout", 4, 3),
        ("interrupted", 4, 130),
    ],
)
def test_exit_codes(status: str, steps: int, code: int) -> None:
    assert exit_code_for(status, steps) == code


@pytest.mark.parametrize(
    ("argv", "script_args", "module", "skip"),
    [
        (["train.py", "--skip", "9"], ("train.py", "--skip", "9"), None, 5),
        (["--skip", "2", "train.py", "-h"], ("train.py", "-h"), None, 2),
        (["--skip=2", "--full", "train.py"], ("train.py",), None, 2),
        (["-m", "pkg.train", "--skip", "4"], ("--skip", "4"), "pkg.train", 5),
        (["--active", "1", "-mpkg.train", "a"], ("a",), "pkg.train", 5),
        (["--", "--weird-name.py"], ("--weird-name.py",), None, 5),
    ],
)
def test_options_before_the_script_are_perftunes(
    argv: list[str], script_args: tuple[str, ...], module: str | None, skip: int
) -> None:
    """(5: the default --skip, the script's own --skip left alone.)"""
    ctx = profile.make_context("profile", list(argv))
    assert ctx.params["script_args"] == script_args
    assert ctx.params["module"] == module
    assert ctx.params["skip"] == skip


def test_run_dir_default_and_runs_dir_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # One clock reading for every call: the suffix must not depend on crossing a second.
    now = datetime(2026, 12, 3, 23, 33, 31)
    first = default_run_dir("train", now)
    assert first == Path("perftune-runs") / "20261203-233331-train"
    first.mkdir(parents=True)
    second = default_run_dir("train", now)
    assert second.name == first.name + "-2"  # never reuses a run dir
    second.mkdir()
    assert default_run_dir("train", now).name == first.name + "-3"
    (tmp_path / "pyproject.toml").write_text('[tool.perftune]\nruns-dir = "out/runs"\n')
    assert default_run_dir("train", now).parent == Path("out/runs")


def _session(tmp_path: Path, skip: int = 1, active: int = 2):
    from perftune.capture.child.session import CaptureSession

    return CaptureSession(
        skip=skip, active=active, full=False, profile=False, detail="light", run_dir=tmp_path
    )


def test_session_keeps_losses_on_device_until_the_window_ends(tmp_path: Path) -> None:
    import torch

    from perftune.capture.child.control import StopCapture

    session = _session(tmp_path)
    session.on_loss(torch.tensor(1.5))
    session.boundary("optimizer")
    session.on_loss(torch.tensor(float("nan")))
    session.boundary("optimizer")
    assert isinstance(session.log.steps[1].loss, torch.Tensor)  # not read back yet
    with pytest.raises(StopCapture):
        session.boundary("optimizer")
    session.finish()
    assert session.first_bad_loss() == 1
    assert [s["loss"] for s in session.steps_json()] == [1.5, None, None]  # JSON has no nan


def test_session_lets_explicit_marks_replace_the_optimizer(tmp_path: Path) -> None:
    session = _session(tmp_path, skip=5)
    session.boundary("optimizer")
    session.boundary("optimizer")
    # Replaces: the steps so far (nothing profiled yet) become step 0, which this call ends.
    session.boundary("perftune.step")
    session.boundary("optimizer")  # weaker: ignored from now on
    session.boundary("perftune.step")
    assert session.source == "perftune.step"
    assert len(session.log) == 2
    assert session.log.steps[0].start == pytest.approx(session.log.t0, abs=1.0)
    assert any("marked by perftune.step" in note and "merged into step 0" in note
               for note in session.notes)


def test_session_drops_time_slices_when_an_optimizer_appears(tmp_path: Path) -> None:
    session = _session(tmp_path, skip=5)
    session.on_tick()
    session.on_tick()
    assert session.source == "time-window" and len(session.log) == 2
    session.on_optimizer_created()
    assert session.source is None and len(session.log) == 0
    session.on_tick()  # no more time slices once an optimizer exists
    assert len(session.log) == 0


def test_forked_session_records_nothing(tmp_path: Path) -> None:
    session = _session(tmp_path)
    session.forked()
    session.boundary("optimizer")
    assert len(session.log) == 0


def test_step_log_records_cpu_time_next_to_wall_time(tmp_path: Path) -> None:
    """A step that sleeps takes wall time but next to no CPU time; a step that computes takes
    CPU time. (Orders of magnitude, not timings: a sleeping step uses ~0 CPU on any machine.)"""
    import time as _time

    from perftune.capture.child.steps import StepLog

    log = StepLog(_time.perf_counter())
    _time.sleep(0.2)
    log.add(_time.perf_counter(), "measured", None, None)
    log.begin_step(_time.perf_counter())
    deadline = _time.process_time() + 0.05
    while _time.process_time() < deadline:
        pass
    log.add(_time.perf_counter(), "measured", None, None)
    sleeping, computing = log.to_json()
    assert sleeping["cpu_ms"] < sleeping["duration_ms"] / 4
    assert computing["cpu_ms"] >= 50.0
