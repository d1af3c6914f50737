"""perftune: find out why a PyTorch training step is slow, and make it fast."""

from __future__ import annotations

from typing import TYPE_CHECKING

from perftune._runtime import knob, step
from perftune._version import __version__

if TYPE_CHECKING:
    from pathlib import Path

    from perftune.pipeline import Results


def analyze(path: str | Path) -> Results:
    """Analyse a trace file or a run directory in Python (a notebook): the typed summary and
    findings, and DataFrames of phases, modules, operators and findings
    (`perftune.pipeline.Results`). Imports the analysis on first call, not with perftune."""
    from perftune.pipeline import analyze as run

    return run(path)


__all__ = ["__version__", "analyze", "knob", "step"]
