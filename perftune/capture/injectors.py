"""Knob injectors applied inside the child process (precision, checkpointing, batch size).

Filled in by the tuner work (issue 6); `install` is called by the capture bootstrap before the
user's script runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def install(knobs: Mapping[str, Any]) -> list[str]:
    """Apply the injected knobs; return the names of the knobs applied."""
    return []
