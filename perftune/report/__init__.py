"""Renderers only (html, tensorboard, json, markdown, console); no analysis here.

`render_run(run_dir, analysis)` writes the reports of a run directory: report.html and
report.md always, the TensorBoard log directory when asked. `write_run` writes the documents
(perftune.pipeline.write_analysis: summary.json, findings.json) and then the reports, under one
run-directory lock; the commands call it (the analysis never calls up into the renderers).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from perftune.documents import TuningDocument
    from perftune.pipeline import Analysis
    from perftune.report.data import RunView

from perftune.rundir import FINDINGS, META, REPORT_HTML, REPORT_MD, STEPS, SUMMARY, RunDir
from perftune.rundir import TENSORBOARD as TENSORBOARD_DIR


def render_view(view: RunView, *, tensorboard: bool = False) -> list[Path]:
    """Write the reports of a `RunView` into its run directory; return the paths written."""
    from perftune.report.html import write_report_html
    from perftune.report.markdown import write_markdown

    if view.run_dir is None:
        raise ValueError("a RunView needs a run directory to render into")
    written = [write_report_html(view, view.run_dir / REPORT_HTML),
               write_markdown(view, view.run_dir / REPORT_MD)]
    if tensorboard:
        from perftune.report.tensorboard import write_tensorboard_view

        written.append(write_tensorboard_view(view))
    return written


def render_run(run_dir: Path, analysis: Analysis, *, tensorboard: bool = False) -> list[Path]:
    """Write every file report of a run directory; return the paths written.

    The optional sections (steps.json, meta.json, tuning.json, gate.json, fix.json) appear
    when those files are in `run_dir`.
    """
    from perftune.report.data import view_of_analysis

    return render_view(view_of_analysis(analysis, Path(run_dir)), tensorboard=tensorboard)


def write_run(analysis: Analysis, run_dir: Path, *, tensorboard: bool = False) -> list[Path]:
    """summary.json and findings.json, then the reports; the run directory locked throughout."""
    from perftune.pipeline import write_analysis

    with RunDir(run_dir).lock():
        written = write_analysis(analysis, run_dir)
        written.extend(render_run(run_dir, analysis, tensorboard=tensorboard))
    return written


def write_tuning_run(tuning: TuningDocument, run_dir: Path, *, html: bool = True,
                     tensorboard: bool = False) -> list[Path]:
    """tuning.json, then tuning.html and the TensorBoard HParams when asked; the paths written."""
    from perftune.tune.results import write_tuning

    run_dir.mkdir(parents=True, exist_ok=True)
    written = [write_tuning(tuning, run_dir)]
    if html:
        from perftune.report.html import write_tuning_html

        written.append(write_tuning_html(tuning, run_dir))
    if tensorboard:
        from perftune.report.tensorboard import write_tuning_hparams

        written.append(write_tuning_hparams(tuning, run_dir / TENSORBOARD_DIR / "tuning"))
    return written


# The documents of the profile run a fix started from, copied into the fix's run directory so
# that its report shows the findings next to the fixes.
_FIX_COPIED = (META, STEPS, SUMMARY, FINDINGS)


def render_fix_run(run_dir: Path, analysis: Analysis | None, source_run: Path | None) -> list[Path]:
    """report.html/report.md of a `perftune fix` run directory, with its fix section."""
    import shutil  # here: `perftune analyze --format json` imports this package, never copies

    from perftune.report.data import view_of_analysis, view_of_documents

    if source_run is not None and source_run.resolve() != run_dir.resolve():
        for name in _FIX_COPIED:
            if (source_run / name).is_file() and not (run_dir / name).exists():
                shutil.copyfile(source_run / name, run_dir / name)
    view = (view_of_analysis(analysis, run_dir) if analysis is not None
            else view_of_documents(run_dir))
    return render_view(view)


__all__ = ["REPORT_HTML", "REPORT_MD", "TENSORBOARD_DIR", "render_fix_run", "render_run",
           "render_view", "write_run"]
