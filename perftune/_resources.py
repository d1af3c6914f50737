"""Locate the data folders `rules/` and `reports/`.

In a wheel they are installed as `perftune/_data/rules` and `perftune/_data/reports` (hatch
force-include); in a checkout or an editable install they sit beside the package.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    installed = _PACKAGE_DIR / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent / name


def rules_dir() -> Path:
    """The rule catalogue: one folder per rule (`pft201_sync_in_step/rule.py`, ...)."""
    return _data_dir("rules")


def reports_dir() -> Path:
    """Templates and static assets of the HTML report."""
    return _data_dir("reports")


def samples_dir() -> Path:
    """Sample training scripts (only in a checkout or an sdist)."""
    return _PACKAGE_DIR.parent / "samples"
