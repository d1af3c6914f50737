"""Applying diffs to text: verify every hunk against the file, then splice in the changes.

Hunks are located where their header says, or — when lines were added or removed above them
since the diff was made — at the one other place their full context matches (what `git apply`
calls an offset). Anything else is a stale diff and is refused: perftune never applies a change
with fuzz, because a rewrite measured on one text must be the rewrite written to the user's file.

Several diffs against the same original combine when their changed lines do not overlap; their
context lines may (two rewrites two lines apart each show the other's line as context).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from perftune.fix.diffs import DiffError, FileDiff, Hunk, split_lines


class StaleDiffError(DiffError):
    """The file no longer holds the text the diff was made against."""


@dataclass(frozen=True)
class Change:
    """Replace `old` lines at 0-based line `start` of the original by `new` lines."""

    start: int
    old: tuple[str, ...]
    new: tuple[str, ...]

    @property
    def end(self) -> int:
        return self.start + len(self.old)

    def overlaps(self, other: Change) -> bool:
        """Whether the two changes cannot both be applied to one original.

        Two insertions at one place have no defined order, and an insertion inside a removed
        range has nothing to attach to; changes that only touch (one ends where the next
        starts) are fine.
        """
        if self == other:
            return False
        if self.start == other.start:
            return True
        if not self.old:
            return other.start < self.start < other.end
        if not other.old:
            return self.start < other.start < self.end
        return self.start < other.end and other.start < self.end


def _find(lines: Sequence[str], wanted: Sequence[str], expected: int) -> int | None:
    """Where `wanted` occurs: at `expected` if it does there, else its only other place."""
    size = len(wanted)
    if 0 <= expected <= len(lines) - size and list(lines[expected:expected + size]) == list(wanted):
        return expected
    if size == 0:
        return None
    hits = [k for k in range(len(lines) - size + 1) if list(lines[k:k + size]) == list(wanted)]
    return hits[0] if len(hits) == 1 else None


def _hunk_changes(hunk: Hunk, at: int) -> list[Change]:
    changes: list[Change] = []
    line = at
    removed: list[str] = []
    added: list[str] = []
    start = at
    for row in (*hunk.lines, " "):  # a sentinel context row flushes the last change
        kind, text = row[0], row[1:]
        if kind == " ":
            if removed or added:
                changes.append(Change(start, tuple(removed), tuple(added)))
                removed, added = [], []
            line += 1
            start = line
        elif kind == "-":
            removed.append(text)
            line += 1
        else:
            added.append(text)
    return changes


def locate(diff: FileDiff, text: str, where: str | None = None) -> tuple[Change, ...]:
    """The changes `diff` makes to `text`, each checked against the text; StaleDiffError when a
    hunk's context or removed lines are not there (or are there more than once after a shift)."""
    lines = split_lines(text)
    name = where or diff.path
    changes: list[Change] = []
    for hunk in diff.hunks:
        expected = hunk.old_start - 1 if hunk.old_count else hunk.old_start
        at = _find(lines, hunk.old_lines, expected)
        if at is None:
            raise StaleDiffError(
                f"{name}: the diff does not match the file at line {hunk.old_start} (the file "
                f"changed since the diff was made); refusing to apply it")
        changes.extend(_hunk_changes(hunk, at))
    return tuple(changes)


def conflicts(first: Iterable[Change], second: Iterable[Change]) -> bool:
    later = list(second)
    return any(a.overlaps(b) for a in first for b in later)


def splice(text: str, changes: Iterable[Change]) -> str:
    """`text` with every change applied (changes are against `text`, so they must not overlap)."""
    unique = sorted(set(changes), key=lambda c: (c.start, len(c.old)))
    for k, change in enumerate(unique):
        for other in unique[k + 1:]:
            if change.overlaps(other):
                raise DiffError(f"changes at lines {change.start + 1} and {other.start + 1} overlap")
    lines = split_lines(text)
    for change in reversed(unique):
        if list(lines[change.start:change.end]) != list(change.old):
            raise StaleDiffError(f"line {change.start + 1} does not hold the text to replace")
        lines[change.start:change.end] = change.new
    return "".join(lines)


def apply_diff(diff: FileDiff, text: str, where: str | None = None) -> str:
    """`text` with `diff` applied; StaleDiffError when the diff does not fit it."""
    return splice(text, locate(diff, text, where))
