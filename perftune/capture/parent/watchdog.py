"""The watchdog of a multi-rank job (parent side): worker process groups, a rank failure the
others do not follow, and where every rank was when the job had to be stopped.

Each rank announces itself in the run directory (RANK_INFO_FILE: pid, process group, whether it
can dump its stacks). torchrun tears the job down when a rank fails; `RankWatch` stops a job
whose failed rank the others do not follow, and before a stop asks every live rank for its
Python stacks (faulthandler, on STACK_SIGNAL); `stack_site` reads such a dump: a rank stuck in
its own code is the one that hung, the ranks inside torch are waiting for it in a collective.
Workers live in sessions of their own, so their process groups are killed by name rather than
with torchrun's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from perftune.capture.parent.layout import (
    RANK_CHILD_RESULT_FILE,
    RANK_INFO_FILE,
    RANK_STACKS_FILE,
    STACK_SIGNAL,
)

# After a rank failed, how long the others get to follow (torchrun stops them) before perftune
# stops the job itself.
RANK_FAILURE_GRACE_S = 20.0
# How long the watchdog waits for the ranks' stack dumps.
STACK_DUMP_WAIT_S = 2.0
FAILED_STATUSES = ("crashed", "oom")


@dataclass(frozen=True)
class StackSite:
    """Where a rank's main thread was when the watchdog asked (from its faulthandler dump)."""

    file: str  # the innermost frame
    line: int
    function: str
    in_torch: bool  # the innermost frame is in torch: waiting in a collective (or computing)
    user_file: str | None = None  # the innermost frame of the user's own code
    user_line: int | None = None
    user_function: str | None = None

    def describe(self) -> str:
        inner = f"{self.file}:{self.line} in {self.function}"
        if self.user_file is None:
            return inner
        user = f"{self.user_file}:{self.user_line} in {self.user_function}"
        if self.user_file == self.file and self.user_line == self.line:
            return user
        return f"{user} (inside {Path(self.file).name}:{self.line} in {self.function})"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "in_torch": self.in_torch,
            "user_file": self.user_file,
            "user_line": self.user_line,
            "user_function": self.user_function,
        }



# ---------------------------------------------------------------------------- stacks
_THREAD_HEADER = re.compile(r"^(Current thread|Thread) (0x[0-9a-fA-F]+)")
_FRAME = re.compile(r'^\s+File "(?P<file>.*)", line (?P<line>\d+) in (?P<function>.*)$')
_LIBRARY_PARTS = ("site-packages", "dist-packages")


def _stack_blocks(text: str) -> list[list[tuple[str, int, str]]]:
    """faulthandler's dump as one list of (file, line, function) per thread, innermost first."""
    blocks: list[list[tuple[str, int, str]]] = []
    current: list[tuple[str, int, str]] | None = None
    for line in text.splitlines():
        if _THREAD_HEADER.match(line):
            current = []
            blocks.append(current)
            continue
        frame = _FRAME.match(line)
        if frame is not None and current is not None:
            current.append((frame["file"], int(frame["line"]), frame["function"].strip()))
    return blocks


def _torch_dir() -> str | None:
    """torch's package folder, found without importing torch (the parent stays torch-free)."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.realpath(next(iter(spec.submodule_search_locations)))


def _in_torch(path: str, torch_dir: str | None) -> bool:
    if torch_dir is not None:
        for folder, file in ((torch_dir, path), (os.path.realpath(torch_dir), os.path.realpath(path))):
            if file.startswith(folder + os.sep):
                return True
    parts = Path(path).parts
    return any(a in _LIBRARY_PARTS and b == "torch" for a, b in itertools.pairwise(parts))


def _is_library(path: str) -> bool:
    """Installed packages, the standard library and perftune's capture: not the user's code."""
    parts = Path(path).parts
    if any(part in _LIBRARY_PARTS for part in parts):
        return True
    if "perftune" in parts and "capture" in parts:
        return True
    stdlib = os.path.dirname(os.__file__)
    return path.startswith(stdlib + os.sep) or path.startswith("<frozen ")


def stack_site(dump: str, torch_dir: str | None = None) -> StackSite | None:
    """Where the main thread of a faulthandler dump is: the thread that runs perftune's
    bootstrap (the script runs inside it), else the last thread dumped."""
    blocks = [block for block in _stack_blocks(dump) if block]
    if not blocks:
        return None
    main = next(
        (b for b in blocks if any("perftune/capture/child/bootstrap" in f.replace("\\", "/")
                                  for f, _, _ in b)),
        blocks[-1],
    )
    file, line, function = main[0]
    user = next(((f, n, fn) for f, n, fn in main if not _is_library(f)), None)
    return StackSite(
        file=file,
        line=line,
        function=function,
        in_torch=_in_torch(file, torch_dir if torch_dir is not None else _torch_dir()),
        user_file=user[0] if user else None,
        user_line=user[1] if user else None,
        user_function=user[2] if user else None,
    )


# ---------------------------------------------------------------------------- the watchdog
@dataclass(frozen=True)
class _RankInfo:
    rank: int
    local_rank: int | None
    pid: int
    pgid: int
    create_time: float | None
    hostname: str | None
    stack_dump: bool


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def rank_of_file(path: Path, prefix: str) -> int | None:
    match = re.match(re.escape(prefix) + r"(\d+)", path.name)
    return int(match.group(1)) if match else None


def rank_infos(run_dir: Path) -> dict[int, _RankInfo]:
    infos: dict[int, _RankInfo] = {}
    for path in run_dir.glob(RANK_INFO_FILE.format(rank="*")):
        data = read_json(path)
        rank = rank_of_file(path, RANK_INFO_FILE.split("{", 1)[0])
        if data is None or rank is None:
            continue
        try:
            infos[rank] = _RankInfo(
                rank=rank,
                local_rank=data.get("local_rank"),
                pid=int(data["pid"]),
                pgid=int(data.get("pgid") or data["pid"]),
                create_time=data.get("create_time"),
                hostname=data.get("hostname"),
                stack_dump=bool(data.get("stack_dump")),
            )
        except (KeyError, TypeError, ValueError):
            continue
    return infos


def _alive(info: _RankInfo) -> bool:
    """Whether the rank's process still runs (and its pid was not reused since)."""
    try:
        proc = psutil.Process(info.pid)
        if info.create_time is not None and abs(proc.create_time() - info.create_time) > 0.5:
            return False
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class RankWatch:
    """The job's watchdog: worker process groups, a rank failure nobody follows, stack dumps."""

    def __init__(self, run_dir: Path, grace_s: float = RANK_FAILURE_GRACE_S) -> None:
        self.run_dir = run_dir
        self.grace_s = grace_s
        self.failure_seen_at: float | None = None
        self.dumped = False
        self.stopped_at: float | None = None  # wall clock when perftune began to stop the job

    def groups(self) -> Iterable[int]:
        here = os.getpgid(0)
        return [info.pgid for info in rank_infos(self.run_dir).values()
                if info.pgid not in (here, 0) and _alive(info)]

    def poll(self) -> str | None:
        if self.failure_seen_at is None:
            for path in self.run_dir.glob(RANK_CHILD_RESULT_FILE.format(rank="*")):
                data = read_json(path)
                if data is not None and data.get("status") in FAILED_STATUSES:
                    self.failure_seen_at = time.monotonic()
                    break
            return None
        if time.monotonic() - self.failure_seen_at < self.grace_s:
            return None
        if any(_alive(info) for info in rank_infos(self.run_dir).values()):
            return (f"a rank failed and the others were still running {self.grace_s:g} s "
                    "later; perftune stopped them")
        return None

    def before_stop(self) -> None:
        """Ask every live rank for its Python stacks, and wait a little for them."""
        if self.dumped:
            return
        self.dumped = True
        self.stopped_at = time.time()
        asked = []
        for info in rank_infos(self.run_dir).values():
            if info.stack_dump and _alive(info):
                with contextlib.suppress(OSError):
                    os.kill(info.pid, STACK_SIGNAL)
                    asked.append(info.rank)
        deadline = time.monotonic() + STACK_DUMP_WAIT_S
        while asked and time.monotonic() < deadline:
            if all(self._stack_text(rank) for rank in asked):
                time.sleep(0.1)  # let the last thread's frames land
                return
            time.sleep(0.05)

    def _stack_text(self, rank: int) -> str:
        try:
            return (self.run_dir / RANK_STACKS_FILE.format(rank=rank)).read_text(
                encoding="utf-8", errors="replace"
            )
        except OSError:
            return ""

    def stack(self, rank: int) -> StackSite | None:
        return stack_site(self._stack_text(rank)) if self.dumped else None
