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
from perftune.trace.tables import Tables

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


def summarize(trace: Trace, tables: Tables | None = None) -> Summary:
    """summary.json of a trace (version SCHEMA_VERSION), without the multi-rank section
    (perftune.pipeline.summary_of adds it); `tables`: the analysis's, when there is one."""
    breakdown = metrics.step_breakdown(trace, tables)
    dist = metrics.step_time_distribution(trace)
    mean = {k: finite(float(np.mean([getattr(b, k) for b in breakdown])) if breakdown else 0.0)
            for k in BREAKDOWN_KEYS}
    syncs = metrics.host_device_syncs(trace, tables)
    per_rank = []
    for rank in trace.rank_ids:
        d = metrics.Distribution.of(s.dur / 1000.0 for s in trace.steps_of(rank))
        per_rank.append(RankSteps(rank=rank, steps=d.count, median_ms=maybe(d.median)))
    ops = metrics.top_host_op_columns(trace, 10) or {"name": [], "calls": [], "self_ms": [],
                                                      "total_ms": []}
    kernels = metrics.top_kernel_columns(trace, 10) or {"name": [], "calls": [], "total_ms": [],
                                                        "mean_us": []}
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
        events=trace.n,
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


def _clean(value: Any) -> Any:
    """Plain data the schema accepts: NaN and infinities become None, numpy scalars Python's."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def merge_summaries(summaries: list[dict[str, Any]], step_ms: list[float],
                    top: int = 10) -> dict[str, Any]:
    """One summary of several ranks analysed apart (`perftune analyze DIR --jobs N`): counts
    and lists of every rank together, step statistics over `step_ms` (every step of every
    rank), the top host ops and kernels merged by name from each rank's top lists (so an op
    in no rank's top `top` is missing). The `multi_rank` section is the caller's."""
    if not summaries:
        raise ValueError("no rank summaries to merge")
    first = summaries[0]
    dist = metrics.Distribution.of(step_ms)
    per_step = [row for s in summaries for row in s.get("per_step", [])]
    weights = [len(s.get("per_step", [])) for s in summaries]
    breakdown = {}
    for key in first.get("breakdown_ms_per_step", {}):
        total_weight = sum(weights)
        breakdown[key] = (sum(float(s["breakdown_ms_per_step"].get(key) or 0.0) * w
                              for s, w in zip(summaries, weights, strict=True)) / total_weight
                          if total_weight else 0.0)
    by_call: dict[str, int] = {}
    for s in summaries:
        for call, n in s["syncs"]["by_call"].items():
            by_call[call] = by_call.get(call, 0) + n
    ops: dict[str, dict[str, Any]] = {}
    for s in summaries:
        for row in s.get("top_host_ops", []):
            slot = ops.setdefault(row["name"], {"name": row["name"], "calls": 0, "self_ms": 0.0,
                                                "total_ms": 0.0})
            for k in ("calls", "self_ms", "total_ms"):
                slot[k] += row[k] or 0
    kernels: dict[str, dict[str, Any]] = {}
    for s in summaries:
        for row in s.get("top_kernels", []):
            slot = kernels.setdefault(row["name"], {"name": row["name"], "calls": 0, "total_ms": 0.0})
            slot["calls"] += row["calls"] or 0
            slot["total_ms"] += row["total_ms"] or 0.0
    for slot in kernels.values():
        slot["mean_us"] = slot["total_ms"] * 1000.0 / slot["calls"] if slot["calls"] else 0.0
    ranks = sorted(r for s in summaries for r in s.get("ranks", []))
    merged: dict[str, Any] = _clean({
        "schema_version": first["schema_version"],
        "perftune_version": first["perftune_version"],
        "files": [f for s in summaries for f in s.get("files", [])],
        "runtime": first["runtime"],
        "has_device_activity": any(s.get("has_device_activity") for s in summaries),
        "devices": first.get("devices", []),
        "ranks": ranks,
        "world_size": max([len(ranks), *(s.get("world_size") or 0 for s in summaries)]),
        "ranks_loaded": len(ranks),
        "events": sum(s.get("events", 0) for s in summaries),
        "span_ms": max(s.get("span_ms") or 0.0 for s in summaries),
        "step_source": first["step_source"],
        "steps": {"count": dist.count, "median_ms": dist.median, "p10_ms": dist.p10,
                  "p90_ms": dist.p90, "mean_ms": dist.mean, "min_ms": dist.min, "max_ms": dist.max},
        "per_rank": [row for s in summaries for row in s.get("per_rank", [])],
        "breakdown_ms_per_step": breakdown,
        "per_step": per_step,
        "syncs": {"count": sum(s["syncs"]["count"] for s in summaries),
                  "in_steps": sum(s["syncs"]["in_steps"] for s in summaries),
                  "total_ms": _finite_total(s["syncs"]["total_ms"] for s in summaries),
                  "by_call": by_call},
        "top_host_ops": sorted(ops.values(), key=lambda r: -r["self_ms"])[:top],
        "top_kernels": sorted(kernels.values(), key=lambda r: -r["total_ms"])[:top],
        "warnings": [w for s in summaries for w in s.get("warnings", [])],
    })
    return merged


def _weighted(values: list[tuple[float, int]]) -> float:
    total = sum(n for _, n in values)
    return sum(v * n for v, n in values) / total if total else 0.0


def merge_phases(docs: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """summary.json `phases` of several ranks: each phase's mean per step over every step of
    every rank (weighted by the ranks' step counts), the per-step rows of all."""
    docs_n = [(d, len(d.get("per_step") or [])) for d in docs if d]
    if not docs_n:
        return None
    names: list[str] = []
    for d, _ in docs_n:
        names.extend(n for n in d["names"] if n not in names)
    mean_step = _weighted([(d["mean_step_ms"], n) for d, n in docs_n])
    means = []
    for name in names:
        rows = [(next((m for m in d["mean"] if m["name"] == name), None), n) for d, n in docs_n]
        present = [(m, n) for m, n in rows if m is not None]
        ms = _weighted([(m["ms"] if m else 0.0, n) for m, n in rows])
        entry: dict[str, Any] = {"name": name, "label": present[0][0]["label"], "ms": ms,
                                 "share": ms / mean_step if mean_step else 0.0}
        devices = [((m or {}).get("device"), n) for m, n in rows]
        if any(dev for dev, _ in devices):
            keys = next(dev for dev, _ in devices if dev).keys()
            entry["device"] = {k: _weighted([((dev or {}).get(k) or 0.0, n) for dev, n in devices])
                               for k in keys}
        else:
            entry["device"] = present[0][0].get("device")
        means.append(entry)
    return {"names": names, "mean_step_ms": mean_step, "mean": means,
            "per_step": [row for d, _ in docs_n for row in d["per_step"]],
            "max_sum_error": max(d["max_sum_error"] for d, _ in docs_n)}


_MODULE_PER_STEP = ("calls_per_step", "forward_ms", "forward_self_ms", "backward_ms",
                    "backward_self_ms", "self_ms", "total_ms")


def merge_modules(docs: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """summary.json `modules` of several ranks: per module path, its figures per step over
    every step of every rank (a rank without the module counts 0), ranked by own time."""
    given = [d for d in docs if d]
    if not given:
        return None
    traced = [d for d in given if d.get("source") == "trace"]
    if not traced:
        return {**given[0], "steps": sum(d.get("steps", 0) for d in given),
                "step_ms": _weighted([(d.get("step_ms", 0.0), d.get("steps", 0)) for d in given])}
    steps = [(d, d.get("steps", 0)) for d in traced]
    step_ms = _weighted([(d.get("step_ms", 0.0), n) for d, n in steps])
    paths: dict[str, dict[str, Any]] = {}
    for d, _ in steps:
        for m in d.get("modules", []):
            paths.setdefault(m["path"], m)
    modules = []
    for path, first in paths.items():
        rows = [(next((m for m in d.get("modules", []) if m["path"] == path), None), n) for d, n in steps]
        entry = {**first, **{k: _weighted([((m or {}).get(k) or 0.0, n) for m, n in rows])
                             for k in _MODULE_PER_STEP}}
        entry["share"] = entry["total_ms"] / step_ms if step_ms else 0.0
        entry["self_share"] = entry["self_ms"] / step_ms if step_ms else 0.0
        modules.append(entry)
    modules.sort(key=lambda m: -m["self_ms"])
    return {"source": "trace", "note": traced[0].get("note", ""),
            "steps": sum(n for _, n in steps), "step_ms": step_ms,
            "unattributed_backward_ms": _weighted([(d.get("unattributed_backward_ms", 0.0), n)
                                                   for d, n in steps]),
            "modules": modules}


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
