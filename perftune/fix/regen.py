"""Rewrites made again, by perftune's own transformers, on the source as it is now.

A run directory is data from elsewhere: its findings.json may have been edited, and a diff in
it is code that `perftune fix` would run while measuring and then write into the user's file.
So from a run directory only locations are taken — the rule code, the finding's file and line,
and the file and line a recorded diff points at (a DataLoader rewrite sits at the loader, not at
the loop where the time was lost) — and the rewrite itself comes from `perftune.engine.rewrite`
applied to the current text. Not one line of a recorded diff reaches a workspace or a file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from perftune.engine.rewrite import Rewrite, rewrite_source
from perftune.fix.diffs import DiffError, parse_unified_diff


@dataclass(frozen=True)
class Site:
    """Where a rewrite may be: a file as the run dir names it, and a 1-based line."""

    file: str
    line: int


def recorded_sites(diff: str | None) -> Iterator[Site]:
    """The places a recorded diff changes, as locations only: for each hunk, the first line it
    removes or, for a pure insertion, the line above it. Nothing when the diff is unreadable."""
    if not diff:
        return
    try:
        files = parse_unified_diff(diff, "recorded diff")
    except DiffError:
        return
    for file_diff in files:
        for hunk in file_diff.hunks:
            line = hunk.old_start
            for row in hunk.lines:
                if row[0] == "-":
                    break
                if row[0] == "+":
                    line -= 1  # an insertion: the rule's statement is the one above it
                    break
                line += 1
            if line >= 1:
                yield Site(file_diff.path, line)


def regenerate(code: str, text: str, line: int) -> Rewrite | None:
    """The engine's rewrite for rule `code` at `line` of `text`, or None when its transformer
    no longer finds its pattern there (the code changed, or the rule has no rewrite)."""
    try:
        return rewrite_source(code, text, line)
    except Exception:  # a transformer failing on unusual code is "no rewrite", as in analysis
        return None
