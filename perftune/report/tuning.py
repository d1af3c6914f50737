"""The tuner's page (tuning.html) and its section in report.html, from tuning.json's Struct.

Both are rendered by perftune.report.html from the templates in reports/ (tuning.html.j2, the
`tuning_section` macro), so they share the report's escaping, CSS and offline plotly. This
module holds what they show: the figures and the table rows. The figures:

- throughput against peak memory: every configuration, the memory budget line, the Pareto
  front (nothing else is both faster and smaller), the best one marked;
- parallel coordinates: each measured configuration's knob values and throughput;
- the search: each trial's throughput in order, and the best so far.

Every string that came from a script or a trial is HTML-escaped inside the figures too: plotly
renders a subset of HTML in its labels.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from perftune.documents import TuneConfig, TuneTrial, TuningDocument
from perftune.tune.render import compile_lines, knob_value, summary_lines, values_text

COLOURS = {
    "feasible": "#1f77b4",
    "over-budget": "#ff7f0e",
    "accuracy": "#d62728",
    "best": "#2ca02c",
}
MIB = 2**20


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _values_label(values: Mapping[str, Any]) -> str:
    return "<br>".join(f"{_text(k)} = {_text(v)}" for k, v in values.items())


def _measured(trial: TuneTrial, name: str) -> Any:
    """A measured field of a trial; None while the trial runs (the field is absent then)."""
    value = getattr(trial, name)
    return None if value is msgspec.UNSET else value


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (memory, throughput) points no other point beats on both, by increasing memory."""
    front: list[tuple[float, float]] = []
    for memory, throughput in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or throughput > front[-1][1]:
            front.append((memory, throughput))
    return front


# ---------------------------------------------------------------------------- figures
def tuning_figures(tuning: TuningDocument) -> list[Any]:
    """The figures of a tuning run (plotly Figure objects)."""
    return [_memory_figure(tuning), _parallel_figure(tuning), _progress_figure(tuning)]


def figure_dicts(tuning: TuningDocument) -> list[dict[str, Any]]:
    """The figures as the plain dicts the pages draw from."""
    return [json.loads(fig.to_json()) for fig in tuning_figures(tuning)]


def _memory_figure(tuning: TuningDocument) -> Any:
    import plotly.graph_objects as go

    unit = tuning.objective.unit
    best = tuning.best.values if tuning.best is not None else None
    figure = go.Figure()
    points: list[tuple[float, float]] = []
    for verdict in ("feasible", "over-budget", "accuracy"):
        rows = [c for c in tuning.configs if c.verdict == verdict
                and c.throughput is not None and c.peak_memory_bytes is not None]
        if not rows:
            continue
        if verdict == "feasible":
            points = [(_mib(c), c.throughput or 0.0) for c in rows if c.in_space]
        figure.add_trace(
            go.Scatter(
                x=[_mib(c) for c in rows],
                y=[c.throughput for c in rows],
                mode="markers",
                name=_text(verdict),
                marker={"color": COLOURS[verdict], "size": 9},
                text=[_values_label(c.values) for c in rows],
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
        chosen = next((c for c in tuning.configs if c.values == best), None)
        if chosen is not None and chosen.peak_memory_bytes is not None:
            figure.add_trace(
                go.Scatter(
                    x=[_mib(chosen)],
                    y=[chosen.throughput],
                    mode="markers",
                    name="best",
                    marker={"color": COLOURS["best"], "size": 16, "symbol": "star"},
                    text=[_values_label(best)],
                    hovertemplate="best<br>%{text}<extra></extra>",
                )
            )
    budget = tuning.constraints.memory_budget_bytes
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


def _mib(config: TuneConfig) -> float:
    return (config.peak_memory_bytes or 0) / MIB


def _memory_kind(tuning: TuningDocument) -> str | None:
    for trial in tuning.trials:
        kind = _measured(trial, "memory_kind")
        if kind:
            return str(kind)
    return None


def _parallel_figure(tuning: TuningDocument) -> Any:
    import plotly.graph_objects as go

    rows = [c for c in tuning.configs if c.throughput is not None and c.verdict == "feasible"]
    knobs = tuning.space.knobs
    dimensions = []
    for knob in knobs:
        choices = list(knob.choices) + [v for v in knob.extra if v not in knob.choices]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in choices)
        if numeric:
            choices = sorted(choices)
        labels = [knob_value(v) for v in choices]
        dimensions.append(
            {
                "label": _text(knob.name),
                "values": [choices.index(c.values.get(knob.name)) if c.values.get(knob.name) in choices else 0
                           for c in rows],
                "tickvals": list(range(len(choices))),
                "ticktext": [_text(label) for label in labels],
                "range": [0, max(0, len(choices) - 1)],
            }
        )
    throughput = [c.throughput for c in rows]
    dimensions.append({"label": _text(tuning.objective.unit), "values": throughput})
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


def _progress_figure(tuning: TuningDocument) -> Any:
    import plotly.graph_objects as go

    unit = tuning.objective.unit
    trials = [t for t in tuning.trials if t.status not in ("running", "interrupted")]
    order = sorted(trials, key=lambda t: t.number)
    measured = [t for t in order if _measured(t, "throughput") is not None]
    best_so_far: list[float | None] = []
    best: float | None = None
    for trial in order:
        throughput = _measured(trial, "throughput")
        if trial.status == "ok" and throughput is not None:
            best = throughput if best is None else max(best, throughput)
        best_so_far.append(best)
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=[t.number for t in measured],
            y=[_measured(t, "throughput") for t in measured],
            mode="markers",
            name="trial",
            marker={"color": [COLOURS.get(t.status, COLOURS["feasible"]) if t.status != "ok"
                              else COLOURS["feasible"] for t in measured]},
            text=[f"{_text(t.role)}: {_text(t.why)}<br>{_values_label(t.values)}" for t in measured],
            hovertemplate="trial %{x}<br>%{text}<br>%{y:.4g}<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[t.number for t in order],
            y=best_so_far,
            mode="lines",
            line={"shape": "hv", "color": COLOURS["best"]},
            name="best so far",
        )
    )
    failed = [t for t in order if _measured(t, "throughput") is None]
    if failed:
        figure.add_trace(
            go.Scatter(
                x=[t.number for t in failed],
                y=[0] * len(failed),
                mode="markers",
                name="failed",
                marker={"color": "#7f7f7f", "symbol": "x", "size": 9},
                text=[f"{_text(t.status)}: {_text(_measured(t, 'reason'))}" for t in failed],
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


# ---------------------------------------------------------------------------- the page
@dataclass(frozen=True)
class TrialRow:
    """One trial as the pages' trials table shows it (measured fields None while running)."""

    number: int
    values: str
    role: str
    why: str
    status: str
    throughput: float | None
    step_ms: float | None
    spread: float | None
    peak_memory_bytes: int | None
    loss_deviation: float | None
    wall_s: float | None
    reason: str
    compile_s: float | None = None


def trial_rows(tuning: TuningDocument, limit: int = 200) -> list[TrialRow]:
    return [TrialRow(number=t.number, values=values_text(t.values), role=t.role, why=t.why,
                     status=t.status, throughput=_measured(t, "throughput"),
                     step_ms=_measured(t, "step_ms"), spread=_measured(t, "spread"),
                     peak_memory_bytes=_measured(t, "peak_memory_bytes"),
                     loss_deviation=t.loss_deviation, wall_s=_measured(t, "wall_s"),
                     reason=_measured(t, "reason") or "", compile_s=_measured(t, "compile_s"))
            for t in tuning.trials[:limit]]


def tuning_context(tuning: TuningDocument) -> dict[str, Any]:
    """What the `tuning_section` macro reads (figures are drawn from `figure_ids`)."""
    best_values = tuning.best.values if tuning.best is not None else None
    return {
        "t": tuning,
        "summary_lines": summary_lines(tuning)[:3],
        # torch.compile: compile time apart from the step time, and whether it pays back.
        "compiled": any(c.compile_s is not None for c in tuning.configs),
        "compile_lines": compile_lines(tuning),
        "knobs": [k.name for k in tuning.space.knobs],
        "best_values": best_values,
        "trial_rows": trial_rows(tuning),
    }
