"""summary.json as its Struct (`perftune.documents.Summary`): devices, ranks, steps, and where
step time goes. This is the stage that produces the document; every reader takes the Struct."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from perftune._version import __version__
from perftune.documents import (
    SCHEMA_VERSION,
    Breakdown,
    Device,
    HostOp,
    Kernel,
    RankSteps,
    StepBreakdown,
    StepStats,
    Summary,
    Syncs,
)
from perftune.trace import metrics
from perftune.trace.model import Trace

__all__ = ["BREAKDOWN_KEYS", "SCHEMA_VERSION", "devices", "finite", "maybe", "summarize"]
BREAKDOWN_KEYS = ("compute_ms", "communication_ms", "memcpy_ms", "memset_ms", "device_idle_ms",
                  "sync_ms", "dataloader_ms", "optimizer_ms")


def maybe(value: float | None) -> float | None:
    """A figure the schema allows to be null: None when undefined (NaN, inf)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def finite(value: float) -> float:
    """A figure the schema requires to be a number: an absurd `dur` in a hostile trace (inf,
    1e308) must not turn it into null (a summary.json perftune could not read back)."""
    number = float(value)
    if math.isfinite(number):
        return number
    return 0.0 if math.isnan(number) else math.copysign(sys.float_info.max, number)


def _count(value: Any) -> int | None:
    """An id or a count from deviceProperties as the schema's integer: traces re-serialised by
    other tools carry them as strings ("0") or floats (8.0); anything else is unknown (null)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def devices(trace: Trace) -> list[Device]:
    """The devices the trace used (deviceProperties lists every GPU of the machine; only those
    with recorded activity are reported, all of them when none has any)."""
    used = set(trace.device_ids())
    props_list = [p for p in trace.device_properties if p.get("id") in used] or \
        list(trace.device_properties)
    out = []
    for props in props_list:
        name = props.get("name")
        out.append(Device(id=_count(props.get("id")), name=None if name is None else str(name),
                          memory_bytes=_count(props.get("totalGlobalMem")),
                          sms=_count(props.get("numSms")),
                          compute_capability=(f"{props.get('computeMajor')}.{props.get('computeMinor')}"
                                              if props.get("computeMajor") is not None else None)))
    return out


def _step_row(b: metrics.StepBreakdown) -> StepBreakdown:
    return StepBreakdown(
        rank=int(b.rank), step=int(b.step), dur_ms=finite(b.dur_ms), compute_ms=finite(b.compute_ms),
        communication_ms=finite(b.communication_ms), memcpy_ms=finite(b.memcpy_ms),
        memset_ms=finite(b.memset_ms), device_busy_ms=finite(b.device_busy_ms),
        device_idle_ms=finite(b.device_idle_ms), sync_ms=finite(b.sync_ms),
        dataloader_ms=finite(b.dataloader_ms), optimizer_ms=finite(b.optimizer_ms),
        kernel_count=int(b.kernel_count))


def summarize(trace: Trace) -> Summary:
    """summary.json of a trace (version SCHEMA_VERSION), without the multi-rank section
    (perftune.pipeline.summary_of adds it)."""
    breakdown = metrics.step_breakdown(trace)
    dist = metrics.step_time_distribution(trace)
    mean = {k: finite(float(np.mean([getattr(b, k) for b in breakdown])) if breakdown else 0.0)
            for k in BREAKDOWN_KEYS}
    syncs = metrics.host_device_syncs(trace)
    per_rank = []
    for rank in trace.rank_ids:
        d = metrics.Distribution.of(s.dur / 1000.0 for s in trace.steps_of(rank))
        per_rank.append(RankSteps(rank=rank, steps=d.count, median_ms=maybe(d.median)))
    ops = metrics.top_host_ops(trace, 10)
    kernels = metrics.top_kernels(trace, 10)
    return Summary(
        schema_version=SCHEMA_VERSION,
        perftune_version=__version__,
        files=[str(p) for p in trace.paths],
        runtime=trace.runtime,  # type: ignore[arg-type]  # the loader sets cuda, rocm or cpu
        has_device_activity=bool(trace.has_device_activity),
        devices=devices(trace),
        ranks=list(trace.rank_ids),
        world_size=trace.world_size,
        ranks_loaded=len(trace.rank_ids),
        events=len(trace.events),
        span_ms=maybe(trace.span_us() / 1000.0),
        step_source=trace.step_source,  # type: ignore[arg-type]  # trace.steps sets one of three
        steps=StepStats(count=dist.count, median_ms=maybe(dist.median), p10_ms=maybe(dist.p10),
                        p90_ms=maybe(dist.p90), mean_ms=maybe(dist.mean), min_ms=maybe(dist.min),
                        max_ms=maybe(dist.max)),
        per_rank=per_rank,
        breakdown_ms_per_step=Breakdown(**mean),
        per_step=[_step_row(b) for b in breakdown],
        syncs=Syncs(count=len(syncs), in_steps=sum(1 for s in syncs if s.step >= 0),
                    total_ms=finite(_finite_total(s.dur_us for s in syncs) / 1000.0),
                    by_call=_count_by(s.call for s in syncs)),
        top_host_ops=[HostOp(name=str(n), calls=int(c), self_ms=finite(s), total_ms=finite(t))
                      for n, c, s, t in zip(ops["name"], ops["calls"], ops["self_ms"],
                                            ops["total_ms"], strict=True)],
        top_kernels=[Kernel(name=str(n), calls=int(c), total_ms=finite(t), mean_us=finite(m))
                     for n, c, t, m in zip(kernels["name"], kernels["calls"], kernels["total_ms"],
                                           kernels["mean_us"], strict=True)],
        warnings=list(trace.warnings),
    )


def _finite_total(values: Iterable[float]) -> float:
    """A sum the schema can hold: an absurd `dur` in a hostile trace (inf, 1e308) must not turn
    the total into null (summary.json's `syncs.total_ms` is a number)."""
    total = sum(v for v in values if math.isfinite(v))
    return total if math.isfinite(total) else sys.float_info.max


def _count_by(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out
