"""The heavy operators against the machine's peaks: achieved FLOP/s and bytes/s, % of the
attainable roof, and what bounds each one.

Per operator name and dtype (all calls together, per step): FLOPs and bytes from the recorded
shapes (`trace/roofline.py`), time from its kernels on a GPU or its wall time on a CPU. Labels:

- compute-bound: right of the ridge point (FLOP/byte ≥ peak FLOP/s ÷ peak bytes/s);
- bandwidth-bound: left of it;
- overhead-bound: calls so short (< `OVERHEAD_CALL_US` each) and so far below the roof
  (< `OVERHEAD_EFFICIENCY`) that launch and dispatch, not arithmetic or memory, set their time;
- unknown: no peaks for this device (a GPU missing from the table, or a CPU trace analysed on a
  machine whose peaks were never measured: `perftune machine`).

Peaks: the GPU table (`trace/device_specs.py`) on GPU traces; on CPU traces this machine's
measured peaks, measured once by `perftune profile` on first use and cached (`perftune machine`
re-measures them).
"""

from __future__ import annotations

import math

import numpy as np

from perftune.documents import Efficiency, OpEfficiency, Roofs
from perftune.trace import roofline
from perftune.trace.model import Trace
from perftune.trace.tables import Tables

__all__ = ["OVERHEAD_CALL_US", "OVERHEAD_EFFICIENCY", "TOP_OPS", "efficiency_document"]

TOP_OPS = 15
OVERHEAD_CALL_US = 20.0
OVERHEAD_EFFICIENCY = 0.10


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def efficiency_document(trace: Trace, tables: Tables | None = None, top: int = TOP_OPS) -> Efficiency:
    roofs = roofline.peaks(trace, measure=False)
    doc_roofs = Roofs(flops_per_s=_finite(roofs.flops_per_s), bytes_per_s=_finite(roofs.bytes_per_s),
                      source=roofs.source)
    points = roofline.roofline_points(trace, tables)
    steps = trace.steps
    if points.empty or not steps:
        return Efficiency(roofs=doc_roofs)
    in_step = trace.step_of(trace.events["ts"].to_numpy()[points["row"].to_numpy()],
                            points["rank"].to_numpy()) >= 0
    points = points[in_step]
    if points.empty:
        return Efficiency(roofs=doc_roofs)
    n_steps = len(steps)
    step_ms = float(np.mean([s.dur for s in steps])) / 1000.0
    points = points.assign(dtype=points["dtype"].fillna(""))
    grouped = points.groupby(["name", "dtype", "kind"], sort=False).agg(
        calls=("row", "size"), flops=("flops", "sum"), bytes=("bytes", "sum"),
        dur_us=("dur_us", "sum"), peak=("peak_flops_per_s", "first"))
    grouped = grouped.sort_values("dur_us", ascending=False).head(top)
    ops = []
    for (name, dtype, kind), g in grouped.iterrows():
        seconds = g["dur_us"] * 1e-6
        f_s = g["flops"] / seconds if seconds > 0 else 0.0
        b_s = g["bytes"] / seconds if seconds > 0 else 0.0
        intensity = g["flops"] / g["bytes"] if g["bytes"] > 0 else math.inf
        peak_f = float(g["peak"])
        per_call_us = g["dur_us"] / g["calls"]
        if roofs.known and math.isfinite(peak_f):
            attainable = min(peak_f, intensity * roofs.bytes_per_s) if g["flops"] > 0 else roofs.bytes_per_s
            achieved = f_s if g["flops"] > 0 else b_s
            eff = achieved / attainable if attainable > 0 else math.nan
            bound = "compute" if intensity >= peak_f / roofs.bytes_per_s else "bandwidth"
            if per_call_us < OVERHEAD_CALL_US and eff < OVERHEAD_EFFICIENCY:
                bound = "overhead"
            percent = 100.0 * eff if math.isfinite(eff) else None
        else:
            bound, percent = "unknown", None
        ops.append(OpEfficiency(
            name=str(name), kind=str(kind), dtype=str(dtype) or None,
            calls_per_step=float(g["calls"]) / n_steps, ms_per_step=float(g["dur_us"]) / 1000.0 / n_steps,
            share=float(g["dur_us"]) / 1000.0 / n_steps / step_ms if step_ms > 0 else 0.0,
            flops_per_s=float(f_s), bytes_per_s=float(b_s), intensity=_finite(float(intensity)),
            bound=bound, percent_of_peak=percent))  # type: ignore[arg-type]
    return Efficiency(roofs=doc_roofs, ops=ops)
