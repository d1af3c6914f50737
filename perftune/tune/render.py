"""tuning.json for people: the terminal table and tuning.html (self-contained, opens offline)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from perftune.rundir import TUNING_HTML
from perftune.tune.units import format_bytes, format_duration

HTML_FILE = TUNING_HTML
STATUS_STYLE = {
    "ok": "green",
    "over-budget": "yellow",
    "accuracy": "red",
    "oom": "red",
    "crashed": "red",
    "timeout": "red",
    "nan": "red",
    "no-steps": "red",
    "running": "blue",
}


def _value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _values(values: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={_value(v)}" for k, v in values.items())


def _percent(value: float | None) -> str:
    if value is None:
        return "-"
    if value != 0 and abs(value) < 0.001:
        return f"{value * 100:.2g}%"  # a loss deviation of 8e-5 is not "0.0%"
    return f"{value * 100:.1f}%"


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value >= 100 else f"{value:.3g}"


def summary_lines(tuning: Mapping[str, Any]) -> list[str]:
    """The verdict in a few plain lines (best, runner-up, how to apply)."""
    lines: list[str] = []
    best = tuning.get("best")
    unit = (tuning.get("objective") or {}).get("unit", "samples/s")
    stats = tuning.get("stats") or {}
    lines.append(
        f"{stats.get('trials', 0)} trials ({stats.get('failed', 0)} failed) over "
        f"{stats.get('configs', 0)} of {tuning['space']['size']} configurations, strategy "
        f"{tuning.get('strategy')}, in {format_duration(float(tuning.get('elapsed_s') or 0))}; "
        f"{tuning.get('stop_reason')}"
    )
    if best is None:
        lines.append("no configuration ran successfully within the constraints")
        return lines
    speedup = best.get("speedup_vs_default")
    lines.append(
        f"best: {_values(best['values'])} — {_figure(best['throughput'])} {unit}"
        + (f", {speedup:.2f}x the defaults" if speedup else "")
        + f", peak memory {format_bytes(best.get('peak_memory_bytes'))}"
        + (
            f", loss within {_percent(best['loss_deviation'])} of fp32"
            if best.get("loss_deviation") is not None
            else ""
        )
    )
    runner_up = tuning.get("runner_up")
    if runner_up is not None:
        verdict = (
            "a real difference (its repeats put the best ahead at 95% confidence)"
            if runner_up.get("distinct")
            else f"within noise ({_percent(runner_up.get('noise'))})"
            if runner_up.get("noise") is not None and runner_up["gap"] <= runner_up["noise"]
            else "not separated by repeats"
        )
        lines.append(
            f"runner-up: {_values(runner_up['values'])} — {_percent(runner_up['gap'])} slower; {verdict}"
        )
    apply = tuning.get("apply") or {}
    if apply.get("command"):
        lines.append(f"run it: {apply['command']}")
    for change in apply.get("code", []):
        lines.append(f"code change ({change['knob']}): {change['title']}")
        lines.extend("    " + line for line in change["snippet"].splitlines())
    return lines


def print_results(tuning: Mapping[str, Any], console: Any, limit: int = 20) -> None:
    """The results table (fastest configurations first, then the failures) and the verdict."""
    from rich.markup import escape
    from rich.table import Table

    unit = (tuning.get("objective") or {}).get("unit", "samples/s")
    knobs = [k["name"] for k in tuning["space"]["knobs"]]
    table = Table(title="perftune tune: configurations, fastest first", show_lines=False)
    table.add_column("#", justify="right")
    for name in knobs:
        table.add_column(escape(name))
    table.add_column(escape(unit), justify="right", no_wrap=True)
    table.add_column("ms/step", justify="right", no_wrap=True)
    table.add_column("peak mem", justify="right", no_wrap=True)
    table.add_column("loss Δ", justify="right", no_wrap=True)
    table.add_column("runs", justify="right")
    table.add_column("verdict")
    best_values = (tuning.get("best") or {}).get("values")
    for config in tuning.get("configs", [])[:limit]:
        verdict = config["verdict"]
        style = STATUS_STYLE.get(verdict if verdict != "feasible" else "ok", "")
        marker = "best" if config["values"] == best_values else verdict
        reason = ""
        if verdict != "feasible":
            reason = next(
                (
                    t.get("reason") or ""
                    for t in tuning.get("trials", [])
                    if t["number"] in config["trials"] and t.get("reason")
                ),
                "",
            )
        spread = config.get("repeat_spread")
        table.add_row(
            str(config["rank"] or "-"),
            *[escape(_value(config["values"].get(name, "-"))) for name in knobs],
            _figure(config.get("throughput")) + (f" ±{spread * 50:.0f}%" if spread else ""),
            _figure(config.get("step_ms")),
            format_bytes(config.get("peak_memory_bytes")),
            _percent(config.get("loss_deviation")),
            str(len(config["trials"])),
            f"[{style}]{escape(marker)}[/]" + (f" {escape(reason[:70])}" if reason else ""),
        )
    if len(tuning.get("configs", [])) > limit:
        table.caption = f"{len(tuning['configs']) - limit} more configurations in tuning.json"
    console.print(table)
    for line in summary_lines(tuning):
        console.print(escape(line), highlight=False)


# --- HTML ----------------------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>perftune tune: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; }}
th {{ background: #f4f4f4; }}
td.text {{ text-align: left; }}
pre {{ background: #f7f7f7; padding: 0.8em; overflow-x: auto; }}
.best {{ background: #e8f5e9; }}
.bad {{ color: #b71c1c; }}
</style>
</head>
<body>
<h1>perftune tune: {title}</h1>
<p>{summary}</p>
{apply}
{figures}
<h2>Configurations</h2>
{table}
<h2>Trials</h2>
{trials}
</body>
</html>
"""


def _cell(value: Any, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{html.escape(str(value))}</td>"


def _configs_table(tuning: Mapping[str, Any]) -> str:
    unit = (tuning.get("objective") or {}).get("unit", "samples/s")
    knobs = [k["name"] for k in tuning["space"]["knobs"]]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["rank", *knobs, unit, "step ms", "repeat spread", "peak memory", "loss deviation", "trials", "verdict"])
    rows = []
    best_values = (tuning.get("best") or {}).get("values")
    for config in tuning.get("configs", []):
        cls = "best" if config["values"] == best_values else ""
        cells = [
            _cell(config["rank"] or "-"),
            *[_cell(_value(config["values"].get(name, "-")), "text") for name in knobs],
            _cell(_figure(config.get("throughput"))),
            _cell(_figure(config.get("step_ms"))),
            _cell(_percent(config.get("repeat_spread"))),
            _cell(format_bytes(config.get("peak_memory_bytes"))),
            _cell(_percent(config.get("loss_deviation"))),
            _cell(", ".join(str(t) for t in config["trials"])),
            _cell(config["verdict"], "text" if config["verdict"] == "feasible" else "text bad"),
        ]
        rows.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _trials_table(tuning: Mapping[str, Any]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ["#", "values", "role", "why", "status", "throughput", "step ms", "spread", "peak memory", "loss deviation", "wall s", "reason"])
    rows = []
    for trial in tuning.get("trials", []):
        rows.append(
            "<tr>"
            + _cell(trial["number"])
            + _cell(_values(trial["values"]), "text")
            + _cell(trial.get("role", ""), "text")
            + _cell(trial.get("why", ""), "text")
            + _cell(trial.get("status", ""), "text" if trial.get("status") == "ok" else "text bad")
            + _cell(_figure(trial.get("throughput")))
            + _cell(_figure(trial.get("step_ms")))
            + _cell(_percent(trial.get("spread")))
            + _cell(format_bytes(trial.get("peak_memory_bytes")))
            + _cell(_percent(trial.get("loss_deviation")))
            + _cell(_figure(trial.get("wall_s")))
            + _cell(trial.get("reason") or "", "text")
            + "</tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _apply_html(tuning: Mapping[str, Any]) -> str:
    apply = tuning.get("apply")
    if not apply:
        return ""
    parts = ["<h2>How to apply the best configuration</h2>"]
    if apply.get("command"):
        parts.append(f"<pre>{html.escape(apply['command'])}</pre>")
    for change in apply.get("code", []):
        parts.append(f"<p>{html.escape(change['title'])}</p><pre>{html.escape(change['snippet'])}</pre>")
    return "\n".join(parts)


def render_html(tuning: Mapping[str, Any]) -> str:
    import plotly.io as pio

    from perftune.tune.figures import tuning_figures

    figures = tuning_figures(tuning)
    # plotly.js once, embedded (the page opens offline); the other figures reuse it.
    parts = [
        pio.to_html(figure, include_plotlyjs=(index == 0), full_html=False)
        for index, figure in enumerate(figures)
    ]
    script = (tuning.get("script") or {}).get("path") or (tuning.get("script") or {}).get("module") or "script"
    return _PAGE.format(
        title=html.escape(str(script)),
        summary="<br>".join(html.escape(line) for line in summary_lines(tuning)[:3]),
        apply=_apply_html(tuning),
        figures="\n".join(parts),
        table=_configs_table(tuning),
        trials=_trials_table(tuning),
    )


def write_html(tuning: Mapping[str, Any], run_dir: Path) -> Path:
    path = run_dir / HTML_FILE
    path.write_text(render_html(tuning), encoding="utf-8")
    return path
