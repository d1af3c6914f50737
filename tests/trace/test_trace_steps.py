"""Step detection: ProfilerStep#N, else optimizer steps, else the whole trace (flagged)."""

from __future__ import annotations

from pathlib import Path

from builder import doc, op, write, x

from perftune.trace import load


def _step(n: int, ts: float, dur: float, **kw) -> dict:
    return x(f"ProfilerStep#{n}", ts, dur, cat="user_annotation", **kw)


def _optim(ts: float, dur: float, name: str = "Optimizer.step#SGD.step") -> dict:
    return x(name, ts, dur, cat="user_annotation")


def test_profiler_steps(tmp_path: Path) -> None:
    events = [_step(7, 1000, 300), _step(8, 1300, 450), op("aten::mm", 1010, 5),
              # The same marker mirrored on the device timeline is not a host step.
              x("ProfilerStep#7", 1005, 200, cat="gpu_user_annotation", pid=0, tid=7)]
    t = load(write(tmp_path / "t.json", events))
    assert t.step_source == "profiler-step"
    assert [(s.index, s.name, s.start, s.end) for s in t.steps] == [
        (7, "ProfilerStep#7", 0.0, 300.0), (8, "ProfilerStep#8", 300.0, 750.0)]
    assert [s.dur for s in t.steps] == [300.0, 450.0]


def test_a_step_recorded_on_two_threads_counts_once(tmp_path: Path) -> None:
    events = [_step(1, 0, 100, tid=1), _step(1, 0, 90, tid=2), _step(2, 100, 100, tid=1)]
    t = load(write(tmp_path / "t.json", events))
    assert [(s.name, s.dur) for s in t.steps] == [("ProfilerStep#1", 100.0), ("ProfilerStep#2", 100.0)]


def test_optimizer_steps_bound_the_steps_between_them(tmp_path: Path) -> None:
    events = [
        op("aten::mm", 0, 10),
        _optim(100, 20), _optim(102, 5, "Optimizer.step#SGD.step"),  # nested: same call
        _optim(300, 30),
        _optim(650, 50),
        x("Optimizer.zero_grad#SGD.zero_grad", 90, 5, cat="user_annotation"),
    ]
    t = load(write(tmp_path / "t.json", events))
    assert t.step_source == "optimizer-step"
    # Ends of the outermost calls: 120, 330, 700 → steps [120, 330) and [330, 700).
    assert [(s.index, s.start, s.end) for s in t.steps] == [(0, 120.0, 330.0), (1, 330.0, 700.0)]


def test_one_optimizer_call_is_not_a_step(tmp_path: Path) -> None:
    events = [op("aten::mm", 0, 10), _optim(100, 20), op("aten::add", 500, 10)]
    t = load(write(tmp_path / "t.json", events))
    assert t.step_source == "whole-trace"
    assert [(s.start, s.end, s.name) for s in t.steps] == [(0.0, 510.0, "whole trace")]


def test_no_markers_at_all_is_one_flagged_window(tmp_path: Path) -> None:
    t = load(write(tmp_path / "t.json", [op("a", 50, 10), op("b", 100, 40)]))
    assert t.step_source == "whole-trace"
    assert len(t.steps) == 1 and t.steps[0].dur == 90.0


def test_ranks_are_stepped_separately_and_the_weakest_source_is_reported(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", doc([_step(1, 0, 100), _step(2, 100, 120)],
                                       distributedInfo={"rank": 0}))
    b = write(tmp_path / "b.json", doc([op("aten::mm", 5, 10), op("aten::add", 50, 10)],
                                       distributedInfo={"rank": 1}))
    t = load([a, b])
    assert [(s.rank, s.name) for s in t.steps] == [(0, "ProfilerStep#1"), (0, "ProfilerStep#2"),
                                                   (1, "whole trace")]
    assert t.step_source == "whole-trace"
    assert [s.dur for s in t.steps_of(1)] == [55.0]
