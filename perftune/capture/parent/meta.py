"""meta.json: where and how a capture ran (host facts here; torch facts come from the child,
perftune/capture/child/meta.py)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perftune._version import __version__
from perftune.redact import redact_argv


def git_state(folder: Path) -> dict[str, Any]:
    """Commit and dirty flag of the git repository holding `folder` (nulls outside a repo)."""
    state: dict[str, Any] = {"git_commit": None, "git_dirty": None}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit:
        state["git_commit"] = commit
        # Untracked files do not change what runs; edits to tracked files do.
        status = git("status", "--porcelain", "--untracked-files=no")
        state["git_dirty"] = None if status is None else bool(status)
    return state


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_meta(
    *, command: list[str], argv: list[str], cwd: Path, script: Path | None, module: str | None
) -> dict[str, Any]:
    """Facts the parent knows before the child starts."""
    folder = script.parent if script is not None else cwd
    return {
        # meta.json is shared with the results: credentials in the arguments stay out of it.
        "command": redact_argv(command),
        "argv": redact_argv(argv),
        "cwd": str(cwd),
        "script": str(script) if script is not None else None,
        "module": module,
        **git_state(folder),
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "perftune_version": __version__,
        "start_time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
