"""Device memory: the allocator's peak from `[memory]` events, and allocator churn.

With `profile_memory=True` the profiler writes one `[memory]` instant event per allocation and
free, carrying the allocator's running totals (`Total Allocated`, `Total Reserved`); the loader
keeps them in `Trace.memory` (columns rank, ts, device_type, device_id, addr, bytes,
total_allocated, total_reserved).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from perftune.trace import categories as C
from perftune.trace.frames import parse_python_function
from perftune.trace.model import NO_ID, Trace
from perftune.trace.tables import Tables

if TYPE_CHECKING:
    pass

CUDA_DEVICE_TYPE = 1  # c10::DeviceType::CUDA (HIP builds report CUDA too)
_MEMORY_COLUMNS = ("rank", "ts", "device_type", "device_id", "bytes", "total_allocated",
                   "total_reserved")


def memory_columns(trace: Trace) -> dict[str, np.ndarray]:
    """`Trace.memory_columns`, or empty columns for traces without memory events."""
    mem = getattr(trace, "memory_columns", None)
    if isinstance(mem, dict) and set(_MEMORY_COLUMNS) <= set(mem):
        return mem
    return {c: np.empty(0) for c in _MEMORY_COLUMNS}


def _filled(values: np.ndarray) -> np.ndarray:
    """Missing values (NaN) as -1."""
    if values.dtype.kind == "f":
        return np.where(np.isnan(values), -1.0, values)
    return values


@dataclass(frozen=True)
class MemoryPeak:
    """The allocator's high-water marks on one device of one rank."""

    rank: int
    device_id: int
    events: int
    peak_allocated: int
    peak_reserved: int
    peak_ts: float
    capacity: int | None  # totalGlobalMem of the device, when the trace says
    device_name: str | None

    @property
    def allocated_share(self) -> float | None:
        return self.peak_allocated / self.capacity if self.capacity else None

    @property
    def reserved_share(self) -> float | None:
        return self.peak_reserved / self.capacity if self.capacity else None


def _capacity(trace: Trace, rank: int, device_id: int) -> tuple[int | None, str | None]:
    props: Sequence[dict[str, object]] = ()
    for info in trace.ranks:
        if info.rank == rank:
            props = info.device_properties
    chosen = None
    for p in props:
        if p.get("id") == device_id:
            chosen = p
    if chosen is None and len(props) == 1:
        chosen = props[0]
    if chosen is None:
        return None, None
    total = chosen.get("totalGlobalMem")
    name = chosen.get("name")
    return (int(total) if isinstance(total, (int, float)) else None,
            str(name) if name is not None else None)


def device_memory_peaks(trace: Trace, tables: Tables | None = None) -> list[MemoryPeak]:
    """Peak allocated / reserved bytes per (rank, device) from the GPU allocator's events."""
    mem = memory_columns(trace)
    out: list[MemoryPeak] = []
    if len(mem["ts"]) == 0:
        return out
    rank = mem["rank"]
    dev = _filled(mem["device_id"]).astype(np.int64)
    alloc = _filled(mem["total_allocated"]).astype(np.int64)
    reserved = _filled(mem["total_reserved"]).astype(np.int64)
    ts = mem["ts"]
    gpu = (_filled(mem["device_type"]) == CUDA_DEVICE_TYPE) & (alloc >= 0)
    for r, d in sorted(set(zip(rank[gpu].tolist(), dev[gpu].tolist(), strict=True))):
        sel = np.flatnonzero(gpu & (rank == r) & (dev == d))
        k = sel[int(np.argmax(alloc[sel]))]
        capacity, name = _capacity(trace, r, d)
        out.append(MemoryPeak(rank=r, device_id=d, events=len(sel),
                              peak_allocated=int(alloc[k]),
                              peak_reserved=int(max(reserved[sel].max(), 0)),
                              peak_ts=float(ts[k]), capacity=capacity, device_name=name))
    return out


def op_at(trace: Trace, rank: int, ts: float) -> int | None:
    """The outermost cpu_op running at time ts on a rank (the longest, across threads)."""
    sel = np.flatnonzero(trace.cat_is(C.CPU_OP) & (trace.col("rank") == rank)
                         & (trace.col("ts") <= ts) & (trace.col("end") >= ts))
    if len(sel) == 0:
        return None
    durs = trace.col("dur")[sel]
    return int(sel[int(np.argmax(durs))])


# ---------------------------------------------------------------------------- churn
@dataclass(frozen=True)
class AllocatorCalls:
    """cudaMalloc/cudaFree (hipMalloc/hipFree ...) calls in the steady-state steps."""

    rows: np.ndarray
    steps: np.ndarray  # index into trace.steps
    steady_steps: int  # steps counted (each rank's first step is warm-up and left out)
    empty_cache_rows: np.ndarray  # python frames or ops of torch.cuda.empty_cache()


def _first_step_indices(trace: Trace) -> set[int]:
    first: dict[int, int] = {}
    for k, s in enumerate(trace.steps):
        if s.rank not in first:
            first[s.rank] = k
    return set(first.values())


def allocator_calls(trace: Trace, tables: Tables | None = None) -> AllocatorCalls:
    host = ~trace.col("is_device")
    calls = trace.name_isin(C.MALLOC_CALLS - {"cudaHostAlloc", "cudaFreeHost", "hipHostMalloc"}) & host
    steps = trace.step_of(trace.col("ts"), trace.col("rank"))
    warm = _first_step_indices(trace)
    steady = (steps != NO_ID) & ~np.isin(steps, list(warm))
    rows = np.flatnonzero(calls & steady)
    # torch.cuda.empty_cache(): visible as a python frame (with_stack) or a named annotation.
    cand = [n for n in trace.strings("name") if "empty_cache" in str(n) or "emptyCache" in str(n)]
    ec_mask = trace.name_isin(cand) & host & steady
    ec_rows = [r for r in np.flatnonzero(ec_mask).tolist() if _is_empty_cache(trace, r)]
    n_steady = len(trace.steps) - len(warm) if trace.steps else 0
    return AllocatorCalls(rows=rows, steps=steps[rows], steady_steps=max(n_steady, 0),
                          empty_cache_rows=np.asarray(ec_rows, dtype=np.int64))


def _is_empty_cache(trace: Trace, row: int) -> bool:
    if trace.cat_of(row) != C.PYTHON_FUNCTION:
        return True
    frame = parse_python_function(trace.name_of(row))
    return frame is not None and frame.function == "empty_cache"
