"""Writing files so that a reader never sees half of one, and disk errors read as one line.

Every document perftune writes goes through :func:`write_bytes_atomic`: the bytes go to a
temporary file in the same directory, are flushed to disk, and the file is renamed over the
target. A crash, a full disk or a concurrent reader therefore sees the old file or the new one,
never a mixture, and no temporary file is left behind on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from perftune.errors import PerftuneError


class OutputError(PerftuneError):
    """A file perftune must write cannot be written (full disk, read-only directory …)."""

    exit_code = 2

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"cannot write {self.path}: {problem}")


def _describe(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> Path:
    """Replace ``path`` with ``data`` atomically; raise :class:`OutputError` on any OS error."""
    return write_chunks_atomic(path, (data,), fsync=fsync)


def write_chunks_atomic(path: str | os.PathLike[str], chunks: Iterable[bytes], *,
                        fsync: bool = True) -> Path:
    """`write_bytes_atomic` of the chunks one after another, never joined in memory (a page
    that inlines a 4.6 MB script need not exist as one string, nor as its bytes, at once)."""
    import tempfile  # here: `perftune analyze --format json` writes no file

    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                        dir=target.parent)
    except OSError as exc:
        raise OutputError(target, _describe(exc)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644 & ~_umask())
        os.replace(tmp_name, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise OutputError(target, _describe(exc)) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str, *, fsync: bool = True) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, indent: int = 2,
                      fsync: bool = True) -> Path:
    """JSON (``default=str`` for paths and enums) written atomically, ending in a newline."""
    text = json.dumps(data, indent=indent, default=str) + "\n"
    return write_text_atomic(path, text, fsync=fsync)


def _umask() -> int:
    # Read, not set-and-restore, where the kernel tells it: os.umask(0) would leave the whole
    # process at umask 0 for a moment, and the capture writes steps.json while the script's
    # own threads may be creating files.
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    current = os.umask(0)
    os.umask(current)
    return current
