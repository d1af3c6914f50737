"""The only way perftune reads a source file that a trace names.

A trace says which file and line an op came from (`train.py(12): step`). That name is data
from wherever the trace was recorded: a shared trace or a CI artifact can name
`/proc/self/environ`, `~/.ssh/id_rsa`, a fifo or a 2 GiB file, and whatever perftune reads ends
up in findings.json, report.md, report.html and the terminal. So a named file is read only when
it belongs to the analysed program:

- it resolves (symlinks followed) to a path inside one of the *source roots*: the recorded
  script folder and working directory of a `perftune profile` run, else the folders the user
  names with `--source-root` (default: the current directory);
- it is a `.py` file, a regular file (no device, fifo, socket or directory: checked with
  `stat` before opening, and opened non-blocking so a fifo swapped in cannot hang), and at
  most MAX_SOURCE_BYTES long (never read, not even partly, when larger).

Anything else is "source not available": the finding keeps its file:line, without text.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MAX_SOURCE_BYTES = 2 * 1024 * 1024
SOURCE_SUFFIX = ".py"


def _stat_ok(st: os.stat_result, max_bytes: int) -> bool:
    return stat.S_ISREG(st.st_mode) and st.st_size <= max_bytes


def read_python_file(path: Path, max_bytes: int = MAX_SOURCE_BYTES) -> str | None:
    """The text of a regular `.py` file of at most `max_bytes`, or None (never raises).

    Does not check roots: callers pass a path that `SourceRoots.resolve` returned."""
    if path.suffix != SOURCE_SUFFIX:
        return None
    try:
        if not _stat_ok(os.stat(path), max_bytes):
            return None
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) \
            | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
    except (OSError, ValueError):
        return None
    try:
        # The file may have been replaced between stat and open: check what was opened.
        if not _stat_ok(os.fstat(fd), max_bytes):
            return None
        chunks = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            return None  # grew past the limit while reading
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _resolved_dirs(paths: Iterable[str | Path]) -> tuple[Path, ...]:
    out: list[Path] = []
    for p in paths:
        try:
            resolved = Path(p).expanduser().resolve()
        except (OSError, RuntimeError, ValueError):
            continue
        out.append(resolved)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class SourceRoots:
    """Where source may be read from (`roots`), and where relative names are looked up
    (`lookup`: e.g. a run's recorded working directory; a file found there is still read only
    when it is inside a root)."""

    roots: tuple[Path, ...]
    lookup: tuple[Path, ...] = ()

    @classmethod
    def of(cls, roots: Iterable[str | Path], lookup: Iterable[str | Path] = ()) -> SourceRoots:
        return cls(roots=_resolved_dirs(roots), lookup=_resolved_dirs(lookup))

    def allows(self, path: Path) -> bool:
        """Whether a resolved path is a `.py` file name inside one of the roots."""
        return path.suffix == SOURCE_SUFFIX and any(path.is_relative_to(r) for r in self.roots)

    def resolve(self, file: str | None) -> Path | None:
        """The real path of a file named in a trace when it may be read, else None."""
        if not file or file.startswith("<") or "\x00" in file or not self.roots:
            return None
        named = Path(file)
        if named.suffix != SOURCE_SUFFIX:
            return None
        candidates = [named] if named.is_absolute() else \
            [folder / named for folder in dict.fromkeys((*self.lookup, *self.roots))]
        for candidate in candidates:
            try:
                real = candidate.resolve(strict=True)
                if self.allows(real) and _stat_ok(os.stat(real), MAX_SOURCE_BYTES):
                    return real
            except (OSError, RuntimeError, ValueError):
                continue
        return None

    def read(self, file: str | None) -> str | None:
        """The text of a file named in a trace, or None when it may not or cannot be read."""
        path = self.resolve(file)
        return read_python_file(path) if path is not None else None


def default_roots() -> SourceRoots:
    """Without roots given: the current directory only."""
    return SourceRoots.of([Path.cwd()])
