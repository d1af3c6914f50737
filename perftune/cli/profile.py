"""`perftune profile SCRIPT [ARGS]...` / `perftune profile -m MODULE [ARGS]...`.

Runs an unmodified training script under capture, prints a short summary and, when the analysis
pipeline is installed, its findings. With `--nproc-per-node N` the script is launched by torchrun
with the capture in every rank. Exit codes: 0 ok, 1 findings at or above --fail-on, 2 usage,
3 the script (or a rank) failed or measured nothing, 130 interrupted (Ctrl-C), 143 stopped by SIGTERM.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from perftune import _signals
from perftune.cli._options import (
    ScriptCommand,
    force_option,
    format_option,
    out_option,
    run_dir_for,
)
from perftune.errors import PerftuneError, UsageError
from perftune.redact import redact_argv
from perftune.rundir import RunDir

if TYPE_CHECKING:
    from perftune.capture.parent.distributed import LaunchOptions
    from perftune.capture.parent.runner import CaptureOptions, ScriptTarget

# A run that measured nothing or whose script failed (DESIGN.md, exit codes).
_FAILED = 3


def _shown(path: Path) -> str:
    """The run directory as the user would type it: relative when below the current folder."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def _analyze(run_dir: Path, output_format: str, fail_on: str | None, top: int) -> int:
    """Run the analysis pipeline on the run directory; the exit code its findings ask for."""
    # Load the trace, run the rules, write summary and findings, then the reports.
    try:
        from perftune.pipeline import process_run
        from perftune.report import render_run

        analysis: Any = process_run(run_dir)
        if analysis is not None:
            render_run(run_dir, analysis)
    except PerftuneError:
        raise
    except Exception as exc:
        from perftune.textsafe import terminal_safe

        # The capture is complete and on disk; a failing analysis must not hide it.
        click.echo(
            f"perftune: error: analysing the trace failed ({type(exc).__name__}: "
            f"{terminal_safe(exc)}); the "
            f"capture is complete, retry with `perftune analyze {_shown(run_dir)}`",
            err=True,
        )
        return 2 if fail_on else 0
    if analysis is None:
        return 0
    if isinstance(analysis, str):
        if output_format == "text" and analysis:
            click.echo(analysis)
        return 0
    from perftune.report.console import warning_lines

    for warning in warning_lines(analysis.summary):  # events the loader skipped or repaired
        click.echo(warning, err=True)
    if output_format == "text":
        from perftune.report.console import finding_lines, summary_lines

        click.echo("")
        for line in summary_lines(analysis.summary, timed=True):
            click.echo(line)
        click.echo("")
        for line in finding_lines(analysis.findings, top):
            click.echo(line)
    threshold = fail_on
    if threshold:
        from perftune.engine.types import Severity

        try:
            level = Severity.parse(str(threshold)).rank
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if any(finding.severity.rank >= level for finding in analysis.findings):
            return 1
    return 0


def _profile_ranks(
    target: ScriptTarget,
    run_dir: Path,
    options: CaptureOptions,
    launch: LaunchOptions,
    output_format: str,
    no_analyze: bool,
    fail_on: str | None,
    top: int,
) -> int:
    """`perftune profile --nproc-per-node N`: capture every rank, then analyse them together."""
    from perftune.capture.parent.distributed import (
        run_distributed,
        summary_document,
        summary_lines,
        torchrun_command,
    )

    result = run_distributed(target, run_dir, options, launch)
    code = exit_code_for(result.status, result.steps)
    if output_format == "json":
        click.echo(json.dumps(summary_document(result), indent=2))
    else:
        click.echo("")
        click.echo(f"perftune: captured {shlex.join(redact_argv(torchrun_command(launch, target)))}")
        for line in summary_lines(result, _shown(result.run_dir)):
            click.echo(line)
    if code == _FAILED and result.error:
        click.echo(f"perftune: error: {result.error}", err=True)
    if not no_analyze and result.trace_paths:
        code = max(code, _analyze(result.run_dir, output_format, fail_on, top))
    return code


def _median_text(result: Any) -> str:
    median = result.median_step_ms()
    return "-" if median is None else f"{median:.3f} ms"


def exit_code_for(status: str, steps: int) -> int:
    """perftune's exit code for a capture status (the script's own code is in steps.json)."""
    if status in ("ok", "nan"):
        return 0
    if status == "interrupted":
        return _signals.interrupted_exit_code()  # 130 for Ctrl-C, 143 for SIGTERM
    if status == "window-not-reached":
        return 0 if steps else _FAILED
    return _FAILED


@click.command(cls=ScriptCommand)
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED, metavar="SCRIPT [ARGS]...")
@click.option(
    "-m",
    "--module",
    "module",
    default=None,
    metavar="MODULE",
    help="Run a module, as `python -m MODULE`.",
)
@click.option(
    "--skip",
    type=int,
    default=5,
    show_default=True,
    help="Warm-up steps before the profiled window (warm-up, compilation); [tool.perftune] skip.",
)
@click.option(
    "--active",
    type=int,
    default=3,
    show_default=True,
    help="Profiled steps; [tool.perftune] active.",
)
@click.option(
    "--full",
    is_flag=True,
    help="Let the script run to its end instead of stopping it after the window.",
)
@click.option(
    "--detail",
    type=click.Choice(["light", "default", "full"]),
    default="default",
    show_default=True,
    help="Profiler detail: light (ops, shapes), default (+ Python stacks for source "
    "lines), full (+ memory, FLOPs, modules); [tool.perftune] detail.",
)
@click.option(
    "--step-marker",
    default=None,
    metavar="MODULE:FUNCTION",
    help="A function called once per training step; each return ends a step.",
)
@click.option(
    "--time-slice",
    "time_slice_s",
    type=float,
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Length of one pseudo-step when the script shows no step boundary.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Stop the script (and everything it started) after this long.",
)
@click.option(
    "--quiet", is_flag=True, help="Send the script's output to output.log in the run dir."
)
@click.option("--no-analyze", is_flag=True, help="Only capture; do not run the rules.")
@click.option(
    "--fail-on",
    type=click.Choice(["info", "warning", "error"]),
    default=None,
    help="Exit 1 when a finding has this severity or higher; [tool.perftune] fail-on.",
)
@click.option("--top", type=int, default=10, show_default=True, help="Findings to print.")
@click.option(
    "--nproc-per-node",
    default=None,
    metavar="N",
    help="Launch the script with torchrun, N processes (ranks) on this node, perftune's capture "
    "in every rank; one trace per rank, analysed together.",
)
@click.option("--nnodes", default=None, metavar="N|MIN:MAX", help="torchrun: number of nodes.")
@click.option("--node-rank", type=int, default=None, help="torchrun: rank of this node.")
@click.option("--rdzv-backend", default=None, help="torchrun: rendezvous backend (c10d, ...).")
@click.option("--rdzv-endpoint", default=None, metavar="HOST:PORT", help="torchrun: rendezvous "
              "endpoint shared by every node.")
@click.option("--rdzv-id", default=None, help="torchrun: id of the job's rendezvous.")
@click.option("--master-addr", default=None, help="torchrun: address of the rank 0 node.")
@click.option("--master-port", type=int, default=None, help="torchrun: port on the rank 0 node.")
@format_option
@out_option
@force_option
@click.pass_context
def profile(
    ctx: click.Context,
    script_args: tuple[str, ...],
    module: str | None,
    skip: int,
    active: int,
    full: bool,
    detail: str,
    step_marker: str | None,
    time_slice_s: float,
    timeout_s: float | None,
    quiet: bool,
    no_analyze: bool,
    fail_on: str | None,
    top: int,
    nproc_per_node: str | None,
    nnodes: str | None,
    node_rank: int | None,
    rdzv_backend: str | None,
    rdzv_endpoint: str | None,
    rdzv_id: str | None,
    master_addr: str | None,
    master_port: int | None,
    output_format: str,
    out_dir: Path | None,
    force: bool,
) -> None:
    """Profile a training script as it is: `perftune profile train.py --epochs 1`.

    The script runs like `python train.py --epochs 1` would (or `python -m MODULE` with -m);
    perftune's options come before the script, everything after it is the script's. Steps are
    found from optimizer.step() (or perftune.step() calls, or --step-marker); after --skip warm-up
    steps, --active steps are recorded with torch.profiler, then the script is stopped (unless
    --full). The trace, every step's time and the run's metadata go to a run directory,
    perftune-runs/<time>-<script>/ unless --out or [tool.perftune] runs-dir say otherwise; a
    script that uses torch.compile also gets compilation.json there (compile time per step,
    graphs, graph breaks, recompilations).

    With --nproc-per-node N the script runs under torchrun (`torchrun --nproc-per-node N
    train.py`, the script calls init_process_group itself): every rank is captured and stops
    after the same step, its trace and steps go to rank-K.trace.json.gz and rank-K.steps.json,
    and the ranks are analysed together (step skew, stragglers, communication). A rank that fails
    ends the run with exit code 3 naming it; with --timeout, a hung job is stopped and the rank
    that hung is named.
    """
    # Imported here: the capture runner is torch-free but not needed by `--help`.
    from perftune.capture.parent.launcher import shared_zygote_command
    from perftune.capture.parent.results import CaptureOutputError
    from perftune.capture.parent.runner import CaptureOptions, ScriptTarget, run_capture, validate
    from perftune.capture.parent.summary import summary_document, summary_lines

    if module is None and not script_args:
        raise UsageError("give the script to profile: perftune profile train.py [ARGS]...")
    if module is not None:
        target = ScriptTarget(path=None, module=module, args=script_args, cwd=Path.cwd())
    else:
        target = ScriptTarget(
            path=Path(script_args[0]), module=None, args=script_args[1:], cwd=Path.cwd()
        )
    options = CaptureOptions(
        skip=skip,
        active=active,
        full=full,
        detail=detail,
        step_marker=step_marker,
        timeout_s=timeout_s,
        quiet=quiet,
        time_slice_s=time_slice_s,
        refit=True,
        launcher=shared_zygote_command(os.environ),
    )
    run_dir = run_dir_for(out_dir, target.name)
    launch_values = (nnodes, node_rank, rdzv_backend, rdzv_endpoint, rdzv_id, master_addr,
                     master_port)
    if nproc_per_node is None:  # usage errors first: they create no run directory
        if any(value is not None for value in launch_values):
            raise UsageError("the torchrun options (--nnodes, --node-rank, --rdzv-*, "
                             "--master-*) need --nproc-per-node N")
        validate(target, options)
    # Held until the command ends (click closes the context): a second perftune process
    # writing into this folder at the same time gets one line and exit 2 instead of mixing
    # its files with this run's; a folder holding another run needs --force.
    ctx.with_resource(RunDir(run_dir).lock()).check_new_run(force=force)
    if nproc_per_node is not None:
        from perftune.capture.parent.distributed import LaunchOptions

        launch = LaunchOptions(
            nproc_per_node=str(nproc_per_node).strip(),
            nnodes=str(nnodes).strip() if nnodes is not None else "1",
            node_rank=node_rank,
            rdzv_backend=rdzv_backend,
            rdzv_endpoint=rdzv_endpoint,
            rdzv_id=rdzv_id,
            master_addr=master_addr,
            master_port=master_port,
        )
        ctx.exit(_profile_ranks(target, run_dir, options, launch, output_format, no_analyze,
                                fail_on, top))
    try:
        result = run_capture(target, run_dir, options)
    except CaptureOutputError as exc:
        # perftune could not write the run directory: that is exit 2 with one line naming the
        # path (cli.main), and the script's own outcome is told apart, from memory.
        measured = exc.result
        click.echo(f"perftune: the script itself: {measured.status}, "
                   f"{len(measured.steps)} step{'s' if len(measured.steps) != 1 else ''} "
                   f"measured (median {_median_text(measured)}); they could not all be written "
                   f"to {_shown(run_dir)}", err=True)
        raise

    code = exit_code_for(result.status, len(result.steps))
    if output_format == "json":
        click.echo(json.dumps(summary_document(result), indent=2))
    else:
        click.echo("")
        click.echo(f"perftune: captured {shlex.join(redact_argv(target.python_command()[1:]))}")
        for line in summary_lines(result, _shown(result.run_dir)):
            click.echo(line)
    if not no_analyze and result.trace_path is not None:
        code = max(code, _analyze(result.run_dir, output_format, fail_on, top))
    ctx.exit(code)
