"""`perftune report RUN_DIR`: re-render every report of a run directory without re-running it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from perftune.cli._options import config_default, format_option, source_root_option
from perftune.documents import FindingsDocument, document_data
from perftune.errors import UsageError
from perftune.rundir import FINDINGS, SUMMARY, RunDir

if TYPE_CHECKING:
    from perftune.report.data import RunView

def _codes(values: tuple[str, ...], key: str) -> list[str]:
    out = [v.strip() for raw in values for v in raw.split(",") if v.strip()]
    if not out:
        configured = config_default(key, [])
        out = [configured] if isinstance(configured, str) else list(configured)
    return out


def run_traces(run_dir: Path) -> list[Path]:
    """The trace file(s) of a run directory (`RunDir.traces`)."""
    return RunDir(run_dir).traces()


def recorded_traces(run_dir: Path) -> list[Path]:
    """The trace files summary.json names (`perftune analyze --out` does not copy them), when
    they are all still where they were."""
    summary = RunDir(run_dir).read_summary()
    files = [Path(f) for f in (summary.files if summary is not None else [])]
    return files if files and all(f.is_file() for f in files) else []


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@format_option
@click.option("--tensorboard/--no-tensorboard", "tensorboard", default=False,
              help="Also write RUN_DIR/tensorboard/ (default: [tool.perftune] tensorboard, "
              "else no).")
@click.option("--select", multiple=True, help="Only these rule codes or prefixes (PFT2,PFT401).")
@click.option("--ignore", multiple=True, help="Skip these rule codes or prefixes.")
@click.option("--preview", is_flag=True, help="Also run rules in preview.")
@click.option("--top", type=int, default=10, show_default=True, help="Findings to print.")
@source_root_option
def report(run_dir: Path, output_format: str, tensorboard: bool, select: tuple[str, ...],
           ignore: tuple[str, ...], preview: bool, top: int, source_roots: tuple[Path, ...]) -> None:
    """Re-render report.html, report.md, summary.json and findings.json of RUN_DIR.

    The trace in RUN_DIR is analysed again (with this perftune's rules and the options given);
    a run directory without a trace is rendered from its summary.json and findings.json.
    The script is not run again. Works without torch installed.
    """
    from perftune.report.console import print_run

    if not run_dir.exists():
        raise UsageError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is a file; `perftune report` takes a run directory "
                         f"(for a trace file: perftune analyze {run_dir} --out DIR)")
    # Held from reading to the last file written: re-rendering the run is legitimate, a second
    # perftune process writing into it at the same time is not.
    with RunDir(run_dir).lock():
        document, view, written = _render(run_dir, tensorboard, select, ignore, preview,
                                          source_roots)
    from perftune.report.console import source_hint_lines, warning_lines

    for warning in [*warning_lines(view.summary), *source_hint_lines(view.findings)]:
        click.echo(warning, err=True)  # events the loader skipped; source it did not read
    if output_format == "json":
        click.echo(json.dumps(document_data(document), indent=2, default=str))
        for path in written:
            click.echo(f"wrote {path}", err=True)
    else:
        print_run(view, written, top=top)


def _render(run_dir: Path, tensorboard: bool, select: tuple[str, ...], ignore: tuple[str, ...],
            preview: bool, source_roots: tuple[Path, ...]
            ) -> tuple[FindingsDocument, RunView, list[Path]]:
    from perftune.pipeline import RuleSelection, analyze_paths, findings_document, write_analysis
    from perftune.report import render_view
    from perftune.report.console import make_console, progress
    from perftune.report.data import view_of_analysis, view_of_documents

    run = RunDir(run_dir)
    traces = run.traces() or recorded_traces(run_dir)
    err = make_console(stderr=True)
    if traces:
        options = config_default("rules", {})
        if not isinstance(options, dict):
            raise UsageError("[tool.perftune.rules] must be a table of rule codes")
        rules = RuleSelection(select=_codes(select, "select"), ignore=_codes(ignore, "ignore"),
                              preview=preview,
                              options={k.upper(): v for k, v in options.items()})
        with progress(f"analysing {traces[0].name}", err):
            analysis = analyze_paths(traces, rules, source_roots or None)
        with progress("rendering reports", err):
            written = write_analysis(analysis, run_dir)
            view = view_of_analysis(analysis, run_dir)
            written.extend(render_view(view, tensorboard=tensorboard))
        document = findings_document(analysis.summary, analysis.findings)
    elif run.file(SUMMARY).is_file() or run.file(FINDINGS).is_file():
        view = view_of_documents(run_dir, source_roots or (Path.cwd(),))
        if select or ignore:
            # Without a trace the rules cannot run again; narrow the recorded findings instead.
            picked = tuple(f for f in view.findings
                           if (not select or any(f.code.startswith(s.upper()) for s in _codes(select, "select")))
                           and not any(f.code.startswith(i.upper()) for i in _codes(ignore, "ignore")))
            from dataclasses import replace

            view = replace(view, findings=picked,
                           notes=(*view.notes, "no trace in this run directory: findings were "
                                  "filtered from findings.json, not recomputed"))
        with progress("rendering reports", err):
            written = render_view(view, tensorboard=tensorboard)
        assert view.summary is not None  # summary.json, or findings.json's copy of it
        document = findings_document(view.summary, view.findings)
    else:
        raise UsageError(f"{run_dir} holds no trace.json.gz, summary.json or findings.json: "
                         "not a perftune run directory")
    return document, view, written
