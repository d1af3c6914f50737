"""A profiling window that fits a short script (torch-free).

A script that ends before perftune's window (fewer steps than --skip, or a run shorter than
one time slice) has no trace. When its whole run was short, `run_capture` runs it once more
with a window that fits the steps it showed: a shorter warm-up, fewer profiled steps, and
time slices sized from the length of its run.
"""

from __future__ import annotations

# A script whose own run (perftune's imports left out) took at most this long is run again
# with a window that fits; a longer one gets the options to use instead.
REFIT_MAX_S = 60.0
# Below this the script did no work worth a trace (`print("hello")`).
MIN_WORK_S = 0.05
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
