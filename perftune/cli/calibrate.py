"""`perftune calibrate SCRIPT [ARGS]`: how noisy is this runner, and what can the gate detect?"""

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
from perftune.rundir import CALIBRATION
from perftune.units import parse_fraction


@click.command(cls=ScriptCommand, context_settings=SCRIPT_CONTEXT)
@script_options
@click.option("--launches", type=int, default=10, show_default=True,
              help="Launches per side (the same code on both sides).")
@measure_options
@click.option("--max-regression", default="5%", show_default=True,
              help="The allowance you want to gate on, 0.05 or 5%.")
@click.option("--confidence", type=float, default=0.95, show_default=True,
              help="Confidence of the interval.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the calibration here, for `perftune gate --calibration FILE` (gate reads ./perftune-calibration.json by itself).")
@click.option("--seed", type=int, default=None, help="Seed of the randomised ABBA launch order.")
@out_option
def calibrate(script_and_args: tuple[str, ...], module: str | None, quiet: bool, launches: int,
              warmup: int, steps: int, timeout_s: float,
              max_regression: str, confidence: float, output: Path | None,
              seed: int | None, out_dir: Path | None) -> None:
    """Measure this runner's launch-to-launch noise by running the same code on both sides.

    Suggests the number of launches for the allowance you want, and the smallest regression
    the gate can reliably detect (90 % of the time) with a given number of launches.
    """
    from perftune.gate import calibration as calibration_mod
    from perftune.gate import session

    script, args = script_arguments(module, script_and_args)
    wanted = parse_fraction(max_regression, "--max-regression")
    level = confidence
    run_dir = run_dir_for(out_dir, "calibrate")
    run_dir.mkdir(parents=True, exist_ok=True)
    progress = progress_printer(quiet)
    progress(f"perftune calibrate: {launches} launches per side of the same code, run dir {run_dir}")
    result = session.calibrate(script, args, run_dir, measure_settings(warmup, steps, timeout_s),
                               launches, level, module=module, seed=seed, progress=progress)
    write_json_atomic(run_dir / CALIBRATION, result.to_dict())
    if output is not None:
        calibration_mod.save(result, output)
    aa = result.aa
    click.echo(f"perftune calibrate: launch-to-launch noise {result.noise:.2%}, within ABBA pairs "
               f"{result.paired_noise:.2%} ({launches} launches per side, step time "
               f"{aa.base_geomean_ms:.3f} ms)")
    click.echo(f"  same code on both sides: ratio {aa.ratio:.3f}, {level:.0%} CI "
               f"[{aa.low:.3f}, {aa.high:.3f}]" + ("" if aa.low <= 1.0 <= aa.high else
                                                   "  (excludes 1: unusually unlucky, or a drifting runner)"))
    for paired, mode in ((True, "gate --against REF"), (False, "gate --baseline FILE")):
        needed = result.launches_for(wanted, paired)
        if needed is None:
            click.echo(f"  {mode}: a {wanted:.1%} regression cannot be detected reliably with up "
                       "to 1000 launches per side")
        else:
            click.echo(f"  {mode}: detecting a {wanted:.1%} regression reliably needs "
                       f"--max-launches {needed}")
        cells = ", ".join(f"{n}: {d:.1%}" for n, d in result.table(paired))
        click.echo(f"    smallest regression detected reliably, by launches per side: {cells}")
    written = f"{output} and " if output is not None else ""
    click.echo(f"  wrote {written}{run_dir / 'calibration.json'}")
