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
from collections.abc import Mapping, Sequence
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

    sources = comm_source(trace)
    starts: dict[int, list[tuple[int, float]]] = {}
    for s in trace.steps:
        starts.setdefault(s.rank, []).append((s.index, s.start / 1000.0))
    return _timeline(collective_calls(trace), collective_waits(trace), starts, sources,
                     max_steps, max_bars, max_ranks)


def collective_timeline_of(results: Sequence[Any], max_steps: int = 3, max_bars: int = 1500,
                           max_ranks: int = 16) -> CollectiveTimeline | None:
    """`collective_timeline` from ranks analysed apart (trace.multirank.RankResult): each
    rank's times moved from its own trace's start to the earliest one."""
    from dataclasses import replace

    from perftune.trace.multirank import waits_of_calls

    if not results:
        return None
    origin = min(r.origin_us for r in results)
    calls: list[Any] = []
    starts: dict[int, list[tuple[int, float]]] = {}
    for r in results:
        shift = (r.origin_us - origin) / 1000.0
        calls.extend(replace(c, start_ms=c.start_ms + shift) for c in r.calls)
        starts.setdefault(r.rank, []).extend(
            (step[0], start + shift) for step, start in zip(r.steps, r.step_starts_ms, strict=False))
    return _timeline(calls, waits_of_calls(calls), starts, {r.rank: r.source for r in results},
                     max_steps, max_bars, max_ranks)


def _timeline(calls: Sequence[Any], waits_table: Sequence[Any],
              starts_by_rank: Mapping[int, Sequence[tuple[int, float]]],
              sources_by_rank: Mapping[int, str], max_steps: int, max_bars: int,
              max_ranks: int) -> CollectiveTimeline | None:
    ranks = sorted({c.rank for c in calls})
    if len(ranks) < 2:
        return None
    per_rank_steps = [{c.step for c in calls if c.rank == r} for r in ranks]
    common = sorted(set.intersection(*per_rank_steps))
    shown = tuple(common[-max_steps:]) if common else ()
    if not shown:
        return None
    waits = {(w.step, w.seq): w.wait_ms for w in waits_table}
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
    t0 = min((start for steps in starts_by_rank.values() for index, start in steps
              if index in shown), default=0.0)
    bars = tuple(CollectiveBar(
        rank=c.rank, step=c.step, seq=c.seq, kind=c.kind, name=c.name,
        start_ms=c.start_ms - t0, dur_ms=c.dur_ms,
        wait_ms=min(c.dur_ms, waits.get((c.step, c.seq), {}).get(c.rank, 0.0)))
        for c in sorted(chosen, key=lambda c: (c.rank, c.start_ms)))
    starts = {r: tuple(start - t0 for index, start in starts_by_rank.get(r, ()) if index in shown)
              for r in ranks}
    sources = {sources_by_rank.get(r, "none") for r in ranks}
    return CollectiveTimeline(ranks=tuple(ranks), bars=bars, steps=shown, step_starts=starts,
                              total_calls=total,
                              source=sources.pop() if len(sources) == 1 else "mixed")

