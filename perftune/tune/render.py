"""tuning.json for the terminal: the results table and the verdict in a few lines.

The HTML page (tuning.html) is rendered by perftune.report.html from the templates in reports/.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from perftune import units
from perftune.documents import TuneTrial, TuningDocument

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
# The terminal table marks a missing figure with an ASCII dash.
NONE = "-"


def knob_value(value: Any) -> str:
    """A knob's value as the command line writes it (true, not True)."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


def values_text(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={knob_value(v)}" for k, v in values.items())


def _reason(trial: TuneTrial) -> str:
    return "" if trial.reason is msgspec.UNSET else trial.reason or ""


def summary_lines(tuning: TuningDocument) -> list[str]:
    """The verdict in a few plain lines (best, runner-up, how to apply)."""
    lines: list[str] = []
    best = tuning.best
    unit = tuning.objective.unit
    stats = tuning.stats
    lines.append(
        f"{stats.trials} trials ({stats.failed} failed) over "
        f"{stats.configs} of {tuning.space.size} configurations, strategy "
        f"{tuning.strategy}, in {units.duration(float(tuning.elapsed_s or 0))}; "
        f"{tuning.stop_reason}"
    )
    if best is None:
        lines.append("no configuration ran successfully within the constraints")
        return lines
    speedup = best.speedup_vs_default
    default = tuning.default
    winner = best.reliably_faster_than_default or default is None or default.throughput is None
    figures = (
        f"{units.rate(best.throughput, NONE)} {unit}"
        + (f", {speedup:.2f}x your defaults" if speedup and not best.is_default else "")
        + f", peak memory {units.size(best.peak_memory_bytes, NONE)}"
        + (
            f", loss within {units.percent(best.loss_deviation, missing=NONE)} of "
            + _guard_baseline(best.values)
            if best.loss_deviation is not None
            else ""
        )
    )
    if best.is_default:
        lines.append(f"your defaults are already the fastest configuration measured: "
                     f"{values_text(best.values)} — {figures}")
        winner = False
    elif not winner:
        noise = _noise(tuning)
        lines.append(
            "no configuration is reliably faster than your defaults on this machine"
            + (f" (noise ±{noise * 50:.0f} %)" if noise is not None else "")
            + f"; the fastest measured was {values_text(best.values)} — {figures}, not separated "
            "from the defaults by repeated measurements"
        )
    else:
        lines.append(f"best: {values_text(best.values)} — {figures}; reliably faster than "
                     f"your defaults ({values_text(default.values) if default else NONE})")
    runner_up = tuning.runner_up
    if runner_up is not None:
        verdict = (
            "a real difference (its repeats put the best ahead at 95% confidence)"
            if runner_up.distinct
            else f"within noise ({units.percent(runner_up.noise, missing=NONE)})"
            if runner_up.noise is not None and runner_up.gap <= runner_up.noise
            else "not separated by repeats"
        )
        lines.append(
            f"runner-up: {values_text(runner_up.values)} — "
            f"{units.percent(runner_up.gap, missing=NONE)} slower; {verdict}"
        )
    lines.extend(compile_lines(tuning))
    if tuning.unmeasured:
        # One line, the reason once: which parts of the space were left out, and why.
        parts = [f"{gap.total - gap.measured} of the {gap.total} configurations with "
                 f"{gap.knob}={knob_value(gap.value)}" for gap in tuning.unmeasured]
        lines.append(f"not measured: {'; '.join(parts)} ({tuning.stop_reason})")
    origins = [f"{k.name}={knob_value(k.default)} ({k.default_from or 'not seen: the search starting value'})"
               for k in tuning.space.knobs]
    if origins:
        lines.append("your defaults (the baseline): " + ", ".join(origins))
    apply = tuning.apply
    if not winner:
        return lines
    if apply is not None and apply.command:
        # Every winning value: the command carries flags and declared knobs; the rest (batch
        # size, precision injected by perftune) needs the code changes listed below it.
        in_command = set(apply.knobs) | {k for k, v in apply.values.items()
                                         if any(str(v) in f for f in apply.flags)}
        rest = {k: v for k, v in apply.values.items() if k not in in_command}
        lines.append(f"run it: {apply.command}"
                     + (f"  with {values_text(rest)} (code changes below)" if rest else ""))
    for change in apply.code if apply is not None else []:
        lines.append(f"code change ({change.knob}): {change.title}")
        lines.extend("    " + line for line in change.snippet.splitlines())
    return lines


def _guard_baseline(values: dict[str, Any]) -> str:
    """What the accuracy guard compared with: the fp32, uncheckpointed, eager run."""
    parts = [word for knob, word in (("precision", "fp32"), ("compile", "eager")) if knob in values]
    return " ".join(parts) + " run" if parts else "the baseline run"


def compile_lines(tuning: TuningDocument) -> list[str]:
    """Per compiled configuration: its compile time, what its faster steps pay back, and
    whether the run is long enough for that (the rule the ranking applied)."""
    lines: list[str] = []
    run_steps = tuning.objective.run_steps
    for config in tuning.configs:
        if config.compile_s is None:
            continue
        text = (f"{values_text(config.values)}: compiling took "
                f"{units.duration(config.compile_s)} (not in its ms/step)")
        eager = {**config.values, "compile": "none"}
        measured_eager = any(c.values == eager and c.step_ms is not None for c in tuning.configs)
        if config.break_even_steps is None and measured_eager:
            text += "; its steps were not faster than eager, so it never pays back"
        elif config.break_even_steps is None and "compile" not in config.values:
            text += " (the script compiles by itself)"
        elif config.break_even_steps is None:
            text += "; compile=none was not measured with the same other values to compare"
        else:
            text += f"; its faster steps pay that back after {config.break_even_steps:,.0f} steps"
            if run_steps is not None:
                pays = config.break_even_steps < run_steps
                text += (f", {'within' if pays else 'beyond'} the run's {run_steps:,} steps "
                         f"(--run-steps): {'worth' if pays else 'not worth'} compiling")
        if run_steps is None:
            text += " (give --run-steps N to charge compile time to a run of N steps)"
        lines.append(text)
    return lines


def _noise(tuning: TuningDocument) -> float | None:
    """How far repeated figures spread ((max − min) / median): of the defaults, else the best's."""
    figures = [f for f in (tuning.default.noise if tuning.default else None,
                           tuning.best.spread if tuning.best else None,
                           tuning.runner_up.noise if tuning.runner_up else None) if f is not None]
    return max(figures) if figures else None


def print_results(tuning: TuningDocument, console: Any, limit: int = 20) -> None:
    """The results table (fastest configurations first, then the failures) and the verdict."""
    from rich.markup import escape
    from rich.table import Table

    unit = tuning.objective.unit
    knobs = [k.name for k in tuning.space.knobs]
    table = Table(title="perftune tune: configurations, fastest first", show_lines=False)
    table.add_column("#", justify="right")
    for name in knobs:
        table.add_column(escape(name))
    table.add_column(escape(unit), justify="right", no_wrap=True)
    table.add_column("ms/step", justify="right", no_wrap=True)
    compiled = any(c.compile_s is not None for c in tuning.configs)
    if compiled:
        # Compile time is not in ms/step (the steady state): it has a column of its own.
        table.add_column("compile", justify="right", no_wrap=True)
    table.add_column("peak mem", justify="right", no_wrap=True)
    table.add_column("loss Δ", justify="right", no_wrap=True)
    table.add_column("runs", justify="right")
    table.add_column("verdict")
    best_values = tuning.best.values if tuning.best is not None else None
    for config in tuning.configs[:limit]:
        verdict = config.verdict
        style = STATUS_STYLE.get(verdict if verdict != "feasible" else "ok", "")
        marker = "best" if config.values == best_values else verdict
        if config.baseline:
            marker += " · your defaults"
        reason = ""
        if verdict != "feasible":
            reason = next((_reason(t) for t in tuning.trials
                           if t.number in config.trials and _reason(t)), "")
        spread = config.repeat_spread
        table.add_row(
            str(config.rank or NONE),
            *[escape(knob_value(config.values.get(name, NONE))) for name in knobs],
            units.rate(config.throughput, NONE) + (f" ±{spread * 50:.0f}%" if spread else ""),
            units.rate(config.step_ms, NONE),
            *([units.duration(config.compile_s) if config.compile_s is not None else NONE]
              if compiled else []),
            units.size(config.peak_memory_bytes, NONE),
            units.percent(config.loss_deviation, missing=NONE),
            str(len(config.trials)),
            f"[{style}]{escape(marker)}[/]" + (" (reason below)" if reason else ""),
        )
    if len(tuning.configs) > limit:
        table.caption = f"{len(tuning.configs) - limit} more configurations in tuning.json"
    console.print(table)
    for trial in tuning.trials:
        if _reason(trial) and trial.status != "ok":
            # Whole: a cut-off error message is the one thing the user cannot act on.
            console.print(escape(f"trial {trial.number} ({values_text(trial.values)}) "
                                 f"{trial.status}: {_reason(trial)}"), highlight=False)
    for line in summary_lines(tuning):
        console.print(escape(line), highlight=False)
