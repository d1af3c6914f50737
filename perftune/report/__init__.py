"""Renderers only (html, tensorboard, json, markdown, console); no analysis here.

`render_run(run_dir, analysis)` writes the reports of a run directory: report.html and
report.md always, the TensorBoard log directory when asked. summary.json and findings.json are
written by perftune.pipeline.write_analysis before it calls this.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from perftune.pipeline import Analysis
    from perftune.report.data import RunView

from perftune.rundir import REPORT_HTML, REPORT_MD
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


__all__ = ["REPORT_HTML", "REPORT_MD", "TENSORBOARD_DIR", "render_run", "render_view"]
