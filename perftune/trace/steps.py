"""Find training steps in a trace, per rank: ProfilerStep#N, else optimizer steps, else the
whole trace as one window (flagged as such by the step source)."""

from __future__ import annotations

import numpy as np

from perftune.trace import categories as C
from perftune.trace.groups import distinct
from perftune.trace.model import Step

PROFILER_STEP = "profiler-step"
OPTIMIZER_STEP = "optimizer-step"
WHOLE_TRACE = "whole-trace"
# From the most to the least precise; a trace whose ranks disagree reports the least.
_PRECISION = (PROFILER_STEP, OPTIMIZER_STEP, WHOLE_TRACE)


def _prefix_mask(names: tuple[list[str], np.ndarray], prefix: str) -> np.ndarray:
    categories, codes = names
    hit = np.fromiter((str(c).startswith(prefix) for c in categories), bool, len(categories))
    return hit[codes] & (codes >= 0) if hit.any() else np.zeros(len(codes), bool)


def find_steps(ev: dict[str, np.ndarray], names: tuple[list[str], np.ndarray]
               ) -> tuple[tuple[Step, ...], str]:
    """Steps from the event columns and the (strings, codes) of the name column."""
    host = ~ev["is_device"]
    profiler = host & _prefix_mask(names, C.PROFILER_STEP_PREFIX)
    optimizer = host & _prefix_mask(names, C.OPTIMIZER_STEP_PREFIX)
    rank = ev["rank"]
    ts = ev["ts"]
    end = ev["end"]
    steps: list[Step] = []
    sources: set[str] = set()
    for r in distinct(rank).tolist():
        on_rank = rank == r
        found = _profiler_steps(int(r), np.flatnonzero(profiler & on_rank), names, ts, end)
        source = PROFILER_STEP
        if not found:
            found = _optimizer_steps(int(r), np.flatnonzero(optimizer & on_rank), ts, end)
            source = OPTIMIZER_STEP
        if not found:
            rows = np.flatnonzero(on_rank)
            found = [Step(rank=int(r), index=0, name="whole trace", start=float(ts[rows].min()),
                          end=float(end[rows].max()))]
            source = WHOLE_TRACE
        steps.extend(found)
        sources.add(source)
    source = max(sources, key=_PRECISION.index) if sources else WHOLE_TRACE
    return tuple(steps), source


def _profiler_steps(rank: int, rows: np.ndarray, names: tuple[list[str], np.ndarray],
                    ts: np.ndarray,
                    end: np.ndarray) -> list[Step]:
    steps: dict[str, Step] = {}
    for row in rows[np.argsort(ts[rows], kind="stable")].tolist():
        name = str(names[0][names[1][row]])
        suffix = name[len(C.PROFILER_STEP_PREFIX):]
        index = int(suffix) if suffix.isdigit() else len(steps)
        step = Step(rank=rank, index=index, name=name, start=float(ts[row]), end=float(end[row]))
        # A step recorded twice (on two threads) counts once: keep the longer record.
        if name not in steps or steps[name].dur < step.dur:
            steps[name] = step
    return sorted(steps.values(), key=lambda s: s.start)


def _optimizer_steps(rank: int, rows: np.ndarray, ts: np.ndarray, end: np.ndarray) -> list[Step]:
    """N optimizer calls bound N-1 complete steps: from the end of one to the end of the next."""
    ends = _collapse_nested(ts[rows], end[rows])
    return [Step(rank=rank, index=k - 1, name=f"step {k - 1}", start=float(ends[k - 1]),
                 end=float(ends[k])) for k in range(1, len(ends))]


def _collapse_nested(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """End times of the outermost optimizer annotations (nested ones are the same call)."""
    order = np.lexsort((-ends, starts))
    out: list[float] = []
    last_end = -np.inf
    for s, e in zip(starts[order].tolist(), ends[order].tolist(), strict=True):
        if s < last_end:  # inside the previous call
            continue
        out.append(e)
        last_end = e
    return np.asarray(out)
