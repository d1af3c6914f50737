"""Find training steps in a trace: ProfilerStep#N, else optimizer steps, else the whole trace."""

from __future__ import annotations

import numpy as np
import pandas as pd

from perftune.trace import categories as C
from perftune.trace.model import Step

PROFILER_STEP = "profiler-step"
OPTIMIZER_STEP = "optimizer-step"
WHOLE_TRACE = "whole-trace"


def _host(ev: pd.DataFrame) -> pd.DataFrame:
    return ev[~ev["cat"].isin(C.DEVICE_CATS)]


def find_steps(ev: pd.DataFrame) -> tuple[tuple[Step, ...], str]:
    host = _host(ev)
    names = host["name"].astype(str)
    marked = host[names.str.startswith(C.PROFILER_STEP_PREFIX)]
    if not marked.empty:
        steps = []
        for rank, group in marked.groupby("rank", sort=True):
            for row in group.sort_values("ts").itertuples():
                suffix = str(row.name)[len(C.PROFILER_STEP_PREFIX):]
                index = int(suffix) if suffix.isdigit() else len(steps)
                steps.append(Step(rank=int(rank), index=index, name=str(row.name),
                                  start=float(row.ts), end=float(row.end)))
        return tuple(steps), PROFILER_STEP
    optim = host[names.str.startswith(C.OPTIMIZER_STEP_PREFIX)]
    if not optim.empty:
        steps = []
        for rank, group in optim.groupby("rank", sort=True):
            # N optimizer calls bound N-1 complete steps.
            ends = _collapse_nested(group)
            for k in range(1, len(ends)):
                steps.append(Step(rank=int(rank), index=k - 1, name=f"step {k - 1}",
                                  start=float(ends[k - 1]), end=float(ends[k])))
        if steps:
            return tuple(steps), OPTIMIZER_STEP
    steps = []
    for rank, group in ev.groupby("rank", sort=True):
        steps.append(Step(rank=int(rank), index=0, name="whole trace",
                          start=float(group["ts"].min()), end=float(group["end"].max())))
    return tuple(steps), WHOLE_TRACE


def _collapse_nested(group: pd.DataFrame) -> np.ndarray:
    """End times of the outermost optimizer annotations (nested ones are the same call)."""
    rows = group.sort_values(["ts", "dur"], ascending=[True, False])
    ends: list[float] = []
    last_end = -np.inf
    for ts, end in zip(rows["ts"].tolist(), rows["end"].tolist(), strict=True):
        if ts < last_end:  # inside the previous call
            continue
        ends.append(end)
        last_end = end
    return np.asarray(ends)
