"""The step detector's decisions and the refit of short scripts, on event sequences."""

from __future__ import annotations

from pathlib import Path

import pytest

from perftune.capture.child.stepdetect import (
    BACKWARD,
    BOUNDARY,
    IGNORE,
    MODULE,
    OPTIMIZER,
    PERFTUNE_STEP,
    REGROUP,
    SOURCES,
    TIME_WINDOW,
    StepDetector,
)
from perftune.capture.parent.layout import STEP_SOURCES
from perftune.capture.parent.refit import fitting_window, refit_options, window_advice
from perftune.capture.parent.results import CaptureResult, StepRecord
from perftune.capture.parent.runner import CaptureOptions


def _decide(events: list[tuple[str, object]]) -> list[str]:
    detector = StepDetector()
    return [detector.event(source, key, str(key)) for source, key in events]


def test_the_sources_are_the_run_directory_contracts() -> None:
    assert SOURCES == STEP_SOURCES


def test_a_gan_iteration_ends_at_the_optimizer_that_joined_last() -> None:
    d, g = "D", "G"
    events = [(BACKWARD, None), (BACKWARD, None), (OPTIMIZER, d), (BACKWARD, None),
              (OPTIMIZER, g)] + [(BACKWARD, None), (BACKWARD, None), (OPTIMIZER, d),
                                 (BACKWARD, None), (OPTIMIZER, g)] * 2
    assert _decide(events) == [BOUNDARY, BOUNDARY, REGROUP, IGNORE, REGROUP] + [
        IGNORE, IGNORE, IGNORE, IGNORE, BOUNDARY] * 2


def test_a_critic_stepped_k_times_per_generator_step_is_one_iteration() -> None:
    events = [(OPTIMIZER, "D")] * 5 + [(OPTIMIZER, "G")] + ([(OPTIMIZER, "D")] * 5
                                                         + [(OPTIMIZER, "G")]) * 2
    decisions = _decide(events)
    assert decisions[:6] == [BOUNDARY] * 5 + [REGROUP]
    assert decisions[6:].count(BOUNDARY) == 2 and decisions[11] == BOUNDARY


def test_the_closing_optimizer_stepping_twice_in_a_row_is_one_iteration() -> None:
    events = [(OPTIMIZER, "D"), (OPTIMIZER, "G"), (OPTIMIZER, "G"),
              (OPTIMIZER, "D"), (OPTIMIZER, "G"), (OPTIMIZER, "G")]
    assert _decide(events) == [BOUNDARY, REGROUP, IGNORE, IGNORE, BOUNDARY, IGNORE]


def test_gradient_accumulation_is_one_step_per_optimizer_step() -> None:
    detector = StepDetector()
    for _ in range(3):
        for _ in range(4):
            detector.event(BACKWARD)
        detector.event(OPTIMIZER, "adam", "AdamW")
    assert detector.source == OPTIMIZER
    assert detector.detail() == "4 backward() calls per step (gradient accumulation)"


def test_weaker_events_are_ignored_and_stronger_ones_regroup() -> None:
    events = [(MODULE, "model"), (MODULE, "loss"), (MODULE, "model"), (MODULE, "loss"),
              (BACKWARD, None), (MODULE, "model"), (BACKWARD, None), (PERFTUNE_STEP, None),
              (BACKWARD, None), (TIME_WINDOW, None), (PERFTUNE_STEP, None)]
    assert _decide(events) == [BOUNDARY, REGROUP, IGNORE, BOUNDARY, REGROUP, IGNORE, BOUNDARY,
                               REGROUP, IGNORE, IGNORE, BOUNDARY]


def test_once_locked_the_grouping_stays() -> None:
    detector = StepDetector()
    assert detector.event(OPTIMIZER, "a") == BOUNDARY
    detector.locked = True
    # An optimizer stepped now and then after the window, or perftune.step() showing up late.
    assert detector.event(OPTIMIZER, "b") == IGNORE
    assert detector.event(PERFTUNE_STEP) == IGNORE
    assert detector.event(OPTIMIZER, "a") == BOUNDARY


def test_time_slices_give_way_even_when_locked() -> None:
    detector = StepDetector()
    assert detector.event(TIME_WINDOW) == BOUNDARY
    detector.locked = True
    assert detector.event(BACKWARD) == REGROUP


@pytest.mark.parametrize(("steps", "window"), [(0, None), (1, (0, 1)), (2, (1, 1)),
                                               (3, (1, 2)), (4, (1, 3)), (7, (4, 3))])
def test_a_window_that_fits_keeps_step_0_as_warm_up(steps: int,
                                                    window: tuple[int, int] | None) -> None:
    assert fitting_window(steps, 5, 3) == window


def _ended(steps: int, script_s: float, source: str = "optimizer",
           status: str = "window-not-reached", script_cpu_s: float | None = None) -> CaptureResult:
    return CaptureResult(
        run_dir=Path("run"), status=status, exit_code=0, error=None, step_source=source,
        steps=tuple(StepRecord(index=k, start_s=k * 0.1, duration_ms=100.0, phase="warmup")
                    for k in range(steps)),
        peak_memory_bytes=None, trace_path=None, meta={}, script_s=script_s,
        script_cpu_s=script_cpu_s)


def test_refit_of_a_short_script() -> None:
    options = CaptureOptions(skip=5, active=3)
    again = refit_options(_ended(3, 0.3), options)
    assert again is not None
    assert (again[0].skip, again[0].active) == (1, 2)
    assert "--skip 1 --active 2" in again[1]
    # No step at all: from the start, in slices sized from the run.
    again = refit_options(_ended(0, 0.4, source="time-window"), options)
    assert again is not None
    assert again[0].skip == 0 and again[0].time_slice_s == pytest.approx(0.1)


@pytest.mark.parametrize("result", [
    _ended(3, 300.0),  # a long run: told the options instead
    _ended(0, 0.001, source="time-window"),  # did nothing (print("hello"))
    # print("hello") on a loaded machine: 0.3 s of wall time, 2 ms of CPU (a CI run re-ran it)
    _ended(0, 0.3, source="time-window", script_cpu_s=0.002),
    _ended(3, 0.3, status="crashed"),
    _ended(8, 0.3, status="ok"),
])
def test_no_refit_when_it_would_not_help(result: CaptureResult) -> None:
    assert refit_options(result, CaptureOptions(skip=5, active=3)) is None


def test_an_idle_run_is_refitted_only_when_it_is_long_or_worked() -> None:
    options = CaptureOptions(skip=5, active=3)
    # CPU time counts only for short runs: a longer one that waited (on data-loader worker
    # processes, on a device) is profiled again; so is a short one that did work.
    assert refit_options(_ended(0, 2.0, source="time-window", script_cpu_s=0.01), options)
    assert refit_options(_ended(0, 0.3, source="time-window", script_cpu_s=0.2), options)
    # Unknown CPU time (a steps.json from an older perftune): the wall time decides.
    assert refit_options(_ended(0, 0.3, source="time-window"), options)


def test_the_advice_names_options_that_fit() -> None:
    assert window_advice(3, 5, 3).endswith("--skip 1 --active 2")
    assert "lower" not in window_advice(3, 5, 3)
    assert "perftune.step()" in window_advice(0, 5, 3)
