"""Interval arithmetic the trace model and the metrics share (below both: the model's
per-stream table uses it, so it cannot live in metrics, which reads the model)."""

from __future__ import annotations

import numpy as np


def union_length(starts: np.ndarray, ends: np.ndarray) -> float:
    """Total length covered by a set of intervals (overlaps counted once; empty ones ignored)."""
    s_all = np.asarray(starts, dtype=np.float64)
    e_all = np.asarray(ends, dtype=np.float64)
    keep = e_all > s_all
    if not keep.any():
        return 0.0
    order = np.argsort(s_all[keep], kind="stable")
    s = s_all[keep][order]
    e = np.maximum.accumulate(e_all[keep][order])
    # A new run starts where an interval begins after everything before it has ended.
    new_run = np.empty(len(s), dtype=bool)
    new_run[0] = True
    new_run[1:] = s[1:] > e[:-1]
    run_start = s[new_run]
    # The running maximum is non-decreasing, so a run's end is its value at the run's last row.
    last = np.append(np.flatnonzero(new_run)[1:] - 1, len(s) - 1)
    return float(np.sum(e[last] - run_start))
