"""Plotly figures of a tuning run, built from tuning.json alone (the report can embed them).

- throughput against peak memory: every configuration, the memory budget line, the Pareto
  front (nothing else is both faster and smaller), the best one marked;
- parallel coordinates: each measured configuration's knob values and throughput;
- the search: each trial's throughput in order, and the best so far.

Every string that came from a script or a trial is HTML-escaped: plotly renders a subset of
HTML in its labels.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

MIB = 2**20
COLOURS = {
    "feasible": "#1f77b4",
    "over-budget": "#ff7f0e",
    "accuracy": "#d62728",
    "best": "#2ca02c",
}


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _values_label(values: Mapping[str, Any]) -> str:
    return "<br>".join(f"{_text(k)} = {_text(v)}" for k, v in values.items())


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (memory, throughput) points no other point beats on both, by increasing memory."""
    front: list[tuple[float, float]] = []
    for memory, throughput in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or throughput > front[-1][1]:
            front.append((memory, throughput))
    return front


def tuning_figures(tuning: Mapping[str, Any]) -> list[Any]:
    """The figures of a tuning run (plotly Figure objects)."""
    return [_memory_figure(tuning), _parallel_figure(tuning), _progress_figure(tuning)]


def _unit(tuning: Mapping[str, Any]) -> str:
    return str((tuning.get("objective") or {}).get("unit") or "samples/s")


def _memory_figure(tuning: Mapping[str, Any]) -> Any:
    import plotly.graph_objects as go

    unit = _unit(tuning)
    best = (tuning.get("best") or {}).get("values")
    figure = go.Figure()
    points: list[tuple[float, float]] = []
    for verdict in ("feasible", "over-budget", "accuracy"):
        rows = [
            c
            for c in tuning.get("configs", [])
            if c.get("verdict") == verdict
            and c.get("throughput") is not None
            and c.get("peak_memory_bytes") is not None
        ]
        if not rows:
            continue
        if verdict == "feasible":
            points = [(c["peak_memory_bytes"] / MIB, c["throughput"]) for c in rows if c.get("in_space", True)]
        figure.add_trace(
            go.Scatter(
                x=[c["peak_memory_bytes"] / MIB for c in rows],
                y=[c["throughput"] for c in rows],
                mode="markers",
                name=_text(verdict),
                marker={"color": COLOURS[verdict], "size": 9},
                text=[_values_label(c["values"]) for c in rows],
                hovertemplate="%{text}<br>%{y:.4g} " + _text(unit) + "<br>%{x:.1f} MiB<extra></extra>",
            )
        )
    front = pareto_front(points)
    if len(front) > 1:
        figure.add_trace(
            go.Scatter(
                x=[p[0] for p in front],
                y=[p[1] for p in front],
                mode="lines",
                line={"shape": "hv", "dash": "dot", "color": "#555"},
                name="Pareto front",
                hoverinfo="skip",
            )
        )
    if best is not None:
        chosen = next((c for c in tuning.get("configs", []) if c.get("values") == best), None)
        if chosen is not None and chosen.get("peak_memory_bytes") is not None:
            figure.add_trace(
                go.Scatter(
                    x=[chosen["peak_memory_bytes"] / MIB],
                    y=[chosen["throughput"]],
                    mode="markers",
                    name="best",
                    marker={"color": COLOURS["best"], "size": 16, "symbol": "star"},
                    text=[_values_label(best)],
                    hovertemplate="best<br>%{text}<extra></extra>",
                )
            )
    budget = (tuning.get("constraints") or {}).get("memory_budget_bytes")
    if budget:
        figure.add_vline(
            x=budget / MIB,
            line={"color": "#d62728", "dash": "dash"},
            annotation_text=f"budget {budget / MIB:.0f} MiB",
        )
    memory_kind = "device allocator" if _memory_kind(tuning) == "cuda-allocator" else "process RSS"
    figure.update_layout(
        title="Throughput against peak memory",
        xaxis_title=f"peak memory (MiB, {memory_kind})",
        yaxis_title=_text(unit),
        template="plotly_white",
    )
    return figure


def _memory_kind(tuning: Mapping[str, Any]) -> str | None:
    for trial in tuning.get("trials", []):
        if trial.get("memory_kind"):
            return str(trial["memory_kind"])
    return None


def _parallel_figure(tuning: Mapping[str, Any]) -> Any:
    import plotly.graph_objects as go

    rows = [
        c
        for c in tuning.get("configs", [])
        if c.get("throughput") is not None and c.get("verdict") == "feasible"
    ]
    knobs = [k["name"] for k in (tuning.get("space") or {}).get("knobs", [])]
    dimensions = []
    for knob in (tuning.get("space") or {}).get("knobs", []):
        name = knob["name"]
        choices = list(knob.get("choices", [])) + [v for v in knob.get("extra", []) if v not in knob.get("choices", [])]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in choices)
        if numeric:
            choices = sorted(choices)
        labels = [json.dumps(v) if isinstance(v, bool) else str(v) for v in choices]
        dimensions.append(
            {
                "label": _text(name),
                "values": [choices.index(c["values"].get(name)) if c["values"].get(name) in choices else 0 for c in rows],
                "tickvals": list(range(len(choices))),
                "ticktext": [_text(label) for label in labels],
                "range": [0, max(0, len(choices) - 1)],
            }
        )
    throughput = [c["throughput"] for c in rows]
    dimensions.append({"label": _text(_unit(tuning)), "values": throughput})
    figure = go.Figure(
        go.Parcoords(
            line={"color": throughput, "colorscale": "Viridis", "showscale": True} if throughput else {},
            dimensions=dimensions,
        )
    )
    figure.update_layout(
        title=f"Knob values and throughput ({len(rows)} feasible configurations, {len(knobs)} knobs)",
        template="plotly_white",
    )
    return figure


def _progress_figure(tuning: Mapping[str, Any]) -> Any:
    import plotly.graph_objects as go

    unit = _unit(tuning)
    trials = [t for t in tuning.get("trials", []) if t.get("status") not in ("running", "interrupted")]
    order = sorted(trials, key=lambda t: t["number"])
    measured = [t for t in order if t.get("throughput") is not None]
    best_so_far: list[float | None] = []
    best: float | None = None
    for trial in order:
        if trial.get("status") == "ok" and trial.get("throughput") is not None:
            best = trial["throughput"] if best is None else max(best, trial["throughput"])
        best_so_far.append(best)
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=[t["number"] for t in measured],
            y=[t["throughput"] for t in measured],
            mode="markers",
            name="trial",
            marker={"color": [COLOURS.get(t.get("status"), COLOURS["feasible"]) if t.get("status") != "ok" else COLOURS["feasible"] for t in measured]},
            text=[f"{_text(t.get('role'))}: {_text(t.get('why'))}<br>{_values_label(t['values'])}" for t in measured],
            hovertemplate="trial %{x}<br>%{text}<br>%{y:.4g}<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[t["number"] for t in order],
            y=best_so_far,
            mode="lines",
            line={"shape": "hv", "color": COLOURS["best"]},
            name="best so far",
        )
    )
    failed = [t for t in order if t.get("throughput") is None]
    if failed:
        figure.add_trace(
            go.Scatter(
                x=[t["number"] for t in failed],
                y=[0] * len(failed),
                mode="markers",
                name="failed",
                marker={"color": "#7f7f7f", "symbol": "x", "size": 9},
                text=[f"{_text(t.get('status'))}: {_text(t.get('reason'))}" for t in failed],
                hovertemplate="trial %{x}<br>%{text}<extra></extra>",
            )
        )
    figure.update_layout(
        title="The search, trial by trial",
        xaxis_title="trial",
        yaxis_title=_text(unit),
        template="plotly_white",
    )
    return figure
