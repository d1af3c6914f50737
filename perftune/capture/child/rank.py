"""One rank of a multi-rank capture, inside the worker torchrun started (child side).

Every worker runs the ordinary bootstrap; with `distributed` in its child spec it learns who it
is from torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE), tells the parent its pid and arms a
stack dump on STACK_SIGNAL (`announce_rank`), and after the window meets the other ranks at a
barrier before it leaves the process group (`leave_process_group`).
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from perftune.capture.parent.layout import RANK_INFO_FILE, RANK_STACKS_FILE, STACK_SIGNAL
from perftune.capture.parent.results import write_json

# How long the ranks wait for each other at the final barrier before giving up on it.
BARRIER_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RankIdentity:
    """Who this process is in the job, from the variables torchrun sets."""

    rank: int
    local_rank: int
    world_size: int | None
    local_world_size: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RankIdentity:
        env = os.environ if env is None else env

        def number(name: str) -> int | None:
            try:
                return int(env[name])
            except (KeyError, ValueError):
                return None

        rank = number("RANK")
        local_rank = number("LOCAL_RANK")
        return cls(
            rank=rank if rank is not None else (local_rank or 0),
            local_rank=local_rank if local_rank is not None else (rank or 0),
            world_size=number("WORLD_SIZE"),
            local_world_size=number("LOCAL_WORLD_SIZE"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "local_rank": self.local_rank,
            "world_size": self.world_size,
            "local_world_size": self.local_world_size,
        }


# Kept open for faulthandler, which writes to the file descriptor from a signal handler.
_stack_file: IO[str] | None = None


def announce_rank(run_dir: Path, identity: RankIdentity) -> None:
    """Tell the parent this rank's pid, and dump Python stacks when it sends STACK_SIGNAL."""
    global _stack_file
    stacks = run_dir / RANK_STACKS_FILE.format(rank=identity.rank)
    registered = False
    try:
        _stack_file = stacks.open("w", encoding="utf-8")
        # A C-level handler: it runs even while the main thread is blocked inside a collective.
        faulthandler.register(STACK_SIGNAL, file=_stack_file, all_threads=True)
        registered = True
    except (OSError, RuntimeError, ValueError):
        registered = False
    try:
        created: float | None = psutil.Process().create_time()
    except psutil.Error:
        created = None
    write_json(
        run_dir / RANK_INFO_FILE.format(rank=identity.rank),
        {
            **identity.to_json(),
            "pid": os.getpid(),
            "pgid": os.getpgid(0),
            "create_time": created,
            "hostname": socket.gethostname(),
            "stack_dump": registered,
            "started_at": time.time(),
        },
    )


def leave_process_group(timeout_s: float = BARRIER_TIMEOUT_S) -> str | None:
    """Meet the other ranks at a barrier, then destroy the process group; a problem, or None.

    Runs after the script was stopped at the end of the window: no rank closes its connections
    while another still finishes the last collective. The barrier runs on a helper thread so
    that a peer that never arrives costs `timeout_s`, not a hang.
    """
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        return None
    if not (dist.is_available() and dist.is_initialized()):
        return None
    device: int | None = None
    with contextlib.suppress(Exception):
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            device = torch.cuda.current_device()
    problems: list[str] = []
    done = threading.Event()

    def meet() -> None:
        try:
            if device is not None:  # the current device is per thread; NCCL needs this rank's
                torch.cuda.set_device(device)
            dist.barrier()
        except Exception as exc:
            problems.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0:1]}")
        finally:
            done.set()

    threading.Thread(target=meet, name="perftune-final-barrier", daemon=True).start()
    if not done.wait(timeout_s):
        return f"the other ranks did not reach the final barrier within {timeout_s:g} s"
    if problems:
        return f"the final barrier failed ({problems[0]})"
    try:
        dist.destroy_process_group()
    except Exception as exc:
        return f"leaving the process group failed ({type(exc).__name__}: {exc})"
    return None
