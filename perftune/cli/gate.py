"""`perftune gate SCRIPT [ARGS] --against REF | --baseline FILE`: the CI regression gate.

Also holds the options and helpers `perftune baseline` and `perftune calibrate` share with it,
so that the three commands measure a launch the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from perftune.cli._options import (
    ScriptCommand,
    format_option,
    out_option,
    run_dir_for,
)
from perftune.errors import ScriptError, UsageError
from perftune.fsutil import write_text_atomic
from perftune.rundir import GATE_MD
from perftune.units import parse_fraction

F = TypeVar("F", bound=Callable[..., Any])

# A calibration here is used without --calibration (`perftune calibrate -o` writes it).
DEFAULT_CALIBRATION = Path("perftune-calibration.json")
# gate, baseline and calibrate are ScriptCommands: their options come before the script, and
# the script and everything after it are the script's (as with python -m and torchrun).
SCRIPT_CONTEXT = {"help_option_names": ["-h", "--help"]}


def script_arguments(module: str | None, script_and_args: tuple[str, ...]) -> tuple[Path | None, tuple[str, ...]]:
    if module is not None:
        return None, script_and_args
    if not script_and_args:
        raise UsageError("give the training SCRIPT to run (or -m MODULE)")
    script = Path(script_and_args[0])
    if not script.is_file():
        raise UsageError(f"{script}: no such script")
    return script, script_and_args[1:]


def measure_options(func: F) -> F:
    """--warmup/--steps/--timeout: how one launch is measured (same in gate, baseline, calibrate)."""
    func = click.option("--timeout", "timeout_s", type=float, default=900.0, show_default=True,
                        help="Kill a launch after this many seconds.")(func)
    func = click.option("--steps", type=int, default=10, show_default=True,
                        help="Steps measured per launch after the warm-up.")(func)
    func = click.option("--warmup", type=int, default=5, show_default=True,
                        help="Warm-up steps discarded at the start of each launch.")(func)
    return func


def script_options(func: F) -> F:
    func = click.argument("script_and_args", nargs=-1, type=click.UNPROCESSED,
                          metavar="SCRIPT [ARGS]...")(func)
    func = click.option("-m", "--module", default=None,
                        help="Run a module (like python -m) instead of a SCRIPT file.")(func)
    func = click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")(func)
    return func


def measure_settings(warmup: int, steps: int, timeout_s: float) -> Any:
    from perftune.capture.parent.measure import MeasureSettings

    return MeasureSettings(warmup=warmup, steps=steps, timeout_s=timeout_s)


def progress_printer(quiet: bool) -> Callable[[str], None]:
    def show(line: str) -> None:
        if not quiet:
            click.echo(line, err=True)

    return show


def _write_error_outputs(run_dir: Path, message: str, script: str, mode: str, junit: Path | None) -> None:
    from perftune.gate import outputs

    outputs.write_document(run_dir, outputs.error_document(message, mode, ScriptError.exit_code))
    markdown = outputs.render_error_markdown(message, script)
    write_text_atomic(run_dir / GATE_MD, markdown)
    outputs.append_step_summary(markdown)
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(junit, outputs.render_error_junit(message, script))
    if outputs.is_github_actions():
        click.echo(outputs.annotation("error", message.splitlines()[0] if message else "script failed",
                                      title="perftune gate: the script failed"))


def _checkout_root() -> Path | None:
    """The repository root that annotation paths are relative to (GitHub's workspace)."""
    from perftune.gate.worktree import repo_root

    try:
        return repo_root(Path.cwd())
    except UsageError:
        return None


@click.command(cls=ScriptCommand, context_settings=SCRIPT_CONTEXT)
@script_options
@click.option("--against", "against", metavar="REF", default=None,
              help="Compare with this git revision (checked out into a temporary worktree).")
@click.option("--baseline", "baseline_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Compare with a baseline file written by `perftune baseline`.")
@click.option("--max-regression", default="5%", show_default=True,
              help="Allowed slowdown, 0.05 or 5%; never tighter than --calibration shows is measurable.")
@click.option("--confidence", type=float, default=0.95, show_default=True,
              help="Confidence of the whole gate, split over its looks at the data.")
@click.option("--launches", type=int, default=6, show_default=True,
              help="Launches per side before the first decision.")
@click.option("--max-launches", type=int, default=20, show_default=True,
              help="Launches per side at most, added 4 at a time while undecided.")
@measure_options
@click.option("--inconclusive", type=click.Choice(["pass", "fail", "error"]), default="error", show_default=True,
              help="Exit code when still undecided at --max-launches: 0, 1, or 4 (error).")
@click.option("--fail-on-new-findings", is_flag=True, default=False,
              help="Also fail when head has structural changes for the worse (new syncs, findings, …).")
@click.option("--explain/--no-explain", default=True, show_default=True,
              help="Profile one launch per side to show what changed.")
@click.option("--calibration", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Calibration file from `perftune calibrate -o`: raises the allowance to what is measurable [default: ./perftune-calibration.json when present].")
@click.option("--fingerprint-mismatch", type=click.Choice(["refuse", "warn"]), default="refuse", show_default=True,
              help="With --baseline: refuse (exit 2) or warn when the environment differs.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a JUnit XML report here.")
@click.option("--no-reuse", "no_reuse", is_flag=True,
              help="Start every launch as a fresh python process instead of forking it from a "
                   "zygote per side that imported torch once (the default saves ~2 s per launch; "
                   "launches the zygote cannot take safely run fresh anyway).")
@click.option("--seed", type=int, default=None, help="Seed of the randomised ABBA launch order.")
@out_option
@format_option
@click.pass_context
def gate(ctx: click.Context, script_and_args: tuple[str, ...], module: str | None, quiet: bool,
         against: str | None, baseline_path: Path | None, max_regression: str,
         confidence: float, launches: int, max_launches: int,
         warmup: int, steps: int, timeout_s: float,
         inconclusive: str, fail_on_new_findings: bool, explain: bool,
         calibration: Path | None, fingerprint_mismatch: str, junit: Path | None,
         seed: int | None, no_reuse: bool, out_dir: Path | None, output_format: str) -> None:
    """Fail the build when training step time really regressed.

    \b
    perftune gate --against origin/main train.py --epochs 1
    perftune gate --baseline perf-baseline.json train.py

    perftune's options come before the script; the script and everything after it are the
    script's (as with python -m and torchrun).

    Base and head are launched interleaved in randomised ABBA order, each launch a separate
    process (warm-up discarded, median of the steady steps). The gate fails only when the
    ratio exceeds the allowed slowdown and a one-sided bound at a 1 % false-alarm rate lies
    above 1; it passes when the interval lies below the allowance; otherwise it adds launches.
    Against a baseline it decides only from 5 or more stored launches, and not when the load
    (busy or quiet) it recorded under could explain the outcome.
    Exit codes: 0 pass, 1 regression, 2 usage, 3 script failed, 4 inconclusive.
    """
    from perftune.gate import baseline as baseline_mod
    from perftune.gate import calibration as calibration_mod
    from perftune.gate import outputs, session
    from perftune.gate.decision import DecisionRule
    from perftune.gate.runner import LaunchPlan

    if (against is None) == (baseline_path is None):
        raise UsageError("give exactly one of --against REF or --baseline FILE")
    script, args = script_arguments(module, script_and_args)
    stored = baseline_mod.load(baseline_path) if baseline_path is not None else None
    if stored is not None:
        # The stored samples were measured one way; measure the head the same way, unless the
        # command line says otherwise ([tool.perftune] does not).
        if ctx.get_parameter_source("warmup") is not ParameterSource.COMMANDLINE:
            warmup = stored.warmup
        if ctx.get_parameter_source("steps") is not ParameterSource.COMMANDLINE:
            steps = stored.steps
    plan = LaunchPlan(launches=launches, max_launches=max_launches)
    rule = DecisionRule(max_regression=parse_fraction(max_regression, "--max-regression"),
                        confidence=confidence)
    if calibration is not None and calibration == Path(""):
        calibration = None  # `calibration = ""` in [tool.perftune.gate]: none
    if calibration is None and DEFAULT_CALIBRATION.is_file():
        calibration = DEFAULT_CALIBRATION  # `perftune calibrate -o` wrote it here
    if calibration is not None:
        floor = calibration_mod.noise_floor(calibration, rule.confidence, plan,
                                            paired=against is not None)
        rule = DecisionRule(max_regression=rule.max_regression, confidence=rule.confidence,
                            noise_floor=floor)
    policy = inconclusive
    options = session.GateOptions(
        rule=rule, plan=plan, measure=measure_settings(warmup, steps, timeout_s),
        inconclusive=policy,  # type: ignore[arg-type]
        explain=explain,
        fail_on_new_findings=fail_on_new_findings,
        seed=seed,
        reuse_processes=not no_reuse,
        # Launch length follows the step time unless --steps (or the config, or the baseline)
        # fixes it.
        size_launches=stored is None and ctx.get_parameter_source("steps") is ParameterSource.DEFAULT,
    )
    run_dir = run_dir_for(out_dir, "gate")
    run_dir.mkdir(parents=True, exist_ok=True)
    progress = progress_printer(quiet)
    shown = str(script) if script is not None else f"-m {module}"
    mode = "revision" if against is not None else "baseline"
    try:
        if stored is not None:
            verdict = session.gate_against_baseline(
                script, args, stored, run_dir, options, module=module,
                fingerprint_mismatch=fingerprint_mismatch,
                progress=progress)
        else:
            assert against is not None
            verdict = session.gate_against_revision(script, args, against, run_dir, options,
                                                    module=module, progress=progress)
    except ScriptError as exc:
        _write_error_outputs(run_dir, str(exc), shown, mode, junit)
        raise

    outputs.write_document(run_dir, outputs.verdict_document(verdict))
    markdown = outputs.render_markdown(verdict, shown)
    write_text_atomic(run_dir / GATE_MD, markdown)
    outputs.append_step_summary(markdown)
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(junit, outputs.render_junit(verdict, shown))
    if outputs.is_github_actions():
        for line in outputs.render_annotations(verdict, _checkout_root()):
            click.echo(line)
    if output_format == "json":
        click.echo(json.dumps(outputs.verdict_dict(verdict), indent=2, default=str))
    else:
        click.echo(outputs.render_terminal(verdict))
    ctx.exit(verdict.return_code)
