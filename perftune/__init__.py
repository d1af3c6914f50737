"""perftune: find out why a PyTorch training step is slow, and make it fast."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from perftune._runtime import knob, step
from perftune._version import __version__


def analyze(path: str | Path) -> Any:
    """Analyse a trace file or a run directory in Python (a notebook): the typed summary and
    findings, and DataFrames of phases, modules, operators and findings
    (`perftune.pipeline.Results`). Imports the analysis on first call, not with perftune (and
    by name, so that the capture, which imports perftune, reaches no analysis code)."""
    pipeline = importlib.import_module("perftune.pipeline")
    return pipeline.analyze(path)


__all__ = ["__version__", "analyze", "knob", "step"]
