"""Renderers only (html, tensorboard, json, markdown, console); no analysis here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from perftune.pipeline import Analysis


def render_run(run_dir: Path, analysis: Analysis) -> list[Path]:
    """Write every file report of a run directory; return the paths written."""
    return []
