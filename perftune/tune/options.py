"""What `perftune tune` was asked, as one typed value, and the tuner's settings built from it.

The command line gives `TuneOptions` (None: not given); `[tool.perftune.tune]` fills what the
command line left out, then the built-in defaults. `settings_from_options` checks the values
and returns the `TuneSettings` the tuner runs with, so the click command stays a thin shell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from perftune.config import config_default, load_config
from perftune.errors import ConfigError, UsageError
from perftune.tune import space as space_mod
from perftune.tune.constraints import DEFAULT_TOLERANCE
from perftune.tune.objective import Objective
from perftune.tune.strategy import StrategySettings
from perftune.tune.trial import Measurement, Script
from perftune.tune.tuner import SpaceSources, TuneSettings
from perftune.units import parse_bytes, parse_duration, parse_fraction


@dataclass(frozen=True)
class TuneOptions:
    """The options of `perftune tune`, as given (None or empty: not given)."""

    script_and_args: tuple[str, ...] = ()
    module: str | None = None
    knobs: tuple[str, ...] = ()
    arg_templates: tuple[str, ...] = ()
    from_findings: Path | None = None
    no_declared: bool = False
    samples_per_step: str | None = None
    tokens_per_sample: str | None = None
    memory_budget: str | None = None
    accuracy_tolerance: str | None = None
    max_trials: int | None = None
    time_budget: str | None = None
    strategy: str | None = None
    top_k: int | None = None
    repeats: int | None = None
    trial_warmup: int | None = None
    trial_steps: int | None = None
    trial_timeout: str | None = None
    run_steps: int | None = None
    seed: int | None = None
    no_seed: bool = False
    storage: str | None = None
    study_name: str | None = None
    resume: bool = False
    no_reuse: bool = False
    out_dir: Path | None = None


def tune_config() -> dict[str, Any]:
    """`[tool.perftune.tune]` of the nearest pyproject.toml, or {}."""
    table = load_config().get("tune", {})
    if not isinstance(table, dict):
        raise ConfigError("[tool.perftune.tune] must be a table")
    return table


def _config(table: Mapping[str, Any], key: str, fallback: Any = None) -> Any:
    for name in (key, key.replace("-", "_")):
        if name in table:
            return table[name]
    return config_default(key, fallback) if key in ("runs-dir",) else fallback


def _script(module: str | None, script_and_args: tuple[str, ...]) -> Script:
    if module is not None:
        return Script(path=None, module=module, args=script_and_args, cwd=Path.cwd())
    if not script_and_args:
        raise UsageError("give the training SCRIPT to tune (or -m MODULE)")
    path = Path(script_and_args[0])
    if not path.is_file():
        raise UsageError(f"{path}: no such script")
    return Script(path=path, module=None, args=script_and_args[1:], cwd=Path.cwd())


def _run_dir(out_dir: Path | None, stem: str, resume: bool) -> Path:
    runs = Path(str(config_default("runs-dir", "perftune-runs")))
    if out_dir is not None:
        return out_dir
    if resume:
        from perftune.tune.study import JOURNAL

        earlier = sorted(p for p in runs.glob(f"*-tune-{stem}") if (p / JOURNAL).exists())
        if not earlier:
            raise UsageError(f"--resume: no earlier tuning run of {stem} in {runs}/; give --out DIR")
        return earlier[-1]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return runs / f"{stamp}-tune-{stem}"


def _run_steps(value: Any) -> int | None:
    """--run-steps / run-steps: a positive whole number of steps."""
    if value is None:
        return None
    try:
        steps = int(str(value).replace("_", ""))
    except ValueError:
        raise UsageError(f"--run-steps {value!r}: expected a number of steps, e.g. 2000") from None
    if steps < 1:
        raise UsageError(f"--run-steps must be 1 or more, got {steps}")
    return steps


def settings_from_options(o: TuneOptions, table: Mapping[str, Any] | None = None) -> TuneSettings:
    """The tuner's settings: the command line, then `table` (default: [tool.perftune.tune]),
    then the defaults. Raises UsageError/ConfigError on values that cannot be used."""
    table = tune_config() if table is None else table
    script = _script(o.module, o.script_and_args)
    config_knobs, config_args = space_mod.knobs_from_config(table)
    cli_knobs = tuple(space_mod.parse_knob_option(spec) for spec in o.knobs)
    cli_args = [space_mod.parse_arg_option(spec) for spec in o.arg_templates]
    findings = space_mod.knobs_from_findings(o.from_findings) if o.from_findings is not None else {}
    budget_text = o.memory_budget if o.memory_budget is not None else _config(table, "memory-budget")
    timeout_text = o.trial_timeout if o.trial_timeout is not None else _config(table, "trial-timeout", "5m")
    seed_value = None if o.no_seed else (o.seed if o.seed is not None else int(_config(table, "seed", 0)))
    measurement = Measurement(
        warmup=o.trial_warmup if o.trial_warmup is not None else int(_config(table, "trial-warmup", 3)),
        steps=o.trial_steps if o.trial_steps is not None else int(_config(table, "trial-steps", 8)),
        timeout_s=parse_duration(timeout_text),
        seed=seed_value,
        memory_budget=parse_bytes(budget_text) if budget_text is not None else None,
    )
    if measurement.warmup < 0 or measurement.steps < 1:
        raise UsageError("--trial-warmup must be 0 or more and --trial-steps 1 or more")
    max_trials = o.max_trials if o.max_trials is not None else _config(table, "max-trials")
    if max_trials is not None and int(max_trials) < 1:
        raise UsageError("--max-trials must be 1 or more")
    time_text = o.time_budget if o.time_budget is not None else _config(table, "time-budget")
    tolerance_text = (o.accuracy_tolerance if o.accuracy_tolerance is not None
                      else _config(table, "accuracy-tolerance"))
    settings = TuneSettings(
        script=script,
        run_dir=_run_dir(o.out_dir, script.stem, o.resume),
        sources=SpaceSources(
            cli=cli_knobs,
            config=config_knobs,
            findings=findings,
            args=(*config_args, *cli_args),
            use_declared=not o.no_declared,
        ),
        measurement=measurement,
        objective=Objective(
            samples_per_step=o.samples_per_step or _config(table, "samples-per-step"),
            tokens_per_sample=o.tokens_per_sample or _config(table, "tokens-per-sample"),
            run_steps=_run_steps(o.run_steps if o.run_steps is not None
                                 else _config(table, "run-steps")),
        ),
        tolerance=(parse_fraction(tolerance_text, "--accuracy-tolerance")
                   if tolerance_text is not None else DEFAULT_TOLERANCE),
        strategy=StrategySettings(
            name=o.strategy or str(_config(table, "strategy", "auto")),
            top_k=o.top_k if o.top_k is not None else int(_config(table, "top-k", 3)),
            repeats=o.repeats if o.repeats is not None else int(_config(table, "repeats", 2)),
        ),
        max_trials=int(max_trials) if max_trials is not None else None,
        time_budget_s=parse_duration(time_text) if time_text is not None else None,
        storage=o.storage or _config(table, "storage"),
        study_name=o.study_name or f"tune-{script.stem}",
        resume=o.resume,
        reuse_processes=not (o.no_reuse or bool(_config(table, "no-reuse", False))),
    )
    if settings.strategy.top_k < 1 or settings.strategy.repeats < 0:
        raise UsageError("--top-k must be 1 or more and --repeats 0 or more")
    return settings
