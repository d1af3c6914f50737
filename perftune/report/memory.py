"""The allocator's memory over time, from the `[memory]` instant events of `profile_memory=True`
that the trace model keeps in `Trace.memory_columns` (no pandas)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perftune.trace.model import Trace

_DEVICE_TYPES = {0: "CPU", 1: "GPU"}


@dataclass(frozen=True)
class MemorySeries:
    """One device's allocator totals over time (ms from the start of the trace)."""

    label: str
    rank: int
    t_ms: tuple[float, ...]
    allocated_bytes: tuple[float, ...]
    reserved_bytes: tuple[float, ...]
    peak_allocated_bytes: float
    events: int


def _downsample(t: np.ndarray, alloc: np.ndarray, reserved: np.ndarray,
                max_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At most `max_points` samples, keeping each bucket's peak (peaks are what matter)."""
    if len(t) <= max_points:
        return t, alloc, reserved
    edges = np.linspace(0, len(t), max_points + 1).astype(np.int64)
    starts = edges[:-1][np.diff(edges) > 0]
    peak_pos = _bucket_argmax(alloc, starts)
    return t[peak_pos], alloc[peak_pos], reserved[peak_pos]


def _bucket_argmax(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The position of each bucket's first maximum (`np.argmax` of values[start:next start]),
    for every bucket at once."""
    if np.isnan(values).any():  # argmax's NaN rule (the first NaN wins), one bucket at a time
        return np.array([s + int(np.argmax(values[s:e]))
                         for s, e in zip(starts, [*starts[1:], len(values)], strict=True)])
    top = np.maximum.reduceat(values, starts)
    bucket = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(values))))
    hits = np.flatnonzero(values == top[bucket])
    first: np.ndarray = hits[np.searchsorted(bucket[hits], np.arange(len(starts)))]
    return first


def _series(trace: Trace, rank: int, device_type: int, device_id: int, t_us: np.ndarray,
            alloc: np.ndarray, reserved: np.ndarray, max_points: int) -> MemorySeries:
    order = np.argsort(t_us, kind="stable")
    t_us, alloc, reserved = t_us[order], alloc[order], reserved[order]
    t, a, r = _downsample(t_us / 1000.0, alloc, reserved, max_points)
    kind = _DEVICE_TYPES.get(device_type, f"device type {device_type}")
    label = kind if device_id < 0 or kind == "CPU" else f"{kind} {device_id}"
    if len(trace.ranks) > 1:
        label = f"rank {rank} {label}"
    return MemorySeries(label=label, rank=rank, t_ms=tuple(t.tolist()),
                        allocated_bytes=tuple(a.tolist()), reserved_bytes=tuple(r.tolist()),
                        peak_allocated_bytes=float(alloc.max()), events=len(t_us))


def _key(column: np.ndarray) -> np.ndarray:
    """A grouping key column: missing values (NaN) as -1, as int64."""
    if column.dtype.kind == "f":
        column = np.where(np.isnan(column), -1.0, column)
    return column.astype(np.int64)


def _from_columns(trace: Trace, memory: dict[str, np.ndarray],
                  max_points: int) -> list[MemorySeries]:
    """From the trace model's own `memory_columns` (ts already relative to the trace start):
    one series per (rank, device type, device id), in key order, each with its events in
    trace order."""
    keep = ~np.isnan(memory["total_allocated"].astype(np.float64))
    m = {c: v[keep] for c, v in memory.items()}
    if not len(m["ts"]):
        return []
    rank, dtype, did = (_key(m[c]) for c in ("rank", "device_type", "device_id"))
    order = np.lexsort((did, dtype, rank))  # stable: trace order within a group
    rank, dtype, did = rank[order], dtype[order], did[order]
    cut = np.flatnonzero((rank[1:] != rank[:-1]) | (dtype[1:] != dtype[:-1])
                         | (did[1:] != did[:-1])) + 1
    ts = m["ts"].astype(np.float64)[order]
    alloc = m["total_allocated"].astype(np.float64)[order]
    reserved = m["total_reserved"].astype(np.float64)[order]
    reserved = np.where(np.isnan(reserved), 0.0, reserved)
    out = []
    for a, b in zip([0, *cut.tolist()], [*cut.tolist(), len(order)], strict=True):
        out.append(_series(trace, int(rank[a]), int(dtype[a]), int(did[a]), ts[a:b],
                           alloc[a:b], reserved[a:b], max_points))
    return out


def memory_timeline(trace: Trace, max_points: int = 3000) -> tuple[MemorySeries, ...]:
    """One series per (rank, device) that recorded allocator events; () when none did."""
    memory = trace.memory_columns
    if "total_allocated" not in memory or not len(memory["total_allocated"]):
        return ()
    return tuple(_from_columns(trace, memory, max_points))
