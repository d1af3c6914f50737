"""The allocator's memory over time, from the `[memory]` instant events of `profile_memory=True`.

A trace model that keeps those events (`Trace.memory`) is read directly; for one that keeps
complete events only, the instant events are read again from the trace files — with a decoder
that types nothing but the four fields the plot needs, and only for files holding the marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import msgspec
import numpy as np
import pandas as pd

from perftune.errors import TraceError
from perftune.trace.decode import read_bytes
from perftune.trace.model import Trace

_MARKER = b'"[memory]"'
_DEVICE_TYPES = {0: "CPU", 1: "GPU"}


class _MemoryArgs(msgspec.Struct, frozen=True):
    total_allocated: float | None = msgspec.field(default=None, name="Total Allocated")
    total_reserved: float | None = msgspec.field(default=None, name="Total Reserved")
    device_type: int | None = msgspec.field(default=None, name="Device Type")
    device_id: int | None = msgspec.field(default=None, name="Device Id")


_NO_ARGS = _MemoryArgs()


class _Event(msgspec.Struct, frozen=True):
    ph: str = ""
    name: str = ""
    ts: float | None = None
    args: _MemoryArgs = _NO_ARGS


class _File(msgspec.Struct):
    traceEvents: list[_Event] | None = None  # Kineto's field name


_decoder = msgspec.json.Decoder(_File, strict=False)
_list_decoder = msgspec.json.Decoder(list[_Event], strict=False)


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


def _decode(data: bytes) -> list[_Event]:
    head = data.lstrip()[:1]
    try:
        if head == b"[":
            return _list_decoder.decode(data)
        return _decoder.decode(data).traceEvents or []
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []


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


def _from_files(trace: Trace, max_points: int) -> list[MemorySeries]:
    """Read the instant events again from the trace files (trace models without `memory`)."""
    out: list[MemorySeries] = []
    for info in trace.ranks:
        try:
            data = read_bytes(info.path)
        except TraceError:
            continue
        if _MARKER not in data:
            continue
        groups: dict[tuple[int, int], list[tuple[float, float, float]]] = {}
        for e in _decode(data):
            if e.ph != "i" or e.name != "[memory]" or e.ts is None or e.args.total_allocated is None:
                continue
            key = (e.args.device_type or 0, e.args.device_id if e.args.device_id is not None else -1)
            groups.setdefault(key, []).append((e.ts - trace.t0_us, e.args.total_allocated,
                                               e.args.total_reserved or 0.0))
        for (dtype, did), rows in sorted(groups.items()):
            arr = np.asarray(rows, dtype=np.float64)
            out.append(_series(trace, info.rank, dtype, did, arr[:, 0], arr[:, 1], arr[:, 2],
                               max_points))
    return out


def memory_timeline(trace: Trace, max_points: int = 3000) -> tuple[MemorySeries, ...]:
    """One series per (rank, device) that recorded allocator events; () when none did."""
    frame = getattr(trace, "memory", None)
    if isinstance(frame, pd.DataFrame) and "total_allocated" in frame.columns:
        return tuple(_from_frame(trace, frame, max_points)) if not frame.empty else ()
    return tuple(_from_files(trace, max_points))
