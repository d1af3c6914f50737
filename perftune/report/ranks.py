"""What the report shows about the ranks of a multi-rank run: per-rank rows, the step-time grid
and the collectives on every rank's timeline.

Everything comes from summary.json's `multi_rank` section (so `perftune report` can redraw it
without the traces), the run's per-rank steps files (every step, not only the profiled ones),
and, when the traces are at hand, `trace.multirank.collective_calls` for the timeline.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perftune.report.data import RunView
    from perftune.trace.model import Trace

_RANK_STEPS = re.compile(r"^rank-(\d+)\.steps\.json$")




@dataclass(frozen=True)
class StepGrid:
    """Step durations per rank (rows) and step index (columns); None where a rank has no step."""

    ranks: tuple[int, ...]
    steps: tuple[int, ...]
    dur_ms: tuple[tuple[float | None, ...], ...]
    source: str  # where the durations come from, for the caption
    phases: Mapping[int, str]  # step index -> phase (warmup, profiled, measured) when known


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _grid(cells: Mapping[tuple[int, int], float], source: str,
          phases: Mapping[int, str]) -> StepGrid | None:
    if not cells:
        return None
    ranks = tuple(sorted({r for r, _ in cells}))
    steps = tuple(sorted({s for _, s in cells}))
    rows = tuple(tuple(cells.get((r, s)) for s in steps) for r in ranks)
    return StepGrid(ranks=ranks, steps=steps, dur_ms=rows, source=source, phases=phases)


def _steps_files(run_dir: Path) -> dict[int, Path]:
    found = {}
    for path in run_dir.glob("rank-*.steps.json"):
        match = _RANK_STEPS.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def step_grid(view: RunView) -> StepGrid | None:
    """Every step of every rank from the run's rank-K.steps.json files (a multi-rank capture),
    else the profiled steps of summary.json's multi_rank section."""
    cells: dict[tuple[int, int], float] = {}
    phases: dict[int, str] = {}
    files = _steps_files(view.run_dir) if view.run_dir is not None else {}
    if len(files) >= 2:
        for rank, path in files.items():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for step in doc.get("steps", []) if isinstance(doc, dict) else []:
                if not isinstance(step, Mapping):
                    continue
                dur = _number(step.get("duration_ms"))
                index = step.get("index")
                if dur is not None and isinstance(index, int):
                    cells[(rank, index)] = dur
                    phases.setdefault(index, str(step.get("phase") or "measured"))
        grid = _grid(cells, "every step of every rank (rank-K.steps.json)", phases)
        if grid is not None:
            return grid
    section = view.summary.ranks_section if view.summary is not None else None
    for row in section.rank_steps if section is not None else []:
        dur = _number(row.dur_ms)
        if dur is not None:
            cells[(row.rank, row.step)] = dur
    return _grid(cells, "the profiled steps of every rank's trace", {})


# ---------------------------------------------------------------------------- timeline
@dataclass(frozen=True)
class CollectiveBar:
    rank: int
    step: int
    seq: int
    kind: str
    name: str
    start_ms: float  # from the start of the first step shown
    dur_ms: float
    wait_ms: float  # the first wait_ms of the call were spent waiting for the other ranks


@dataclass(frozen=True)
class CollectiveTimeline:
    ranks: tuple[int, ...]
    bars: tuple[CollectiveBar, ...]
    steps: tuple[int, ...]  # the step indices shown
    step_starts: Mapping[int, tuple[float, ...]]  # per rank: starts of the steps shown (ms)
    total_calls: int  # collectives in those steps before the cap
    source: str  # device | host

    @property
    def truncated(self) -> bool:
        return len(self.bars) < self.total_calls


def collective_timeline(trace: Trace, max_steps: int = 3, max_bars: int = 1500,
                        max_ranks: int = 16) -> CollectiveTimeline | None:
    """The collectives of (at most) `max_steps` step indices common to the ranks, with the part
    of each spent waiting for the others; None for fewer than two ranks or no collectives.
    With more than `max_ranks` ranks, the lanes are the ranks that waited most and the one
    that waited least (the one the others waited for)."""
    from perftune.trace.multirank import collective_calls, collective_waits, comm_source

    calls = collective_calls(trace)
    ranks = sorted({c.rank for c in calls})
    if len(ranks) < 2:
        return None
    per_rank_steps = [{c.step for c in calls if c.rank == r} for r in ranks]
    common = sorted(set.intersection(*per_rank_steps))
    shown = tuple(common[-max_steps:]) if common else ()
    if not shown:
        return None
    waits = {(w.step, w.seq): w.wait_ms for w in collective_waits(trace)}
    if len(ranks) > max_ranks:
        waited: dict[int, float] = dict.fromkeys(ranks, 0.0)
        for per_rank in waits.values():
            for r, ms in per_rank.items():
                waited[r] = waited.get(r, 0.0) + ms
        order = sorted(ranks, key=lambda r: (-waited[r], r))
        ranks = sorted({*order[:max_ranks - 1], order[-1]})
        calls = [c for c in calls if c.rank in ranks]
    chosen = [c for c in calls if c.step in shown]
    total = len(chosen)
    if total > max_bars:  # keep the longest calls: they are what the eye should find
        chosen = sorted(chosen, key=lambda c: -c.dur_ms)[:max_bars]
    t0 = min((s.start for s in trace.steps if s.index in shown), default=0.0) / 1000.0
    bars = tuple(CollectiveBar(
        rank=c.rank, step=c.step, seq=c.seq, kind=c.kind, name=c.name,
        start_ms=c.start_ms - t0, dur_ms=c.dur_ms,
        wait_ms=min(c.dur_ms, waits.get((c.step, c.seq), {}).get(c.rank, 0.0)))
        for c in sorted(chosen, key=lambda c: (c.rank, c.start_ms)))
    starts = {r: tuple(s.start / 1000.0 - t0 for s in trace.steps
                       if s.rank == r and s.index in shown) for r in ranks}
    sources = {comm_source(trace).get(r, "none") for r in ranks}
    return CollectiveTimeline(ranks=tuple(ranks), bars=bars, steps=shown, step_starts=starts,
                              total_calls=total,
                              source=sources.pop() if len(sources) == 1 else "mixed")

