"""`perftune diff RUN_A RUN_B`: what changed between two runs (run directories or trace files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from perftune.cli._options import format_option, out_option, run_dir_for
from perftune.documents import document_data
from perftune.errors import UsageError
from perftune.rundir import DIFF_HTML, RunDir

if TYPE_CHECKING:
    from perftune.report.data import RunView


def load_side(path: Path) -> RunView:
    """A run directory (its trace re-analysed, or its JSON documents), a directory of trace
    files, or a trace file."""
    from perftune.pipeline import analyze_paths
    from perftune.report.data import view_of_analysis, view_of_documents

    if not path.exists():
        raise UsageError(f"{path}: no such run directory or trace file")
    if path.is_dir():
        run = RunDir(path)
        traces = run.traces()
        if traces:
            return view_of_analysis(analyze_paths(traces), path)
        if run.summary.is_file() or run.findings.is_file():
            return view_of_documents(path)
        return view_of_analysis(analyze_paths([path]), None)  # per-rank trace files
    return view_of_analysis(analyze_paths([path]), None)


def _labels(a: Path, b: Path) -> tuple[str, str]:
    la, lb = a.name or str(a), b.name or str(b)
    if la == lb:
        la, lb = str(a), str(b)
    return la, lb


@click.command()
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@format_option
@out_option
@click.option("--fail-on-slower", is_flag=True,
              help="Exit 1 when B's step time is slower than A's beyond the spread of the steps.")
@click.option("--top", type=int, default=8, show_default=True, help="Ops and findings to print.")
@click.pass_context
def diff(ctx: click.Context, run_a: Path, run_b: Path, output_format: str, out_dir: Path | None,
         fail_on_slower: bool, top: int) -> None:
    """Compare RUN_B against RUN_A: step time, breakdown, operators, findings.

    RUN_A and RUN_B are run directories (from `perftune profile` or `analyze --out`) or trace
    files. Writes diff.html and diff.json into --out (default: a new run directory).
    """
    from perftune.report.compare import compare_views
    from perftune.report.console import make_console, print_comparison, progress
    from perftune.report.html import write_diff_html

    err = make_console(stderr=True)
    with progress(f"loading {run_a.name}", err):
        view_a = load_side(run_a)
    with progress(f"loading {run_b.name}", err):
        view_b = load_side(run_b)
    comparison = compare_views(view_a, view_b, _labels(run_a, run_b))
    target = run_dir_for(out_dir, "diff")
    document = comparison.to_document()
    out = RunDir(target)
    with out.lock():
        json_path = out.write_document(document)
        html_path = write_diff_html(comparison, out.file(DIFF_HTML))
    if output_format == "json":
        click.echo(json.dumps(document_data(document), indent=2))
        click.echo(f"wrote {target}", err=True)
    else:
        print_comparison(comparison, [html_path, json_path], top=top)
    if fail_on_slower and comparison.steps.verdict == "slower":
        ctx.exit(1)
