"""A profiling window that fits a short script (torch-free).

A script that ends before perftune's window (fewer steps than --skip, or a run shorter than
one time slice) has no trace. When its whole run was short, `run_capture` runs it once more
with a window that fits the steps it showed: a shorter warm-up, fewer profiled steps, and
time slices sized from the length of its run.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from perftune.capture.parent.results import CaptureResult


class _Options(Protocol):
    """What of runner.CaptureOptions (a frozen dataclass) a refit reads."""

    @property
    def skip(self) -> int: ...
    @property
    def active(self) -> int: ...
    @property
    def profile(self) -> bool: ...
    @property
    def step_marker(self) -> str | None: ...
    @property
    def time_slice_s(self) -> float: ...


Options = TypeVar("Options", bound=_Options)

# A script whose own run (perftune's imports left out) took at most this long is run again
# with a window that fits; a longer one gets the options to use instead.
REFIT_MAX_S = 60.0
# Below this the script did no work worth a trace (`print("hello")`): its run took less, or its
# process spent less CPU time in a run of at most IDLE_MAX_S (on a loaded machine a
# `print("hello")` can take longer than MIN_WORK_S of wall time while its CPU time stays ~1 ms).
MIN_WORK_S = 0.05
IDLE_MAX_S = 1.0
MIN_SLICE_S = 0.005


def fitting_window(steps: int, skip: int, active: int) -> tuple[int, int] | None:
    """(skip, active) for a script that runs `steps` steps; None when it showed none.

    The first step (setup, first allocations) stays a warm-up step when there are two or more.
    """
    if steps <= 0:
        return None
    if steps == 1:
        return 0, 1
    fit_active = max(1, min(active, steps - 1))
    return max(1, min(skip, steps - fit_active)), fit_active


def time_slice_for(script_s: float, active: int) -> float:
    """A time slice that lets `active` slices fit into a run of `script_s` seconds."""
    return max(script_s / (active + 1), MIN_SLICE_S)


def window_advice(steps: int, skip: int, active: int) -> str:
    """What to run instead, for a script that ended before the window."""
    window = fitting_window(steps, skip, active)
    if window is None:
        return ("run it for longer, or mark its steps with perftune.step() (then "
                "--skip 0 profiles from the start)")
    return f"run it for more steps, or profile it with --skip {window[0]} --active {window[1]}"


def refit_options(result: CaptureResult, options: Options) -> tuple[Options, str] | None:
    """Options for a second run of a short script that ended before its window, and why; None
    when a second run would not help (the script failed, ran long, or did nothing)."""
    if result.status != "window-not-reached" or not options.profile:
        return None
    script_s = result.script_s
    if script_s is None or script_s > REFIT_MAX_S:
        return None
    steps = len(result.steps)
    last = options.skip + options.active - 1
    ended = (f"the script ended after {steps} step{'s' if steps != 1 else ''} "
             f"({script_s:.2f} s), before the profiling window (steps {options.skip} to {last})")
    window = fitting_window(steps, options.skip, options.active)
    if window is not None and result.step_source != "time-window":
        skip, active = window
        return (_replace(options, skip=skip, active=active),
                f"{ended}; profiled it again with --skip {skip} --active {active}")
    if did_no_work(script_s, result.script_cpu_s) or options.step_marker is not None:
        return None
    # No step boundary: profiled from its start (a profiler that starts mid-run can take
    # longer than the whole script), in time slices sized from its run.
    slice_s = time_slice_for(script_s, options.active)
    return (_replace(options, skip=0, time_slice_s=slice_s),
            f"{ended} and showed no step boundary; profiled it again from its start in time "
            f"slices of {slice_s * 1000:.0f} ms (--skip 0 --time-slice {slice_s:.3g})")


def did_no_work(script_s: float, script_cpu_s: float | None) -> bool:
    """The script's run was too short, or too idle, to hold anything worth a trace."""
    if script_s < MIN_WORK_S:
        return True
    return script_cpu_s is not None and script_cpu_s < MIN_WORK_S and script_s <= IDLE_MAX_S


def _replace(options: Options, **changes: Any) -> Options:
    replaced: Options = dataclasses.replace(options, **changes)  # type: ignore[type-var]
    return replaced
