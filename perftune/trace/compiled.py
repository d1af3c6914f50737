"""torch.compile in a trace: the compiled regions of each step and the eager time between them.

Compiled code shows up in a torch.profiler trace as host ranges named by dynamo and AOTAutograd:
`Torch-Compiled Region: F/A` around each call of compiled frame F (attempt A), the guard check
before it (`TorchDynamo Cache Lookup`), the forward graph (`CompiledFunction`) and its backward
(`CompiledFunctionBackward`). A frame that a graph break split runs as several regions, with the
user's eager Python between them. These are neutral facts; the compilation rules and the
host-overhead rule ("no torch.compile at all": `has_compiled_regions`) decide what they mean.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import field

import numpy as np

from perftune._dataclasses import lazy_dataclass
from perftune.trace.model import Trace

REGION_PREFIX = "Torch-Compiled Region: "
CACHE_LOOKUP = "TorchDynamo Cache Lookup"
FORWARD_GRAPH = "CompiledFunction"
BACKWARD_GRAPH = "CompiledFunctionBackward"


@lazy_dataclass(frozen=True)
class Region:
    """One call of a compiled frame: its compile id ("frame/attempt"), step and host interval."""

    compile_id: str
    step: int | None
    start: float
    end: float
    # Host time just before it that no compiled graph covered, back to the end of the previous
    # graph call of the same step (the eager code a graph break leaves between two graphs),
    # µs; None for the step's first region.
    eager_before_us: float | None = None


@lazy_dataclass(frozen=True)
class CompiledRegions:
    """The compiled regions of a trace, per profiled step."""

    regions: tuple[Region, ...] = ()
    steps: tuple[int, ...] = ()  # the trace's steps (all of them, compiled or not)
    graph_calls: dict[int, int] = field(default_factory=dict)  # step → forward + backward graph calls
    lookup_us: dict[str, float] = field(default_factory=dict)  # compile id → guard-check µs per step
    # Host time inside compiled code per step: the outermost regions (forward) plus the
    # backward graphs, µs. What compiling could save per step is at most this.
    compiled_us_per_step: float = 0.0

    @property
    def present(self) -> bool:
        return bool(self.regions)

    def of(self, compile_id: str) -> list[Region]:
        return [r for r in self.regions if r.compile_id == compile_id]

    def eager_before_us_per_step(self, compile_ids: set[str]) -> float:
        """Mean eager time per step before the regions of these compile ids (a graph break's
        resumed frames)."""
        if not self.steps:
            return 0.0
        total = sum(r.eager_before_us or 0.0 for r in self.regions if r.compile_id in compile_ids)
        return total / len(self.steps)

    def graph_calls_per_step(self) -> float:
        if not self.steps:
            return 0.0
        return sum(self.graph_calls.values()) / len(self.steps)


def has_compiled_regions(trace: Trace) -> bool:
    """Whether the trace ran torch.compile'd code (a `Torch-Compiled Region` range)."""
    return bool(trace.name_startswith(REGION_PREFIX).any())


def compiled_regions(trace: Trace, tables: object = None) -> CompiledRegions:
    """The compiled regions of every step of the trace (rank 0 of a multi-rank trace)."""
    if not has_compiled_regions(trace):
        return CompiledRegions(steps=tuple(s.index for s in trace.steps))
    rank = trace.rank_ids[0] if trace.rank_ids else 0
    steps = [s for s in trace.steps if s.rank == rank]
    names = trace.names
    host = ~trace.is_device & (trace.col("rank") == rank)
    ts, end = trace.col("ts"), trace.col("end")
    region_rows = np.flatnonzero(trace.name_startswith(REGION_PREFIX) & host)
    graph_rows = np.flatnonzero(trace.name_isin((FORWARD_GRAPH, BACKWARD_GRAPH)) & host)
    lookup_rows = np.flatnonzero(trace.name_isin((CACHE_LOOKUP,)) & host)

    def step_of(t: float) -> int | None:
        for s in steps:
            if s.start <= t <= s.end:
                return s.index
        return None

    regions: list[Region] = []
    graph_ends = np.sort(end[graph_rows])
    previous_step: dict[int | None, float] = {}
    for row in sorted(region_rows, key=lambda r: ts[r]):
        start = float(ts[row])
        step = step_of(start)
        before = None
        # the last graph call that ended before this region began, in the same step
        k = int(np.searchsorted(graph_ends, start, side="right")) - 1
        floor = previous_step.get(step)
        if k >= 0 and floor is not None and graph_ends[k] >= floor:
            before = max(start - float(graph_ends[k]), 0.0)
        if floor is None:
            previous_step[step] = start
        regions.append(Region(str(names[row])[len(REGION_PREFIX):], step, start, float(end[row]),
                              before))
    calls: dict[int, int] = defaultdict(int)
    for row in graph_rows:
        step = step_of(float(ts[row]))
        if step is not None:
            calls[step] += 1
    # a guard check belongs to the region that starts right after it
    lookup: dict[str, float] = defaultdict(float)
    starts = np.array([r.start for r in regions])
    order = np.argsort(starts)
    for row in lookup_rows:
        k = int(np.searchsorted(starts[order], end[row], side="left"))
        if k < len(order):
            lookup[regions[int(order[k])].compile_id] += float(end[row] - ts[row])
    n = max(len(steps), 1)
    inside = 0.0
    covered_until = -np.inf
    for r in sorted(regions, key=lambda r: r.start):
        if r.step is None:
            continue
        if r.start >= covered_until:  # not nested in the previous outermost region
            inside += r.end - r.start
            covered_until = r.end
    backward = np.flatnonzero(trace.name_isin((BACKWARD_GRAPH,)) & host)
    inside += sum(float(end[row] - ts[row]) for row in backward
                  if step_of(float(ts[row])) is not None)
    return CompiledRegions(regions=tuple(regions), steps=tuple(s.index for s in steps),
                           graph_calls=dict(calls),
                           lookup_us={k: v / n for k, v in lookup.items()},
                           compiled_us_per_step=inside / n)
