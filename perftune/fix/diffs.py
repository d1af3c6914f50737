"""Unified diffs as data: parse them, and write them so that `git apply` and `patch` take them.

Only what perftune's rewrites produce and users hand-edit is supported: modifications of
existing text files (no renames, no binary patches, no file creation or deletion). Lines keep
their line endings, so a file with CRLF endings round-trips unchanged.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from perftune.errors import UsageError

NO_NEWLINE = "\\ No newline at end of file"
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class DiffError(UsageError):
    """A diff that cannot be read, or that does not fit the file it is meant for."""


@dataclass(frozen=True)
class Hunk:
    """One `@@` block; every line starts with ' ', '-' or '+' and keeps its own line ending."""

    old_start: int
    old_count: int
    new_start: int
    new_count: int
    lines: tuple[str, ...]

    @property
    def old_lines(self) -> tuple[str, ...]:
        """The text this hunk expects to find: context and removed lines."""
        return tuple(line[1:] for line in self.lines if line[0] in " -")

    @property
    def new_lines(self) -> tuple[str, ...]:
        return tuple(line[1:] for line in self.lines if line[0] in " +")


@dataclass(frozen=True)
class FileDiff:
    """The hunks for one file; paths without their a/ b/ prefix."""

    old_path: str
    new_path: str
    hunks: tuple[Hunk, ...]

    @property
    def path(self) -> str:
        return self.new_path


def split_lines(text: str) -> list[str]:
    """Lines with their endings; only '\\n' ends a line (a lone '\\r' or form feed does not)."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def _strip_prefix(raw: str) -> str:
    path = raw.split("\t", 1)[0].strip()
    if path.startswith('"') and path.endswith('"'):
        path = path[1:-1]
    if path.startswith(("a/", "b/")):
        path = path[2:]
    return path


def _parse_hunk(header: str, rows: list[str], at: int, where: str) -> tuple[Hunk, int]:
    match = _HUNK.match(header)
    if match is None:
        raise DiffError(f"{where}: malformed hunk header {header.strip()!r}")
    old_start, new_start = int(match.group(1)), int(match.group(3))
    old_count = int(match.group(2)) if match.group(2) is not None else 1
    new_count = int(match.group(4)) if match.group(4) is not None else 1
    lines: list[str] = []
    old_seen = new_seen = 0
    while old_seen < old_count or new_seen < new_count:
        if at >= len(rows):
            raise DiffError(f"{where}: hunk {header.strip()} ends early")
        row = rows[at]
        at += 1
        if row.startswith("\\"):
            if lines:
                lines[-1] = lines[-1].removesuffix("\n")
            continue
        # Editors and mail clients strip the lone space of an empty context line.
        kind = row[0] if row and row[0] in " -+" else (" " if row in ("", "\n") else "")
        if not kind:
            raise DiffError(f"{where}: unexpected line in hunk {header.strip()}: {row!r}")
        body = row[1:] if row and row[0] in " -+" else row
        lines.append(kind + (body if body.endswith("\n") else body + "\n"))
        old_seen += kind in " -"
        new_seen += kind in " +"
    if old_seen != old_count or new_seen != new_count:
        raise DiffError(f"{where}: hunk {header.strip()} has the wrong number of lines")
    # A "no newline" marker may follow the hunk's last line.
    while at < len(rows) and rows[at].startswith("\\"):
        if lines:
            lines[-1] = lines[-1].removesuffix("\n")
        at += 1
    return Hunk(old_start, old_count, new_start, new_count, tuple(lines)), at


def parse_unified_diff(text: str, where: str = "diff") -> tuple[FileDiff, ...]:
    """The file diffs in `text`; DiffError when it is not a readable unified diff."""
    rows = [row if row.endswith("\n") else row + "\n" for row in split_lines(text)]
    files: list[FileDiff] = []
    at = 0
    while at < len(rows):
        row = rows[at]
        if not row.startswith("--- "):
            if row.startswith("@@"):
                raise DiffError(f"{where}: hunk without a ---/+++ file header")
            at += 1  # `diff --git`, `index …`, commit text: not needed to apply
            continue
        if at + 1 >= len(rows) or not rows[at + 1].startswith("+++ "):
            raise DiffError(f"{where}: '---' line without a '+++' line")
        old_path, new_path = _strip_prefix(row[4:]), _strip_prefix(rows[at + 1][4:])
        if old_path == "/dev/null" or new_path == "/dev/null":
            raise DiffError(f"{where}: creating or deleting files is not supported")
        at += 2
        hunks: list[Hunk] = []
        while at < len(rows) and rows[at].startswith("@@"):
            hunk, at = _parse_hunk(rows[at], rows, at + 1, where)
            hunks.append(hunk)
        if not hunks:
            raise DiffError(f"{where}: no hunks for {new_path}")
        files.append(FileDiff(old_path, new_path, tuple(hunks)))
    if not files:
        raise DiffError(f"{where}: no file changes found")
    return tuple(files)


def render_file_diff(path: str, old: str, new: str, context: int = 3) -> str:
    """A unified diff of one file with a/ b/ paths, '' when the texts are equal."""
    if old == new:
        return ""
    out: list[str] = []
    for row in difflib.unified_diff(split_lines(old), split_lines(new), f"a/{path}", f"b/{path}",
                                    n=context, lineterm="\n"):
        if row.endswith("\n"):
            out.append(row)
        else:
            out.append(row + "\n" + NO_NEWLINE + "\n")
    return "".join(out)


def render_patch(changes: Iterable[tuple[str, str, str]], context: int = 3) -> str:
    """One patch for several files: (path, old text, new text) each, in the order given."""
    return "".join(render_file_diff(path, old, new, context) for path, old, new in changes)


def with_path(diff: FileDiff, path: str) -> FileDiff:
    return FileDiff(path, path, diff.hunks)

