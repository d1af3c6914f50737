"""`perftune baseline SCRIPT [ARGS] -o perf-baseline.json`: record samples for `gate --baseline`."""

from __future__ import annotations

from pathlib import Path

import click

from perftune.cli._options import ScriptCommand, out_option, run_dir_for
from perftune.cli.gate import (
    SCRIPT_CONTEXT,
    measure_options,
    measure_settings,
    progress_printer,
    script_arguments,
    script_options,
)
from perftune.fsutil import write_json_atomic
from perftune.rundir import BASELINE


@click.command(cls=ScriptCommand, context_settings=SCRIPT_CONTEXT)
@script_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("perf-baseline.json"), show_default=True, help="Baseline file to write.")
@click.option("--launches", type=int, default=10, show_default=True,
              help="Launches to record (the gate compares its launches with these).")
@measure_options
@click.option("--explain/--no-explain", default=True, show_default=True,
              help="Profile one launch too, so that the gate can report structural changes.")
@out_option
def baseline(script_and_args: tuple[str, ...], module: str | None, quiet: bool, output: Path,
             launches: int, warmup: int, steps: int, timeout_s: float,
             explain: bool, out_dir: Path | None) -> None:
    """Record step-time samples and an environment fingerprint for `perftune gate --baseline`.

    Each launch is a separate process; the file holds the per-launch medians, how they were
    measured, and the CPU/GPU model, torch/CUDA, Python and perftune versions. The gate refuses
    to compare against it on a different environment unless told to warn.
    """
    from perftune.analysis.stats import geometric_mean, log_sd
    from perftune.gate import baseline as baseline_mod
    from perftune.gate import session
    from perftune.gate.runner import MIN_STORED_LAUNCHES

    script, args = script_arguments(module, script_and_args)
    run_dir = run_dir_for(out_dir, "baseline")
    run_dir.mkdir(parents=True, exist_ok=True)
    progress = progress_printer(quiet)
    progress(f"perftune baseline: {script or '-m ' + str(module)}, run dir {run_dir}")
    recorded = session.record_baseline(
        script, args, run_dir, measure_settings(warmup, steps, timeout_s),
        launches,
        module=module, explain=explain, progress=progress)
    baseline_mod.save(recorded, output)
    write_json_atomic(run_dir / BASELINE, recorded.to_dict())
    click.echo(f"perftune baseline: {len(recorded.samples_ms)} launches, step time "
               f"{geometric_mean(recorded.samples_ms):.3f} ms (geometric mean), launch-to-launch "
               f"noise {log_sd(recorded.samples_ms):.1%}")
    if recorded.busy:
        click.echo("  recorded while other processes competed for the CPUs: a gate against it "
                   "will not pass a head measured on a quiet runner (record it when the runner "
                   "is quiet)")
    if len(recorded.samples_ms) < MIN_STORED_LAUNCHES:
        click.echo(f"  {len(recorded.samples_ms)} launches: a gate against it stays "
                   f"inconclusive (it decides from {MIN_STORED_LAUNCHES} or more)")
    click.echo(f"  wrote {output} (run dir {run_dir})")
