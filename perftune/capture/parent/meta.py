"""meta.json: where and how a capture ran (host facts here; torch facts come from the child)."""

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


def torch_meta() -> dict[str, Any]:
    """Facts only the child knows: torch and device versions and names.

    Device names are read only when the script itself initialised CUDA, so a CPU script on a GPU
    machine never gets a CUDA context from perftune.
    """
    import torch

    meta: dict[str, Any] = {
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "hip_version": getattr(torch.version, "hip", None),
        "cuda_available": False,
        "devices": [],
        "torch_threads": torch.get_num_threads(),
    }
    try:
        meta["cuda_available"] = bool(torch.cuda.is_available())
        if meta["cuda_available"] and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            meta["devices"] = [
                torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())
            ]
            meta["cudnn_version"] = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
    except Exception as exc:  # a broken driver must not lose the run's results
        meta["device_error"] = f"{type(exc).__name__}: {exc}"
    if not meta["devices"]:
        meta["devices"] = [f"cpu: {cpu_name()}"]
    return meta
