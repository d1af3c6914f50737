"""The allocator's memory over time, from the `[memory]` instant events of `profile_memory=True`
that the trace model keeps in `Trace.memory`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

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
    peak_pos = np.array([s + int(np.argmax(alloc[s:e]))
                         for s, e in zip(starts, [*starts[1:], len(t)], strict=True)])
    return t[peak_pos], alloc[peak_pos], reserved[peak_pos]


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


def _from_frame(trace: Trace, frame: pd.DataFrame, max_points: int) -> list[MemorySeries]:
    """From the trace model's own `memory` frame (ts already relative to the trace start)."""
    frame = frame[frame["total_allocated"].notna()]
    out = []
    keys = frame[["rank", "device_type", "device_id"]].fillna(-1).astype(np.int64)
    for key, group in frame.groupby([keys["rank"], keys["device_type"], keys["device_id"]],
                                    sort=True):
        rank, dtype, did = (int(v) for v in cast(tuple[Any, ...], key))
        out.append(_series(trace, rank, dtype, did,
                           group["ts"].to_numpy(dtype=np.float64),
                           group["total_allocated"].to_numpy(dtype=np.float64),
                           group["total_reserved"].fillna(0).to_numpy(dtype=np.float64),
                           max_points))
    return out


def memory_timeline(trace: Trace, max_points: int = 3000) -> tuple[MemorySeries, ...]:
    """One series per (rank, device) that recorded allocator events; () when none did."""
    frame = trace.memory
    if frame.empty or "total_allocated" not in frame.columns:
        return ()
    return tuple(_from_frame(trace, frame, max_points))
