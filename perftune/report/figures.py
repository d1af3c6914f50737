"""Plotly figures of a report, as plain {"data": [...], "layout": {...}} dictionaries.

They are drawn by the plotly.js bundled in the page, so building them needs no plotly import.
Text that plotly draws (names in hover labels, axis categories) goes through `label()`:
plotly.js interprets a few HTML-like tags in such strings, so names from a trace are
entity-escaped there — plotly shows `&lt;` as `<` without ever treating it as markup.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from perftune.documents import Modules, RankStats, StepBreakdown, StepPhaseTimes, Summary
from perftune.report.data import StepTiming
from perftune.report.memory import MemorySeries
from perftune.report.ranks import CollectiveTimeline, StepGrid
from perftune.report.timeline import StepTimeline

Figure = dict[str, Any]

COLORS = {
    "compute": "#4C78A8", "kernel": "#4C78A8", "communication": "#F58518", "memcpy": "#54A24B",
    "memset": "#88D27A", "idle": "#D0D0D0", "sync": "#E45756",
    "dataloader": "#B279A2", "optimizer": "#9D755D", "op": "#72B7B2", "other host": "#BAB0AC",
    "warmup": "#BAB0AC", "profiled": "#F58518", "measured": "#4C78A8",
    # phases of a step (analysis/phases.py)
    "profiler": "#E0E0E0", "data": "#B279A2", "zero_grad": "#C7A88F", "backward": "#E45756",
    "forward": "#4C78A8", "other_ops": "#72B7B2", "python": "#BAB0AC", "module": "#9ECAE9",
    "compiled": "#EECA3B",  # a torch.compile'd region (report/timeline.py)
}
_FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12}


def label(text: Any, limit: int = 160) -> str:
    """A string safe for plotly's pseudo-HTML text, shortened to `limit` characters."""
    s = str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return html.escape(s, quote=False)


def _layout(**kwargs: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"font": _FONT, "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
                            "height": 360, "hovermode": "closest", "paper_bgcolor": "white",
                            "plot_bgcolor": "white",
                            "legend": {"orientation": "h", "x": 0, "y": 1.02, "xanchor": "left",
                                       "yanchor": "bottom"}}
    for key, value in kwargs.items():
        base[key] = value
    return base


def _axis(title: str, **kwargs: Any) -> dict[str, Any]:
    return {"title": {"text": title}, "gridcolor": "#eee", "zerolinecolor": "#ccc", **kwargs}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# ---------------------------------------------------------------------------- step time
def step_time_figure(timing: StepTiming) -> Figure | None:
    if not timing.points:
        return None
    data: list[dict[str, Any]] = []
    for phase in ("warmup", "profiled", "measured"):
        pts = [p for p in timing.points if p.phase == phase]
        if not pts:
            continue
        data.append({"type": "bar", "name": phase, "x": [p.index for p in pts],
                     "y": [p.duration_ms for p in pts], "marker": {"color": COLORS[phase]},
                     "hovertemplate": f"step %{{x}} ({phase})<br>%{{y:.3f}} ms<extra></extra>"})
    shapes: list[dict[str, Any]] = []
    head = timing.headline
    if head is not None and _finite(head.median):
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": head.median,
                       "y1": head.median, "line": {"color": "#333", "width": 1.5, "dash": "dash"}})
        if _finite(head.p10) and _finite(head.p90):
            shapes.append({"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "y0": head.p10,
                           "y1": head.p90, "fillcolor": "rgba(76,120,168,0.12)", "line": {"width": 0},
                           "layer": "below"})
    yaxis = _axis("step time (ms)")
    annotations = []
    kept = [p.duration_ms for p in timing.points if p.phase != "warmup"]
    warm = [p.duration_ms for p in timing.points if p.phase == "warmup"]
    if kept and warm and max(warm) > 3 * max(kept):
        # A compile or cache-warming first step would flatten every other bar: clip it.
        yaxis["range"] = [0, 1.6 * max(kept)]
        annotations.append({"text": f"warm-up clipped (up to {max(warm):,.0f} ms)", "xref": "paper",
                            "yref": "paper", "x": 0, "y": 1.0, "xanchor": "left",
                            "showarrow": False, "font": {"size": 11, "color": "#666"}})
    return {"data": data, "layout": _layout(
        barmode="group", shapes=shapes, xaxis=_axis("step"), yaxis=yaxis, height=300,
        annotations=annotations)}


# ---------------------------------------------------------------------------- breakdown
DEVICE_STACK = (("compute_ms", "compute"), ("communication_ms", "communication"),
                ("memcpy_ms", "memcpy"), ("memset_ms", "memset"), ("device_idle_ms", "idle"))
HOST_STACK = (("sync_ms", "sync"), ("dataloader_ms", "dataloader"), ("optimizer_ms", "optimizer"))


# Past this many ranks the step breakdown shows each step's mean over the ranks (the per-rank
# view is the heatmap and the per-rank table), and the timeline the ranks that wait most.
MAX_RANK_BARS = 16
MAX_TIMELINE_RANKS = 16
MAX_HEATMAP_HEIGHT = 900


def _mean_over_ranks(per_step: Sequence[StepBreakdown],
                     phase_steps: Sequence[StepPhaseTimes]) -> tuple[list[StepBreakdown], list[StepPhaseTimes]]:
    """Per step index, the mean over the ranks of its breakdown (and of its phases, given one
    phase row per breakdown row)."""
    rows: dict[int, list[int]] = {}
    for n, s in enumerate(per_step):
        rows.setdefault(s.step, []).append(n)
    fields = [f for f in StepBreakdown.__struct_fields__ if f not in ("rank", "step")]
    steps: list[StepBreakdown] = []
    phases: list[StepPhaseTimes] = []
    for step, picks in sorted(rows.items()):
        mean = {f: sum(float(getattr(per_step[n], f)) for n in picks) / len(picks) for f in fields}
        mean["kernel_count"] = round(mean["kernel_count"])
        steps.append(msgspec.convert({"rank": -1, "step": step, **mean}, StepBreakdown))
        if phase_steps:
            names = {k for n in picks for k in phase_steps[n].phases}
            phases.append(StepPhaseTimes(
                rank=-1, step=step, dur_ms=mean["dur_ms"],
                phases={k: sum(phase_steps[n].phases.get(k, 0.0) for n in picks) / len(picks)
                        for k in sorted(names)}))
    return steps, phases


def breakdown_figure(summary: Summary | None) -> Figure | None:
    """Per step, two stacked bars: the device's time (what it did and when it sat idle) and the
    host's (waiting in syncs, for data, in the optimizer, everything else) — the two views
    overlap in time, so they are drawn side by side rather than added up."""
    per_step = summary.per_step if summary is not None else []
    if summary is None or not per_step:
        return None
    phases = summary.phase_section
    phase_steps = list(phases.per_step) if phases is not None else []
    if len({s.rank for s in per_step}) > MAX_RANK_BARS:  # many ranks: each step's mean
        per_step, phase_steps = _mean_over_ranks(
            per_step, phase_steps if len(phase_steps) == len(per_step) else [])
    multi_rank = len({s.rank for s in per_step}) > 1
    xs = [f"r{s.rank} s{s.step}" if multi_rank else str(s.step) for s in per_step]
    device = summary.has_device_activity
    data: list[dict[str, Any]] = []
    if device:
        for key, name in DEVICE_STACK:
            values = [float(getattr(s, key)) for s in per_step]
            if key in ("communication_ms", "memset_ms") and not any(values):
                continue
            data.append({"type": "bar", "name": f"device: {name}", "x": xs, "y": values,
                         "offsetgroup": "device", "legendgroup": "device",
                         "marker": {"color": COLORS[name]},
                         "hovertemplate": f"{name}: %{{y:.3f}} ms<extra>device</extra>"})
    if phases is not None and len(phase_steps) == len(per_step):
        # The phases partition each step: the host bar is them, with nothing left over.
        labels = {p.name: p.label for p in phases.mean}
        for name in phases.names:
            values = [float(s.phases.get(name) or 0.0) for s in phase_steps]
            if not any(values):
                continue
            text = label(labels.get(name, name), 60)
            data.append({"type": "bar", "name": f"host: {text}", "x": xs, "y": values,
                         "offsetgroup": "host", "legendgroup": "host",
                         "marker": {"color": COLORS.get(name, "#999")},
                         "hovertemplate": f"{text}: %{{y:.3f}} ms<extra>phase</extra>"})
        return {"data": data, "layout": _layout(
            barmode="relative",
            xaxis=_axis("step (left bar: device, right bar: phases)" if device else "step (phases)",
                        type="category"),
            yaxis=_axis("ms"), height=400)}
    other = []
    for s in per_step:
        known = sum(float(getattr(s, k)) for k, _ in HOST_STACK)
        other.append(max(0.0, float(s.dur_ms) - known))
    for key, name in HOST_STACK:
        values = [float(getattr(s, key)) for s in per_step]
        if not any(values):
            continue
        data.append({"type": "bar", "name": f"host: {name}", "x": xs, "y": values,
                     "offsetgroup": "host", "legendgroup": "host", "marker": {"color": COLORS[name]},
                     "hovertemplate": f"{name}: %{{y:.3f}} ms<extra>host</extra>"})
    data.append({"type": "bar", "name": "host: other", "x": xs, "y": other, "offsetgroup": "host",
                 "legendgroup": "host", "marker": {"color": COLORS["other host"]},
                 "hovertemplate": "other: %{y:.3f} ms<extra>host</extra>"})
    return {"data": data, "layout": _layout(
        barmode="relative",
        xaxis=_axis("step (left bar: device, right bar: host)" if device else "step (host time)",
                    type="category"),
        yaxis=_axis("ms"), height=380)}


# ---------------------------------------------------------------------------- modules
def module_tree_figure(modules: Modules | None) -> Figure | None:
    """The module tree as a plotly icicle: each box a module, its size the module's total time
    per step (forward + backward), its own time and share on hover; click a box to fold in."""
    rows = modules.modules if modules is not None else []
    if not rows:
        return None
    known = {m.path for m in rows}
    ids = [m.path for m in rows]
    parents = [m.parent if m.parent in known else "" for m in rows]
    return {"data": [{
        "type": "icicle", "ids": [label(i, 400) for i in ids],
        "labels": [label(m.name, 60) for m in rows],
        "parents": [label(p or "", 400) for p in parents],
        "values": [max(float(m.total_ms), 0.0) for m in rows], "branchvalues": "total",
        "customdata": [[float(m.forward_ms), float(m.backward_ms), float(m.self_ms),
                        100.0 * float(m.share), float(m.calls_per_step)] for m in rows],
        "hovertemplate": ("%{id}<br>total %{value:.3f} ms/step (%{customdata[3]:.1f}% of the step)"
                          "<br>forward %{customdata[0]:.3f} ms · backward %{customdata[1]:.3f} ms"
                          "<br>own %{customdata[2]:.3f} ms · %{customdata[4]:.3g} calls/step"
                          "<extra></extra>"),
        "tiling": {"orientation": "v"}, "root": {"color": "#f5f5f5"},
        "marker": {"colors": [float(m.self_share) for m in rows], "colorscale": "Blues",
                   "reversescale": True, "cmin": 0.0, "cmax": max(float(m.self_share) for m in rows) or 1.0,
                   "showscale": False},
    }], "layout": _layout(height=max(320, 60 + 70 * (1 + max(m.depth for m in rows))),
                          margin={"l": 10, "r": 10, "t": 30, "b": 10})}


# ---------------------------------------------------------------------------- timeline
def timeline_figure(timeline: StepTimeline) -> Figure:
    data: list[dict[str, Any]] = []
    kinds = sorted({b.kind for b in timeline.bars}, key=list(COLORS).index)
    for kind in kinds:
        bars = [b for b in timeline.bars if b.kind == kind]
        data.append({
            "type": "bar", "orientation": "h", "name": kind,
            "y": [label(b.lane, 60) for b in bars], "base": [b.start_ms for b in bars],
            "x": [max(b.dur_ms, 1e-4) for b in bars],
            "hovertext": [f"{label(b.name)}<br>{b.dur_ms:.3f} ms at +{b.start_ms:.3f} ms"
                          + ("<br>" + "<br>".join(label(d, 200) for d in b.detail.split("<br>"))
                             if b.detail else "")
                          for b in bars],
            "hoverinfo": "text", "marker": {"color": COLORS.get(kind, "#999"), "line": {"width": 0}},
        })
    lanes = [label(lane, 60) for lane in timeline.lanes]
    return {"data": data, "layout": _layout(
        barmode="overlay", bargap=0.25, height=max(220, 70 + 48 * len(lanes)),
        margin={"l": 200, "r": 20, "t": 40, "b": 50},
        xaxis=_axis(f"ms from the start of {label(timeline.step_name)}"),
        yaxis={"categoryorder": "array", "categoryarray": lanes[::-1], "automargin": True},
        shapes=[{"type": "line", "x0": timeline.dur_ms, "x1": timeline.dur_ms, "yref": "paper",
                 "y0": 0, "y1": 1, "line": {"color": "#333", "dash": "dot", "width": 1}}])}


# ---------------------------------------------------------------------------- memory
def _byte_unit(peak: float) -> tuple[str, float]:
    for unit, size in (("GiB", 1024.0 ** 3), ("MiB", 1024.0 ** 2), ("KiB", 1024.0)):
        if peak >= size:
            return unit, size
    return "B", 1.0


def memory_figure(series: Sequence[MemorySeries], step_starts_ms: Iterable[float] = ()) -> Figure:
    unit, gib = _byte_unit(max((s.peak_allocated_bytes for s in series), default=0.0))
    data: list[dict[str, Any]] = []
    for s in series:
        data.append({"type": "scatter", "mode": "lines", "line": {"shape": "hv"},
                     "name": f"{label(s.label)} allocated", "x": list(s.t_ms),
                     "y": [v / gib for v in s.allocated_bytes],
                     "hovertemplate": f"%{{y:.3f}} {unit} at %{{x:.1f}} ms<extra></extra>"})
        if any(s.reserved_bytes):
            data.append({"type": "scatter", "mode": "lines", "line": {"shape": "hv", "dash": "dot"},
                         "name": f"{label(s.label)} reserved", "x": list(s.t_ms),
                         "y": [v / gib for v in s.reserved_bytes],
                         "hovertemplate": f"%{{y:.3f}} {unit} at %{{x:.1f}} ms<extra></extra>"})
    shapes = [{"type": "line", "x0": t, "x1": t, "yref": "paper", "y0": 0, "y1": 1,
               "line": {"color": "#bbb", "width": 1, "dash": "dot"}} for t in step_starts_ms]
    return {"data": data, "layout": _layout(xaxis=_axis("ms from the start of the trace"),
                                            yaxis=_axis(unit), shapes=shapes[:200])}


# ---------------------------------------------------------------------------- roofline
@dataclass(frozen=True)
class RooflineOp:
    """One operator (name, kind, dtype) summed over its calls."""

    name: str
    kind: str
    dtype: str
    calls: int
    flops: float
    bytes: float
    time_ms: float

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes > 0 else math.inf

    @property
    def flops_per_s(self) -> float:
        return self.flops / (self.time_ms / 1000.0) if self.time_ms > 0 else 0.0

    @property
    def tflops(self) -> float:
        return self.flops_per_s / 1e12


def heavy_ops(points: Any, top: int = 40) -> list[RooflineOp]:
    """The `top` operators by time from perftune.trace.roofline.roofline_columns (`Points`: one
    row per op call: name, kind, dtype, flops, bytes, dur_us), summed per (name, kind, dtype)
    as pandas' groupby sum would (perftune.trace.groups), without pandas."""
    from perftune.trace import groups as G

    if points is None or len(points) == 0:
        return []
    dtype = np.empty(len(points), dtype=object)
    dtype[:] = ["" if d is None or d != d else str(d) for d in points.col("dtype").tolist()]
    codes, keys = G.group_codes([points.col("name"), points.col("kind"), dtype])
    n = len(keys)
    calls = G.group_size(codes, n)
    flops = G.group_sum(codes, points.col("flops"), n)
    nbytes = G.group_sum(codes, points.col("bytes"), n)
    dur_us = G.group_sum(codes, points.col("dur_us"), n)
    out = []
    for g in G.sort_desc(dur_us)[:top].tolist():
        name, kind, dt = keys[g]
        op = RooflineOp(str(name), str(kind), str(dt), int(calls[g]), float(flops[g]),
                        float(nbytes[g]), float(dur_us[g]) / 1000.0)
        if op.flops > 0 and op.bytes > 0 and op.time_ms > 0:
            out.append(op)
    return out


def roofline_figure(ops: Sequence[RooflineOp], peak_flops_per_s: float | None,
                    peak_bytes_per_s: float | None,
                    flops_by_dtype: Mapping[str, float] | None = None,
                    roof_source: str = "") -> Figure | None:
    """Heavy ops at (FLOP/byte, achieved TFLOP/s), marker area by time, under the roofs."""
    if not ops:
        return None
    xs = [op.intensity for op in ops]
    roofs: dict[str, float] = {}
    bandwidth = 0.0
    if _finite(peak_flops_per_s) and _finite(peak_bytes_per_s) and peak_flops_per_s and peak_bytes_per_s:
        roofs = {"fp32": float(peak_flops_per_s)}
        roofs.update({k: float(v) for k, v in (flops_by_dtype or {}).items() if _finite(v)})
        bandwidth = float(peak_bytes_per_s)
    # TFLOP/s for accelerators, GFLOP/s for a CPU: numbers a reader recognises.
    top = max([*(op.flops_per_s for op in ops), *roofs.values()])
    unit, scale = ("TFLOP/s", 1e12) if top >= 1e12 else ("GFLOP/s", 1e9)
    biggest = max(op.time_ms for op in ops) or 1.0
    kinds = sorted({op.kind for op in ops})
    palette = ["#4C78A8", "#F58518", "#54A24B", "#B279A2", "#E45756", "#72B7B2", "#9D755D"]
    data: list[dict[str, Any]] = []
    for n, kind in enumerate(kinds):
        sel = [op for op in ops if op.kind == kind]
        data.append({
            "type": "scatter", "mode": "markers", "name": label(kind, 40),
            "x": [op.intensity for op in sel], "y": [op.flops_per_s / scale for op in sel],
            "marker": {"size": [8 + 24 * math.sqrt(op.time_ms / biggest) for op in sel],
                       "color": palette[n % len(palette)], "opacity": 0.75,
                       "line": {"width": 0.5, "color": "#fff"}},
            "hovertext": [f"{label(op.name)} ({label(op.dtype or '?')}, {op.calls} calls)<br>"
                          f"{op.intensity:.2f} FLOP/byte · {op.flops_per_s / scale:.3g} {unit} · "
                          f"{op.time_ms:.3f} ms" for op in sel],
            "hoverinfo": "text"})
    lo, hi = min(xs) / 4, max(xs) * 4
    annotations = []
    if roofs:
        lo = min(lo, min(roofs.values()) / bandwidth / 8)
        hi = max(hi, max(roofs.values()) / bandwidth * 8)
        for n, (dtype, flops) in enumerate(sorted(roofs.items(), key=lambda kv: kv[1])):
            ridge = flops / bandwidth
            data.append({"type": "scatter", "mode": "lines", "name": f"roof {label(dtype)}",
                         "x": [lo, ridge, hi],
                         "y": [lo * bandwidth / scale, flops / scale, flops / scale],
                         "line": {"color": "#E45756", "width": 2 if dtype == "fp32" else 1,
                                  "dash": "solid" if dtype == "fp32" else "dash"},
                         "hovertemplate": f"{label(dtype)} roof: {flops / scale:.3g} {unit}, ridge at "
                                          f"{ridge:.1f} FLOP/byte<extra></extra>",
                         "showlegend": n == 0 or dtype == "fp32"})
        if roof_source:
            annotations.append({"text": label(roof_source, 90), "xref": "paper", "yref": "paper",
                                "x": 1, "y": 1.06, "showarrow": False, "xanchor": "right",
                                "font": {"size": 11, "color": "#666"}})
    return {"data": data, "layout": _layout(
        xaxis=_axis("arithmetic intensity (FLOP/byte)", type="log",
                    range=[math.log10(lo), math.log10(hi)]),
        yaxis=_axis(f"achieved {unit}", type="log"), height=420, annotations=annotations)}


# ---------------------------------------------------------------------------- ranks
_KIND_COLORS = ("#F58518", "#4C78A8", "#54A24B", "#B279A2", "#72B7B2", "#9D755D", "#BAB0AC")


def rank_heatmap_figure(grid: StepGrid) -> Figure:
    """Step time per rank (rows) and step (columns): a straggler is a row, a slow step a column."""
    ylabels = [f"rank {r}" for r in grid.ranks]
    hover = [[f"rank {r}, step {s}" + (f" ({label(grid.phases[s])})" if s in grid.phases else "")
              + (f"<br>{v:.3f} ms" if v is not None else "<br>no step")
              for s, v in zip(grid.steps, row, strict=True)]
             for r, row in zip(grid.ranks, grid.dur_ms, strict=True)]
    values = [v for row in grid.dur_ms for v in row if v is not None]
    # Warm-up steps (compilation, first allocations) would wash out the colour of the rest.
    kept = [v for s, row in zip(grid.steps, zip(*grid.dur_ms, strict=True), strict=True)
            for v in row if v is not None and grid.phases.get(s) != "warmup"] or values
    top = max(kept) if kept else None
    data: dict[str, Any] = {
        "type": "heatmap", "x": list(grid.steps), "y": ylabels, "z": [list(r) for r in grid.dur_ms],
        "text": hover, "hoverinfo": "text", "colorscale": "Viridis", "reversescale": False,
        "colorbar": {"title": {"text": "ms"}}, "xgap": 1, "ygap": 1 if len(grid.ranks) <= 64 else 0,
    }
    if top is not None:
        data.update(zmin=min(kept), zmax=top)
    return {"data": [data], "layout": _layout(
        xaxis=_axis("step", type="category" if len(grid.steps) < 40 else "linear"),
        yaxis={"autorange": "reversed", "automargin": True},
        height=min(MAX_HEATMAP_HEIGHT, max(220, 80 + 26 * len(grid.ranks))),
        margin={"l": 80, "r": 20, "t": 30, "b": 50})}


def rank_breakdown_figure(rows: Sequence[RankStats]) -> Figure | None:
    """Per rank, mean per step: its own work and its wait for the others (left bar), and its
    communication, split into the part compute hides and the exposed part (right bar)."""
    if len(rows) < 2:
        return None
    xs = [f"rank {r.rank}" for r in rows]

    def col(key: str) -> list[float]:
        return [float(getattr(r, key) or 0.0) for r in rows]

    wait, busy = col("wait_ms_per_step"), col("busy_ms_per_step")
    comm, exposed = col("comm_ms_per_step"), col("exposed_comm_ms_per_step")
    stacks = (
        ("own work", busy, "step", COLORS["compute"]),
        ("waiting for other ranks", wait, "step", COLORS["sync"]),
        ("communication hidden by compute", [max(0.0, c - e) for c, e in zip(comm, exposed, strict=True)],
         "comm", "#FFBF79"),
        ("communication exposed", exposed, "comm", COLORS["communication"]),
    )
    data = [{"type": "bar", "name": name, "x": xs, "y": values, "offsetgroup": group,
             "legendgroup": group, "marker": {"color": color},
             "hovertemplate": f"{name}: %{{y:.3f}} ms<extra>%{{x}}</extra>"}
            for name, values, group, color in stacks if any(values) or group == "step"]
    return {"data": data, "layout": _layout(
        barmode="relative", xaxis=_axis("rank (left bar: the step, right bar: communication)",
                                        type="category"),
        yaxis=_axis("ms per step"), height=340)}


def collective_timeline_figure(timeline: CollectiveTimeline) -> Figure:
    """Every rank's collectives on one time axis; the darker start of a bar is the wait."""
    kinds = sorted({b.kind for b in timeline.bars})
    lanes = [f"rank {r}" for r in timeline.ranks]
    data: list[dict[str, Any]] = []
    for n, kind in enumerate(kinds):
        bars = [b for b in timeline.bars if b.kind == kind]
        data.append({
            "type": "bar", "orientation": "h", "name": label(kind, 40),
            "y": [f"rank {b.rank}" for b in bars], "base": [b.start_ms for b in bars],
            "x": [max(b.dur_ms, 1e-4) for b in bars], "width": 0.6,
            "marker": {"color": _KIND_COLORS[n % len(_KIND_COLORS)], "line": {"width": 0}},
            "hovertext": [f"{label(b.name, 80)}<br>rank {b.rank}, step {b.step}, call {b.seq}<br>"
                          f"{b.dur_ms:.3f} ms, of which {b.wait_ms:.3f} ms waiting"
                          for b in bars], "hoverinfo": "text"})
    waits = [b for b in timeline.bars if b.wait_ms > 0]
    if waits:
        data.append({
            "type": "bar", "orientation": "h", "name": "waiting for other ranks",
            "y": [f"rank {b.rank}" for b in waits], "base": [b.start_ms for b in waits],
            "x": [b.wait_ms for b in waits], "width": 0.3,
            "marker": {"color": COLORS["sync"], "line": {"width": 0}},
            "hovertext": [f"rank {b.rank} waited {b.wait_ms:.3f} ms (step {b.step}, call {b.seq})"
                          for b in waits], "hoverinfo": "text"})
    shapes = []
    for n, rank in enumerate(timeline.ranks):
        at = len(lanes) - 1 - n  # the lanes run top to bottom: category positions are reversed
        for start in timeline.step_starts.get(rank, ()):
            shapes.append({"type": "line", "x0": start, "x1": start, "yref": "y",
                           "y0": at - 0.45, "y1": at + 0.45,
                           "line": {"color": "#333", "width": 1, "dash": "dot"}})
    return {"data": data, "layout": _layout(
        barmode="overlay", height=max(220, 90 + 40 * len(lanes)),
        margin={"l": 80, "r": 20, "t": 40, "b": 50},
        xaxis=_axis(f"ms from the start of step {timeline.steps[0]}"),
        yaxis={"categoryorder": "array", "categoryarray": lanes[::-1], "automargin": True},
        shapes=shapes[:400])}


# ---------------------------------------------------------------------------- comparison
def compare_steps_figure(label_a: str, steps_a: Sequence[float], label_b: str,
                         steps_b: Sequence[float]) -> Figure | None:
    if not steps_a and not steps_b:
        return None
    data = [{"type": "box", "name": label(name, 40), "y": list(values), "boxpoints": "all",
             "jitter": 0.4, "pointpos": 0, "marker": {"color": color},
             "hovertemplate": "%{y:.3f} ms<extra></extra>"}
            for name, values, color in ((label_a, steps_a, "#4C78A8"), (label_b, steps_b, "#F58518"))
            if values]
    return {"data": data, "layout": _layout(yaxis=_axis("step time (ms)"), showlegend=False,
                                            height=320)}


def compare_breakdown_figure(rows: Sequence[Mapping[str, Any]], label_a: str,
                             label_b: str) -> Figure | None:
    if not rows:
        return None
    cats = [label(r["category"]) for r in rows]
    data = [{"type": "bar", "name": label(name, 40), "x": cats, "y": [r[key] for r in rows],
             "marker": {"color": color}, "hovertemplate": "%{y:.3f} ms<extra></extra>"}
            for name, key, color in ((label_a, "a_ms", "#4C78A8"), (label_b, "b_ms", "#F58518"))]
    return {"data": data, "layout": _layout(barmode="group", yaxis=_axis("ms per step"),
                                            height=320)}
