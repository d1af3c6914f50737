"""`perftune fix SCRIPT [ARGS]...` / `perftune fix -m MODULE [ARGS]...` / `perftune fix RUN_DIR`:
verified rewrites.

Applies perftune's own mechanical rewrites to copies of the project, measures each one (and the
compatible ones together) against the original in interleaved launches with the same seed,
checks that the first steps' losses still match, and writes the rewrites that pass as a patch.
Exit codes: 0 ok (whatever the verdicts), 2 usage or a dirty tree with --apply, 3 the script
failed or measured nothing, 130 interrupted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from perftune.cli._options import ScriptCommand, format_option, out_option, run_dir_for
from perftune.errors import UsageError


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


@click.command(cls=ScriptCommand)
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED, metavar="SCRIPT [ARGS]...")
@click.option("-m", "--module", "module", default=None, metavar="MODULE",
              help="Fix a module, run as `python -m MODULE` (its .py source file is rewritten).")
@click.option("--skip", type=int, default=5, show_default=True,
              help="Warm-up steps before the profiled window of the first run.")
@click.option("--active", type=int, default=3, show_default=True, help="Profiled steps.")
@click.option("--warmup", type=int, default=5, show_default=True,
              help="Warm-up steps discarded at the start of each measured launch.")
@click.option("--steps", type=int, default=10, show_default=True,
              help="Steps measured per launch after the warm-up.")
@click.option("--launches", type=int, default=4, show_default=True,
              help="Launches of every version (original, each rewrite, all together) at most, "
              "run interleaved; a version stops after 3 once its verdict is decided (faster, "
              "slower, or at most 2 % slower at the confidence split over the looks); one still "
              "open is judged on its measured ratio.")
@click.option("--rtol", type=float, default=1e-4, show_default=True,
              help="Relative tolerance of the loss comparison.")
@click.option("--atol", type=float, default=1e-6, show_default=True,
              help="Absolute tolerance of the loss comparison.")
@click.option("--check-steps", type=int, default=5, show_default=True,
              help="How many leading steps' losses must match.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="PYTHONHASHSEED of every run, and the seed of torch, random and numpy.")
@click.option("--select", multiple=True, help="Only rewrites for these rule codes or prefixes.")
@click.option("--require-faster", is_flag=True,
              help="Keep only rewrites measurably faster here (default: also those with no "
              "measurable change, e.g. GPU syncs on a CPU machine).")
@click.option("--apply", "apply_fix", is_flag=True,
              help="Write the verified rewrites into your files (they must be committed).")
@click.option("--force", is_flag=True, help="With --apply: write even into uncommitted files.")
@click.option("--timeout", "timeout_s", type=float, default=900.0, show_default=True,
              metavar="SECONDS", help="Stop any one run after this long.")
@click.option("--no-reuse", "no_reuse", is_flag=True,
              help="Start every launch as a fresh python process instead of forking it from a "
                   "zygote that imported torch once (the default saves ~2 s per launch; "
                   "launches the zygote cannot take safely run fresh anyway).")
@format_option
@out_option
@click.pass_context
def fix(ctx: click.Context, script_args: tuple[str, ...], module: str | None, skip: int,
        active: int,
        warmup: int, steps: int, launches: int, rtol: float, atol: float,
        check_steps: int, seed: int, select: tuple[str, ...], require_faster: bool,
        apply_fix: bool, force: bool, timeout_s: float, no_reuse: bool, output_format: str,
        out_dir: Path | None) -> None:
    """Prove perftune's suggested rewrites: faster, same results, as a patch.

    `perftune fix train.py [ARGS]` profiles the script, takes every finding whose suggestion is
    a mechanical diff, and runs the original and the rewritten code interleaved with the same
    seed. A rewrite is kept when the first steps' losses match (--rtol/--atol) and it is not
    slower; the kept ones go into fix.patch. `perftune fix RUN_DIR` starts from an earlier
    `perftune profile` run: it takes the findings' locations from it and makes each rewrite
    again on the current source (a diff recorded in the run dir is never run nor written).
    `perftune fix -m pkg.train [ARGS]` fixes a module run as `python -m pkg.train`: its source
    file (found in the working directory or on PYTHONPATH) is rewritten.
    With --apply the patch is printed before it is written. Losses are compared step by step,
    step k of both runs as perftune's step detector numbered them (optimizer steps, else
    backward() calls, ...); a script whose steps are only time slices gets no loss check. The
    script must seed itself (torch.manual_seed) for the check to mean anything.
    """
    from perftune.documents import document_data
    from perftune.fix.outputs import summary_lines, write_outputs
    from perftune.fix.session import (
        FixSettings,
        apply_patch,
        check_clean,
        plan_for,
        verify_rewrites,
    )
    from perftune.fix.sources import from_profile, from_run_dir, is_run_dir
    from perftune.fix.verify import Tolerance
    from perftune.report import render_fix_run

    if not script_args and module is None:
        raise UsageError("give the script to fix: perftune fix train.py [ARGS]... (or a run dir, "
                         "or -m MODULE [ARGS]...)")
    if force and not apply_fix:
        raise UsageError("--force only goes with --apply")
    settings = FixSettings(
        warmup=warmup,
        steps=steps,
        launches=launches,
        tolerance=Tolerance(rtol=rtol, atol=atol, steps=check_steps),
        seed=seed, timeout_s=timeout_s,
        select=tuple(c.strip() for v in select for c in v.split(",") if c.strip()),
        require_faster=require_faster, reuse_processes=not no_reuse)
    run_dir = run_dir_for(out_dir, "fix").resolve()

    def say(text: str) -> None:
        click.echo(f"perftune fix: {text}", err=True)

    first = Path(script_args[0]) if module is None else None
    if module is not None:
        from perftune.fix.sources import module_file

        file = module_file(module, Path.cwd())
        say(f"profiling -m {module} ({_shown(file)})")
        source = from_profile(file, tuple(script_args), Path.cwd(), run_dir, skip=skip,
                              active=active, timeout_s=timeout_s, seed=seed, module=module)
        source_run = None
    elif first is not None and is_run_dir(first):
        if len(script_args) > 1:
            raise UsageError(f"{first} is a run directory; its script arguments come from its "
                             "meta.json, give no others")
        source = from_run_dir(first.resolve())
        source_run = source.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        assert first is not None
        if first.is_dir():
            raise UsageError(f"{first} is a folder but not a perftune run directory (no "
                             "meta.json); give a script or a `perftune profile` run")
        if not first.is_file():
            raise UsageError(f"{first}: no such script")
        say(f"profiling {first}")
        source = from_profile(
            first.resolve(), tuple(script_args[1:]), Path.cwd(), run_dir,
            skip=skip,
            active=active,
            timeout_s=timeout_s, seed=seed)
        source_run = None
    plan = plan_for(source.target, settings.select)
    if apply_fix:
        # Fail before minutes of measuring, not after.
        check_clean(plan.project, sorted({f for c in plan.candidates for f in c.files}), force)
    say(f"{len(plan.candidates)} rewrite(s) to try, {len(plan.skipped)} finding(s) without one")
    outcome = verify_rewrites(plan, source.target, settings, run_dir, progress=say)
    def show(patch: str) -> None:
        # The exact patch about to go into the user's files, shown before they are written.
        say("--apply: writing this patch:")
        click.echo(patch, err=True, nl=False)

    applied = apply_patch(plan, outcome.chosen, force, show) if apply_fix and outcome.chosen else []
    doc = write_outputs(outcome, run_dir, applied=applied, source_run=source_run)
    render_fix_run(run_dir, source.analysis, source_run)
    if output_format == "json":
        click.echo(json.dumps(document_data(doc), indent=2))
    else:
        for line in summary_lines(doc, _shown(run_dir)):
            click.echo(line)
    ctx.exit(0)
