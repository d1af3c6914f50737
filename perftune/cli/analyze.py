"""`perftune analyze PATH...`: summarise traces recorded anywhere, run the rules."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click

from perftune.cli._options import (
    config_default,
    force_option,
    format_option,
    out_option,
    run_dir_for,
    source_root_option,
)
from perftune.documents import document_data
from perftune.engine.types import Severity
from perftune.errors import ConfigError
from perftune.pipeline import (
    analyze_paths,
    analyze_ranks,
    default_jobs,
    findings_document,
    rank_files,
    selection_from_config,
)
from perftune.report import write_run
from perftune.report.console import (
    finding_lines,
    source_hint_lines,
    summary_lines,
    timing_lines,
    warning_lines,
)
from perftune.report.sections import worker_sections
from perftune.rundir import DocumentError, RunDir, same_files


@click.command()
@click.argument("paths", nargs=-1, required=True)
@format_option
@out_option
@click.option("--select", multiple=True, help="Only these rule codes or prefixes (PFT2,PFT401).")
@click.option("--ignore", multiple=True, help="Skip these rule codes or prefixes.")
@click.option("--preview", is_flag=True, help="Also run rules in preview.")
@click.option("--fail-on", type=click.Choice(["info", "warning", "error"]), default=None,
              help="Exit 1 when a finding has this severity or higher; [tool.perftune] fail-on.")
@click.option("--top", type=int, default=10, show_default=True, help="Findings to print.")
@source_root_option
@force_option
@click.option("--timings", is_flag=True,
              help="Print on stderr how long each stage and each rule took (each process's own "
                   "seconds: on a large trace whose rules ran in two processes the stages add up "
                   "to more than the wall time).")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes for the rank files: each rank is analysed apart, then the "
                   "ranks are compared from their reductions only (memory: the largest rank, "
                   "not the sum). Default with two or more rank files: one per rank, at most "
                   "one per CPU and as many as the available memory holds; --jobs 1 analyses "
                   "them one after another in this process.")
@click.option("--scheduler", envvar="PERFTUNE_SCHEDULER", default=None, metavar="ADDRESS",
              help="Run the per-rank analyses as tasks on this dask.distributed scheduler "
                   "(tcp://host:8786; also PERFTUNE_SCHEDULER); its workers read the traces "
                   "by path or fsspec URL. Needs perftune[dask].")
@click.pass_context
def analyze(ctx: click.Context, paths: tuple[str, ...], output_format: str, out_dir: Path | None,
            select: tuple[str, ...], ignore: tuple[str, ...], preview: bool, fail_on: str | None,
            top: int, source_roots: tuple[Path, ...], force: bool, timings: bool,
            jobs: int | None, scheduler: str | None) -> None:
    """Summarise trace files and report what makes the step slow.

    PATHS are Kineto / torch.profiler traces (.json or .json.gz) or directories of per-rank
    traces as written by tensorboard_trace_handler. Works without torch installed.

    With --out DIR the summary, findings and reports go to DIR; a DIR that holds another run is
    refused without --force (re-analysing the run DIR holds is always allowed).

    Two or more rank files are each analysed on their own (in worker processes, --jobs; or on
    a Dask cluster, --scheduler, where PATHS may be fsspec URLs such as s3://bucket/run/) and
    only compact per-rank results are gathered: findings merged across ranks
    (evidence.ranks), the summary of all ranks, and the cross-rank section.
    """
    if scheduler is not None and not scheduler.strip():
        scheduler = None
    spread = {"jobs": jobs, "scheduler": scheduler}
    named: tuple[Path, ...] = tuple(  # fsspec URLs stay strings (read on the workers)
        p if "://" in p and not p.startswith("file://") else Path(p)  # type: ignore[misc]
        for p in paths)
    target: Path | None = None
    if out_dir is not None or config_default("always-write", False):
        target = run_dir_for(out_dir, "analyze")
    if target is None:
        _analyze(ctx, named, output_format, None, select, ignore, preview, fail_on, top,
                 source_roots, timings, spread)
        return
    run = RunDir(target)
    # Locked before the (possibly long) analysis, so that a second run fails at once.
    with run.lock():
        run.check_new_run(force=force, same_run=_same_run(run, named))
        _analyze(ctx, named, output_format, target, select, ignore, preview, fail_on, top,
                 source_roots, timings, spread)


def _same_run(run: RunDir, paths: tuple[Path, ...]) -> bool:
    """Whether `paths` are the run's own traces: files inside the run directory, or the files
    its summary.json says it analysed."""
    root = os.path.realpath(run.path)
    if all(os.path.realpath(p).startswith(root + os.sep) or os.path.realpath(p) == root
           for p in paths):
        return True
    try:
        summary = run.read_summary()
    except DocumentError:
        return False  # a corrupt summary proves nothing: refuse without --force
    return summary is not None and same_files(summary.files, paths)


def _analyze(ctx: click.Context, paths: tuple[Path, ...], output_format: str,
             target: Path | None, select: tuple[str, ...], ignore: tuple[str, ...],
             preview: bool, fail_on: str | None, top: int,
             source_roots: tuple[Path, ...], show_timings: bool = False,
             spread: dict[str, Any] | None = None) -> None:
    rules = selection_from_config(select, ignore, preview)
    spread = spread or {}
    jobs = spread.get("jobs")
    if jobs is None and not spread.get("scheduler"):
        # Two or more rank files: each analysed apart in worker processes by default (memory
        # of the largest rank, not the sum); one file: analysed here.
        files = rank_files(list(paths))
        if len(files) > 1 or any(not isinstance(p, Path) for p in paths):  # URLs: read apart
            jobs = default_jobs(files)
    if jobs is not None or spread.get("scheduler"):
        analysis = analyze_ranks(list(paths), rules, source_roots or None,
                                 jobs=jobs or 1, scheduler=spread.get("scheduler"))
    else:
        # With reports to write, the rules' worker (a large trace) also computes the report's
        # trace-only parts while this process finishes its rules and the summary.
        analysis = analyze_paths(list(paths), rules, source_roots or None,
                                 prepare=worker_sections if target is not None else None)
    for warning in [*warning_lines(analysis.summary), *source_hint_lines(analysis.findings)]:
        click.echo(warning, err=True)  # events the loader skipped; source it did not read
    if output_format == "json":
        document = findings_document(analysis.summary, analysis.findings)
        click.echo(json.dumps(document_data(document), indent=2, default=str))
    else:
        for line in summary_lines(analysis.summary):
            click.echo(line)
        click.echo("")
        for line in finding_lines(analysis.findings, top):
            click.echo(line)
    if target is not None:
        started = time.perf_counter()
        write_run(analysis, target)
        analysis.timings["reports"] = time.perf_counter() - started
        click.echo(f"wrote {target}", err=output_format == "json")
    if show_timings:
        for line in timing_lines(analysis.timings):
            click.echo(line, err=True)
    threshold = fail_on
    if threshold:
        try:
            level = Severity.parse(str(threshold)).rank
        except ValueError as exc:
            raise ConfigError(f"[tool.perftune] fail-on: {exc}") from None
        if any(f.severity.rank >= level for f in analysis.findings):
            ctx.exit(1)
