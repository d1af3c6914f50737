"""How much the profiler itself distorted a trace: event density, stacks, profiled vs not.

The profiler costs time per recorded event: about a microsecond or two per operator (more
with `record_shapes`), and per Python call with `with_stack=True`. A trace with many Python
events per operator, or operators packed densely in time, spent a large part of its step in
the profiler. When the trace sits in a `perftune profile` run directory, `steps.json` holds
the step times of profiled and unprofiled steps of the same run, which measures the overhead
directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perftune._dataclasses import lazy_dataclass
from perftune.documents import StepsDocument
from perftune.trace import categories as C
from perftune.trace.groups import median
from perftune.trace.model import Trace
from perftune.trace.tables import Tables

OP_COST_US = 1.5  # profiler cost per recorded operator (record_shapes on), order of magnitude
PYTHON_COST_US = 0.7  # per python_function event (with_stack)


@dataclass(frozen=True)
class EventDensity:
    cpu_ops: int
    python_events: int
    host_span_us: float  # span of host events on the rank (all threads' busiest)
    steps: int

    @property
    def python_per_op(self) -> float:
        return self.python_events / self.cpu_ops if self.cpu_ops else float(self.python_events)

    @property
    def ops_per_ms(self) -> float:
        return self.cpu_ops / (self.host_span_us / 1000.0) if self.host_span_us > 0 else 0.0

    def estimated_overhead_us(self, op_cost_us: float = OP_COST_US,
                              python_cost_us: float = PYTHON_COST_US) -> float:
        return self.cpu_ops * op_cost_us + self.python_events * python_cost_us

    def estimated_share(self, op_cost_us: float = OP_COST_US,
                        python_cost_us: float = PYTHON_COST_US) -> float:
        """Estimated profiler time over the traced host time (capped at 1)."""
        if self.host_span_us <= 0:
            return 0.0
        return min(1.0, self.estimated_overhead_us(op_cost_us, python_cost_us) / self.host_span_us)


def event_density(trace: Trace, tables: Tables | None = None) -> EventDensity:
    """Event counts of the first rank inside its steps (the whole trace without steps)."""
    rank = trace.rank_ids[0] if trace.rank_ids else 0
    on = (trace.col("rank") == rank) & ~trace.col("is_device")
    steps = trace.steps_of(rank)
    if steps:
        lo, hi = min(s.start for s in steps), max(s.end for s in steps)
        ts = trace.col("ts")
        on &= (ts >= lo) & (ts < hi)
        span = hi - lo
    else:
        span = float(trace.col("end")[on].max() - trace.col("ts")[on].min()) if on.any() else 0.0
    # Category masks from the interned codes: no string compare per row.
    return EventDensity(cpu_ops=int(np.count_nonzero(on & trace.cat_mask({C.CPU_OP}))),
                        python_events=int(np.count_nonzero(on & trace.cat_mask({C.PYTHON_FUNCTION}))),
                        host_span_us=float(span), steps=len(steps))


@lazy_dataclass(frozen=True)
class PhaseTimes:
    """Median step times (ms) of one run's profiled and un-profiled steps (from steps.json)."""

    path: Path
    profiled_ms: float
    unprofiled_ms: float
    profiled_steps: int
    unprofiled_steps: int

    @property
    def overhead(self) -> float:
        return self.profiled_ms / self.unprofiled_ms - 1.0 if self.unprofiled_ms > 0 else 0.0


def phase_times(steps: StepsDocument, path: Path) -> PhaseTimes | None:
    """Profiled vs un-profiled step medians of a run's steps.json (read from `path` by the
    caller), None without both.

    Un-profiled steps are the steps measured after the profiled window (phase "measured"):
    warm-up steps are not comparable (caches, allocators and compilation still settling) —
    the same split `perftune profile` prints.
    """
    prof = [s.duration_ms for s in steps.steps if s.phase == "profiled"]
    meas = [s.duration_ms for s in steps.steps if s.phase == "measured"]
    if not prof or not meas:
        return None
    return PhaseTimes(path=path, profiled_ms=float(median(prof)),
                      unprofiled_ms=float(median(meas)), profiled_steps=len(prof),
                      unprofiled_steps=len(meas))
