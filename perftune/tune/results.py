"""tuning.json: every trial, every configuration's verdict, the best one and how to apply it.

The document is a `perftune.documents.TuningDocument`, built here and nowhere else."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import msgspec

from perftune.capture.parent.knobs import COMPILE, COMPILE_NONE
from perftune.documents import (
    AccuracyGuard,
    CodeChange,
    TuneApply,
    TuneBest,
    TuneConfig,
    TuneConstraints,
    TuneDefault,
    TuneKnob,
    TuneMeasurement,
    TuneObjective,
    TuneRunnerUp,
    TuneScript,
    TuneSpace,
    TuneStats,
    TuneStudy,
    TuneTrial,
    TuneUnmeasured,
    TuningDocument,
)
from perftune.redact import redact_argv, redact_url
from perftune.rundir import RunDir
from perftune.tune.apply import apply_instructions
from perftune.tune.constraints import GuardResult
from perftune.tune.history import (
    ConfigResult,
    History,
    TrialRecord,
    reliably_faster,
    summarise_spread,
)
from perftune.tune.space import SearchSpace, config_key
from perftune.tune.tuner import TuneRun

SCHEMA_VERSION = 1


def _guard(result: GuardResult | None) -> AccuracyGuard | None:
    if result is None:
        return None
    return AccuracyGuard(status=result.status,  # type: ignore[arg-type]
                         deviation=result.deviation, step=result.step,
                         tolerance=result.tolerance, baseline_trial=result.baseline_trial,
                         reason=result.reason)


def trial_entry(record: TrialRecord, history: History) -> TuneTrial:
    outcome = record.outcome
    guard = history.trial_guard(record)
    trial = TuneTrial(number=record.number, values=record.values, role=record.role,
                      why=record.why, worker=record.worker, status=record.status,
                      loss_deviation=guard.deviation if guard is not None else None,
                      accuracy=_guard(guard))
    if outcome is not None:
        body = outcome.to_json()
        body.pop("status", None)
        body.pop("declared_knobs", None)
        trial = msgspec.structs.replace(trial, **body)
    if guard is not None and guard.status == "rejected" and trial.status == "ok":
        trial = msgspec.structs.replace(trial, status="accuracy", reason=guard.reason)
    return trial


def _median_step_ms(config: ConfigResult) -> float | None:
    figures = [m.step_ms for m in config.measurements if m.step_ms is not None]
    return statistics.median(figures) if figures else None


def compile_seconds(config: ConfigResult) -> float | None:
    """The configuration's compile time: the median over its trials (None: it does not compile)."""
    figures = [m.compile_s for m in config.measurements if m.compile_s is not None]
    return statistics.median(figures) if figures else None


def break_even_steps(config: ConfigResult, eager: ConfigResult | None) -> float | None:
    """Steps after which compiling has paid for itself: compile time / (eager − compiled step
    time), against the same configuration with compile=none. None when it does not compile,
    the eager one was not measured, or compiling did not make the step faster."""
    compile_s = compile_seconds(config)
    if compile_s is None or eager is None:
        return None
    mine, theirs = _median_step_ms(config), _median_step_ms(eager)
    if mine is None or theirs is None or theirs <= mine:
        return None
    return compile_s / ((theirs - mine) / 1000.0)


def eager_counterpart(config: ConfigResult, history: History) -> ConfigResult | None:
    if COMPILE not in config.values or config.values[COMPILE] == COMPILE_NONE:
        return None
    return history.result({**config.values, COMPILE: COMPILE_NONE})


def config_entry(config: ConfigResult, rank: int | None, baseline: bool = False,
                 eager: ConfigResult | None = None) -> TuneConfig:
    measurements = config.measurements
    return TuneConfig(
        baseline=baseline,
        rank=rank,
        values=config.values,
        verdict=config.verdict,
        in_space=config.in_space,
        throughput=config.throughput,
        throughputs=list(config.throughputs),
        repeat_spread=summarise_spread(config.throughputs),
        step_ms=statistics.median([m.step_ms for m in measurements if m.step_ms is not None])
        if measurements
        else None,
        compile_s=compile_seconds(config),
        break_even_steps=break_even_steps(config, eager),
        peak_memory_bytes=config.peak_memory_bytes,
        trials=[t.number for t in config.trials],
        loss_deviation=config.guard.deviation if config.guard is not None else None,
        accuracy=_guard(config.guard),
    )


def _best(config: ConfigResult, unit: str | None, default: ConfigResult | None) -> TuneBest:
    first_ok = next(t for t in config.trials if t.outcome is not None and t.outcome.measured)
    assert first_ok.outcome is not None
    speedup = None
    if default is not None and default.throughput and config.throughput:
        speedup = config.throughput / default.throughput
    is_default = default is not None and default.key == config.key
    return TuneBest(
        trial=first_ok.number,
        values=config.values,
        throughput=config.throughput,
        unit=unit,
        step_ms=first_ok.outcome.step_ms,
        spread=first_ok.outcome.spread,
        peak_memory_bytes=config.peak_memory_bytes,
        measurements=len(config.measurements),
        loss_deviation=config.guard.deviation if config.guard is not None else None,
        accuracy=_guard(config.guard),
        speedup_vs_default=speedup,
        reliably_faster_than_default=(default is not None and not is_default
                                      and reliably_faster(config, default)),
        is_default=is_default,
    )


def _runner_up(best: ConfigResult, second: ConfigResult | None) -> TuneRunnerUp | None:
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
    return TuneRunnerUp(
        values=second.values,
        throughput=second.throughput,
        gap=gap,
        noise=noise,
        # Distinct when the repeats say the best is reliably faster (the gate's statistics).
        distinct=reliably_faster(best, second),
        measurements=len(second.measurements),
    )


def unmeasured(space: SearchSpace, history: History) -> list[TuneUnmeasured]:
    """Per knob value, how many of its configurations were measured, where not all were."""
    done = {config_key(c.values) for c in history.configs.values() if c.throughputs}
    out = []
    for knob in space.knobs:
        for value in knob.choices:
            configs = [v for v in space.grid() if v[knob.name] == value]
            measured = sum(config_key(v) in done for v in configs)
            if measured < len(configs):
                out.append(TuneUnmeasured(knob=knob.name, value=value, measured=measured,
                                          total=len(configs)))
    return out


def build_tuning(run: TuneRun) -> TuningDocument:
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
    compiled = [t.outcome.compile_s for t in history.done
                if t.outcome is not None and t.outcome.compile_s is not None]
    space = run.space.to_json()
    apply = (
        apply_instructions(
            run.space,
            best.values,
            settings.script,
            best_trial.outcome.injected if best_trial and best_trial.outcome else {},
        )
        if best
        else None
    )
    return TuningDocument(
        schema_version=SCHEMA_VERSION,
        script=TuneScript(**settings.script.to_json()),
        command=redact_argv(sys.argv),
        run_dir=str(settings.run_dir),
        study=TuneStudy(name=settings.study_name,
                        storage=_storage_label(settings.storage, settings.run_dir)),
        strategy=run.strategy,
        stop_reason=run.stop_reason,
        interrupted=run.interrupted,
        elapsed_s=run.elapsed_s,
        objective=TuneObjective(**(run.objective.to_json() | {"unit": unit})),
        measurement=TuneMeasurement(**run.measurement.to_json()),
        constraints=TuneConstraints(memory_budget_bytes=run.measurement.memory_budget,
                                    accuracy_tolerance=history.tolerance),
        space=TuneSpace(knobs=[TuneKnob(**k) for k in space["knobs"]], args=space["args"],
                        declared=space["declared"], size=run.space.size),
        trials=[trial_entry(r, history) for r in history.records if r.outcome is not None or r.running],
        configs=[config_entry(c, ranked.get(c.key),
                              baseline=default is not None and c.key == default.key,
                              eager=eager_counterpart(c, history))
                 for c in configs],
        best=_best(best, unit, default) if best else None,
        runner_up=_runner_up(best, ranking[1] if len(ranking) > 1 else None) if best else None,
        default=TuneDefault(values=run.space.default(),
                            throughput=default.throughput if default is not None else None,
                            verdict=default.verdict if default is not None else None,
                            noise=summarise_spread(default.throughputs) if default else None),
        unmeasured=unmeasured(run.space, history),
        apply=None if apply is None else TuneApply(
            values=apply["values"], flags=apply["flags"], knobs=apply["knobs"],
            command=apply["command"], code=[CodeChange(**c) for c in apply["code"]]),
        stats=TuneStats(
            trials=history.counted(),
            configs=len(history.configs),
            failed=sum(1 for t in history.done if t.outcome and not t.outcome.measured),
            overhead_s_median=statistics.median(overheads) if overheads else None,
            compile_s_total=sum(compiled) if compiled else None,
        ),
        notes=list(run.notes),
    )


def _storage_label(storage: str | None, run_dir: Path) -> str:
    from perftune.tune.study import JOURNAL

    if storage is None:
        return f"journal:{run_dir / JOURNAL}"
    return redact_url(storage)


def write_tuning(tuning: TuningDocument, run_dir: Path) -> Path:
    return RunDir(run_dir).write_document(tuning, indent=1)
