"""A child that died without handing its results over: what it left, and what killed it.

The child streams steps.json while the script runs (CaptureSession.stream), so a script killed
outright (SIGKILL, the OOM killer) still leaves the steps measured before. Whether the kernel's
out-of-memory killer did it is read from the kernel's own counters, never guessed from the
signal: a SIGKILL is also what `kill -9`, a timeout and a cluster scheduler send.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _counter(path: Path, key: str) -> int | None:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return None


def _cgroup_oom_kills() -> int | None:
    """OOM kills in this process's memory cgroup and below (cgroup v2, or v1's memory controller)."""
    try:
        lines = Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: memory.events counts the whole subtree
            count = _counter(_CGROUP_ROOT / path.lstrip("/") / "memory.events", "oom_kill")
        elif "memory" in controllers.split(","):
            count = _counter(
                _CGROUP_ROOT / "memory" / path.lstrip("/") / "memory.oom_control", "oom_kill"
            )
        else:
            continue
        if count is not None:
            return count
    return None


def oom_kill_counts() -> tuple[int | None, int | None]:
    """The kernel's OOM-kill counters: this cgroup's, and the whole system's (/proc/vmstat)."""
    return _cgroup_oom_kills(), _counter(Path("/proc/vmstat"), "oom_kill")


def oom_killed_since(before: tuple[int | None, int | None]) -> bool:
    """Whether the kernel's OOM killer killed a process since `before` was read."""
    after = oom_kill_counts()
    for old, new in zip(before, after, strict=True):
        if old is not None and new is not None:
            # The cgroup's counter when there is one: the system's also counts other users.
            return new > old
    return False


def describe_exit(returncode: int, oom_killed: bool) -> str:
    """Why a child that reported nothing ended (the error of its result)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if oom_killed and name == "SIGKILL":
            return "the script's process was killed by the kernel's out-of-memory killer (SIGKILL)"
        return f"the script's process was killed by {name}"
    return f"the script's process ended with exit code {returncode} without reporting its steps"


def streamed_result(steps_path: Path, returncode: int, oom_killed: bool) -> dict[str, Any]:
    """A child result built from the steps.json the child streamed before it died."""
    streamed: Mapping[str, Any] = {}
    try:
        data = json.loads(steps_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("steps"), list):
        streamed = data
    killed_by_oom = oom_killed and returncode == -signal.SIGKILL
    result: dict[str, Any] = {
        "status": "oom" if killed_by_oom else "crashed",
        "error": describe_exit(returncode, oom_killed),
        "steps": list(streamed.get("steps", [])),
        "notes": [],
    }
    for key in ("step_source", "memory_kind", "declared_knobs", "profiler", "peak_memory_bytes"):
        if key in streamed:
            result[key] = streamed[key]
    if result["steps"]:
        count = len(result["steps"])
        result["notes"].append(
            f"the script's process died before perftune could write its results; the "
            f"{count} step{'s' if count != 1 else ''} saved while it ran are kept"
        )
    return result
