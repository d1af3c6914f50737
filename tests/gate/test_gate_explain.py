"""Comparing the profiled launches of base and head: what got slower, what is new."""

from __future__ import annotations

from pathlib import Path

from perftune.gate.explain import (
    FindingRef,
    ProfileSummary,
    compare,
    profile_from_dict,
    profile_to_dict,
)


def summary(**kwargs: object) -> ProfileSummary:
    fields: dict[str, object] = {"run_dir": Path("/r"), "step_ms": 20.0,
                                 "peak_memory_bytes": 500 << 20, "memory_kind": "rss"}
    fields.update(kwargs)
    return ProfileSummary(**fields)  # type: ignore[arg-type]


def finding(code: str, line: int, source: str = "x = t.item()") -> FindingRef:
    return FindingRef(code=code, name="n", message="m", file=f"/checkout/{line}/train.py", line=line,
                      function="step", source=source)


def test_slower_and_faster_operators_are_ranked() -> None:
    base = summary(operators_ms={"aten::mm": 5.0, "aten::add": 2.0, "aten::relu": 1.0})
    head = summary(operators_ms={"aten::mm": 9.0, "aten::add": 1.0, "aten::relu": 1.001,
                                 "aten::nonzero": 1.5})
    explained = compare(base, head)
    assert [s.name for s in explained.slower] == ["aten::mm", "aten::nonzero"]
    assert explained.slower[0].delta_ms == 4.0
    assert [s.name for s in explained.faster] == ["aten::add"]
    assert explained.structural == ()


def test_structural_changes_are_found_regardless_of_time() -> None:
    base = summary(syncs_per_step=0.0, kernels_per_step=200.0, operators_per_step=300.0,
                   findings=(finding("PFT206", 10),))
    head = summary(syncs_per_step=2.0, kernels_per_step=260.0, operators_per_step=300.0,
                   peak_memory_bytes=900 << 20,
                   findings=(finding("PFT206", 14), finding("PFT202", 20, "idx = m.nonzero()")))
    explained = compare(base, head)
    kinds = [c.kind for c in explained.structural]
    assert kinds == ["host-device-syncs", "kernel-launches", "peak-memory", "new-finding"]
    # The PFT206 moved by four lines (and lives in another checkout): not new.
    assert [f.code for f in explained.new_findings] == ["PFT202"]
    assert explained.new_problems == explained.structural
    assert "500.00 MiB → 900.00 MiB" in explained.structural[2].message


def test_small_wobbles_are_not_structural() -> None:
    base = summary(operators_per_step=300.0, peak_memory_bytes=500 << 20)
    head = summary(operators_per_step=302.0, peak_memory_bytes=(500 << 20) + (20 << 20))
    assert compare(base, head).structural == ()


def test_missing_trace_analysis_is_a_note_not_a_failure() -> None:
    base = summary(notes=("perftune.trace is not available: operators not compared",))
    head = summary(notes=("perftune.trace is not available: operators not compared",))
    explained = compare(base, head)
    assert explained.notes == ("perftune.trace is not available: operators not compared",)
    assert explained.slower == () and explained.structural == ()


def test_profile_round_trip() -> None:
    original = summary(operators_ms={"aten::mm": 2.0}, kernels_ms={"sgemm": 1.0},
                       categories_ms={"compute": 3.0}, syncs_per_step=1.0,
                       findings=(finding("PFT203", 3),), notes=("n",))
    again = profile_from_dict(profile_to_dict(original))
    assert again == original


def test_torch_step_annotations_are_not_compared_as_operators() -> None:
    import pandas as pd

    from perftune.gate.explain import _per_step

    frame = pd.DataFrame({"name": ["ProfilerStep#3", "Optimizer.step#SGD.step",
                                   "enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__",
                                   "aten::mm", "block#2", "block#3"],
                          "self_ms": [9.0, 8.0, 7.0, 4.0, 1.0, 3.0]})
    # Per step over two steps; numbered user annotations merge under one name.
    assert _per_step(frame, "self_ms", 2) == {"aten::mm": 2.0, "block": 2.0}


def test_an_a_a_explanation_lists_no_change() -> None:
    """Identical code, one noisy profiled launch per side: the optimizer took 76.8 ms more in
    head's launch, 11 % of its time, while whole steps moved 8 % from launch to launch. That is
    noise, not a change (before each line had an interval, it was listed as "slower")."""
    from perftune.gate.explain import LaunchNoise

    base = summary(step_ms=1500.0, categories_ms={"optimizer": 700.0, "compute": 800.0})
    head = summary(step_ms=1560.0, categories_ms={"optimizer": 776.8, "compute": 783.2})
    explained = compare(base, head, LaunchNoise(log_sd=0.08, launches=12))
    assert explained.slower == () and explained.faster == ()
    assert any("within the launch-to-launch noise" in note for note in explained.notes)


def test_a_real_change_is_listed_with_its_interval() -> None:
    from perftune.gate.explain import LaunchNoise

    base = summary(step_ms=1500.0, categories_ms={"optimizer": 700.0, "compute": 800.0})
    head = summary(step_ms=2300.0, categories_ms={"optimizer": 1500.0, "compute": 805.0})
    explained = compare(base, head, LaunchNoise(log_sd=0.03, launches=12))
    assert [s.name for s in explained.slower] == ["optimizer"]
    line = explained.slower[0]
    assert line.low_ms is not None and line.high_ms is not None
    assert 0.0 < line.low_ms < line.delta_ms == 800.0 < line.high_ms
    assert explained.to_dict()["slower"][0]["low_ms"] == line.low_ms


def test_part_change_interval_floors_the_noise_and_widens_with_fewer_launches() -> None:
    from perftune.analysis.stats import MIN_PART_NOISE, part_change_interval

    tight = part_change_interval(100.0, 150.0, 0.0, 40)
    assert tight == part_change_interval(100.0, 150.0, MIN_PART_NOISE, 40)  # floored
    few = part_change_interval(100.0, 150.0, 0.0, 4)
    assert few[0] < tight[0] < 50.0 < tight[1] < few[1]


def test_a_preempted_profiled_launch_does_not_make_head_look_faster() -> None:
    """Recorded from a CI run (2026-12-03): head does 4× the base's work per step, and the
    base's one profiled launch was preempted: its lines had `aten::pow` at 6.49 ms per step
    against head's 0.89 and `aten::mm` at 10.55 against 7.85, so both were listed as faster in
    head. Its profiled steps ran far slower than the base's timed launches, head's did not."""
    from perftune.gate.explain import LaunchNoise, profiled_excess

    base = summary(step_ms=19.0, step_mean_ms=21.0,
                   operators_ms={"aten::pow": 6.49, "aten::mm": 10.55, "aten::add": 0.40})
    head = summary(step_ms=17.5, step_mean_ms=17.9,
                   operators_ms={"aten::pow": 0.89, "aten::mm": 7.85, "aten::add": 1.60})
    noise = LaunchNoise(log_sd=0.06, launches=8)
    # Without the timed launches' step times the contended lines read as changes.
    before = compare(base, head, noise)
    assert {"aten::mm", "aten::pow"} <= {s.name for s in before.faster}

    excess = profiled_excess(base, head, base_timed_ms=3.9, head_timed_ms=14.2)
    assert excess.head_ms == 0.0 and excess.base_ms > 10.0
    explained = compare(base, head, noise, excess)
    assert explained.faster == ()
    # What head really does more of still shows: 4× the additions, beyond any contention.
    assert [s.name for s in explained.slower] == ["aten::add"]
    assert any("profiled base launch's steps ran" in n and "busier" in n for n in explained.notes)


def test_the_profilers_own_overhead_is_not_taken_for_contention() -> None:
    """Both profiled launches ran ~1.4× their timed launches (the profiler's overhead, not
    contention): nothing is widened, and a real slowdown in head is listed."""
    from perftune.gate.explain import LaunchNoise, profiled_excess

    base = summary(step_ms=14.0, operators_ms={"aten::mm": 8.0, "aten::add": 2.0})
    head = summary(step_ms=28.2, operators_ms={"aten::mm": 16.1, "aten::add": 2.0})
    excess = profiled_excess(base, head, base_timed_ms=10.0, head_timed_ms=20.0)
    assert excess.base_ms == 0.0 and excess.head_ms < 0.5
    explained = compare(base, head, LaunchNoise(log_sd=0.03, launches=12), excess)
    assert [s.name for s in explained.slower] == ["aten::mm"]
    assert not any("busier" in n for n in explained.notes)
    # Without the timed step times no allowance is made.
    assert profiled_excess(base, head, None, None).any is False


def test_a_profile_round_trips_its_mean_step() -> None:
    side = summary(step_ms=10.0, step_mean_ms=12.5)
    assert profile_from_dict(profile_to_dict(side)).step_mean_ms == 12.5
    assert profile_from_dict(profile_to_dict(summary())).window_step_ms == 20.0
