"""tuning.json: every trial, every configuration's verdict, the best one and how to apply it."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from perftune.fsutil import write_json_atomic
from perftune.redact import redact_argv, redact_url
from perftune.rundir import TUNING
from perftune.tune.apply import apply_instructions
from perftune.tune.constraints import GuardResult
from perftune.tune.history import (
    ConfigResult,
    History,
    TrialRecord,
    reliably_faster,
    summarise_spread,
)
from perftune.tune.tuner import TuneRun

SCHEMA_VERSION = 1
TUNING_FILE = TUNING


def _guard_json(result: GuardResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "status": result.status,
        "deviation": result.deviation,
        "step": result.step,
        "tolerance": result.tolerance,
        "baseline_trial": result.baseline_trial,
        "reason": result.reason,
    }


def trial_json(record: TrialRecord, history: History) -> dict[str, Any]:
    outcome = record.outcome
    guard = history.trial_guard(record)
    data: dict[str, Any] = {
        "number": record.number,
        "values": record.values,
        "role": record.role,
        "why": record.why,
        "worker": record.worker,
        "status": record.status,
    }
    if outcome is not None:
        body = outcome.to_json()
        body.pop("status", None)
        body.pop("declared_knobs", None)
        data.update(body)
    data["loss_deviation"] = guard.deviation if guard is not None else None
    data["accuracy"] = _guard_json(guard)
    if guard is not None and guard.status == "rejected" and data["status"] == "ok":
        data["status"] = "accuracy"
        data["reason"] = guard.reason
    return data


def config_json(config: ConfigResult, rank: int | None) -> dict[str, Any]:
    measurements = config.measurements
    return {
        "rank": rank,
        "values": config.values,
        "verdict": config.verdict,
        "in_space": config.in_space,
        "throughput": config.throughput,
        "throughputs": list(config.throughputs),
        "repeat_spread": summarise_spread(config.throughputs),
        "step_ms": statistics.median([m.step_ms for m in measurements if m.step_ms is not None])
        if measurements
        else None,
        "peak_memory_bytes": config.peak_memory_bytes,
        "trials": [t.number for t in config.trials],
        "loss_deviation": config.guard.deviation if config.guard is not None else None,
        "accuracy": _guard_json(config.guard),
    }


def _best_json(config: ConfigResult, unit: str | None, default: ConfigResult | None) -> dict[str, Any]:
    first_ok = next(t for t in config.trials if t.outcome is not None and t.outcome.measured)
    assert first_ok.outcome is not None
    data: dict[str, Any] = {
        "trial": first_ok.number,
        "values": config.values,
        "throughput": config.throughput,
        "unit": unit,
        "step_ms": first_ok.outcome.step_ms,
        "spread": first_ok.outcome.spread,
        "peak_memory_bytes": config.peak_memory_bytes,
        "measurements": len(config.measurements),
        "loss_deviation": config.guard.deviation if config.guard is not None else None,
        "accuracy": _guard_json(config.guard),
        "speedup_vs_default": None,
    }
    if default is not None and default.throughput and config.throughput:
        data["speedup_vs_default"] = config.throughput / default.throughput
    return data


def _runner_up(best: ConfigResult, second: ConfigResult | None) -> dict[str, Any] | None:
    """How close the runner-up came, and whether the gap is larger than the noise."""
    if second is None or not best.throughput or second.throughput is None:
        return None
    gap = (best.throughput - second.throughput) / best.throughput
    # Noise: how far repeated figures of one configuration spread; without repeats, a rough
    # standard error of each trial's median (its interquartile range over sqrt(steps)).
    repeat_spreads = [summarise_spread(c.throughputs) for c in (best, second)]
    noise_figures = [n for n in repeat_spreads if n is not None]
    if not noise_figures:
        noise_figures = [
            m.spread / max(1, m.measured_steps) ** 0.5
            for c in (best, second)
            for m in c.measurements
            if m.spread is not None
        ]
    noise = max(noise_figures, default=None)
    return {
        "values": second.values,
        "throughput": second.throughput,
        "gap": gap,
        "noise": noise,
        # Distinct when the repeats say the best is reliably faster (the gate's statistics).
        "distinct": reliably_faster(best, second),
        "measurements": len(second.measurements),
    }


def build_tuning(run: TuneRun) -> dict[str, Any]:
    history = run.history
    settings = run.settings
    ranking = history.ranking()
    ranked = {c.key: i + 1 for i, c in enumerate(ranking)}
    configs = sorted(
        history.configs.values(),
        key=lambda c: (ranked.get(c.key, len(ranked) + 1), c.first_trial),
    )
    units = [t.outcome.unit for t in history.done if t.outcome is not None and t.outcome.unit]
    unit = units[0] if units else run.objective.unit
    default = history.result(run.space.default())
    best = ranking[0] if ranking else None
    best_trial = (
        next(t for t in best.trials if t.outcome is not None and t.outcome.measured) if best else None
    )
    overheads = [t.outcome.overhead_s for t in history.done if t.outcome and t.outcome.overhead_s is not None]
    return {
        "schema_version": SCHEMA_VERSION,
        "script": settings.script.to_json(),
        "command": redact_argv(sys.argv),
        "run_dir": str(settings.run_dir),
        "study": {
            "name": settings.study_name,
            "storage": _storage_label(settings.storage, settings.run_dir),
        },
        "strategy": run.strategy,
        "stop_reason": run.stop_reason,
        "interrupted": run.interrupted,
        "elapsed_s": run.elapsed_s,
        "objective": run.objective.to_json() | {"unit": unit},
        "measurement": run.measurement.to_json(),
        "constraints": {
            "memory_budget_bytes": run.measurement.memory_budget,
            "accuracy_tolerance": history.tolerance,
        },
        "space": run.space.to_json() | {"size": run.space.size},
        "trials": [trial_json(r, history) for r in history.records if r.outcome is not None or r.running],
        "configs": [config_json(c, ranked.get(c.key)) for c in configs],
        "best": _best_json(best, unit, default) if best else None,
        "runner_up": _runner_up(best, ranking[1] if len(ranking) > 1 else None) if best else None,
        "default": {
            "values": run.space.default(),
            "throughput": default.throughput if default is not None else None,
            "verdict": default.verdict if default is not None else None,
        },
        "apply": apply_instructions(
            run.space,
            best.values,
            settings.script,
            best_trial.outcome.injected if best_trial and best_trial.outcome else {},
        )
        if best
        else None,
        "stats": {
            "trials": history.counted(),
            "configs": len(history.configs),
            "failed": sum(1 for t in history.done if t.outcome and not t.outcome.measured),
            "overhead_s_median": statistics.median(overheads) if overheads else None,
        },
        "notes": list(run.notes),
    }


def _storage_label(storage: str | None, run_dir: Path) -> str:
    from perftune.tune.study import JOURNAL

    if storage is None:
        return f"journal:{run_dir / JOURNAL}"
    return redact_url(storage)


def write_tuning(tuning: dict[str, Any], run_dir: Path) -> Path:
    return write_json_atomic(run_dir / TUNING_FILE, tuning, indent=1)
