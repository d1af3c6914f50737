"""The allocator's memory over time, from the `[memory]` instant events of `profile_memory=True`.

The trace model keeps complete events only, so the instant events are read again from the
trace files here — with a decoder that types nothing but the four fields the plot needs, and
only for files that contain the marker at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np

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
    traceEvents: list[_Event] | None = None  # noqa: N815 - Kineto's field name


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


def memory_timeline(trace: Trace, max_points: int = 3000) -> tuple[MemorySeries, ...]:
    """One series per (rank, device) that recorded allocator events; () when none did."""
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
            groups.setdefault(key, []).append((e.ts, e.args.total_allocated,
                                               e.args.total_reserved or 0.0))
        for (dtype, did), rows in sorted(groups.items()):
            arr = np.asarray(sorted(rows), dtype=np.float64)
            t = (arr[:, 0] - trace.t0_us) / 1000.0
            t, alloc, reserved = _downsample(t, arr[:, 1], arr[:, 2], max_points)
            kind = _DEVICE_TYPES.get(dtype, f"device type {dtype}")
            label = kind if did < 0 or kind == "CPU" else f"{kind} {did}"
            if len(trace.ranks) > 1:
                label = f"rank {info.rank} {label}"
            out.append(MemorySeries(label=label, rank=info.rank, t_ms=tuple(t.tolist()),
                                    allocated_bytes=tuple(alloc.tolist()),
                                    reserved_bytes=tuple(reserved.tolist()),
                                    peak_allocated_bytes=float(arr[:, 1].max()), events=len(rows)))
    return tuple(out)
