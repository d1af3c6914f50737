"""How many CPUs this process may use, and how many of them the other processes leave idle:
the forked workers (the loader's, perftune.trace.load; the rules', perftune.engine.split) pay
only with a core to run on, which the number of runnable threads tells; and the pipe they hand
their results back through."""

from __future__ import annotations

import contextlib
import os
import sys


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def runnable_now() -> int | None:
    """Threads runnable at this instant, this one included (/proc/loadavg's fourth field);
    None where the system does not say."""
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            return int(fh.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def spare_cpus(cpus: int | None = None) -> float:
    """CPUs the other processes leave idle now: the threads runnable at this instant (this one
    included), else the 1-minute load average; unknown: all but this one.

    The instant count, not the load average: the average lags by a minute, so a run right after
    another (a loop over trace files, a benchmark) would find the previous run's own workers in
    it and decline a core that is idle; a busy machine (a test suite on every core) has
    runnable threads beside this one at almost any instant."""
    cpus = usable_cpus() if cpus is None else cpus
    busy: float | None = runnable_now()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            return float(cpus - 1)
    return cpus - max(busy, 1.0)


def forks_safely() -> bool:
    """Whether this process may fork a worker that runs Python: no other thread is running
    (a Dask worker runs its tasks in threads, whose locks a forked child could inherit held)."""
    import threading

    return threading.active_count() == 1


# A forked worker pays only with a core to run on: with every core busy (threads runnable beside
# this one) it costs wall time (54 MB trace under load 4.3 on 2 cores: 0.93 s split against
# 0.72 s in one process, benchmarks/analyze_end_to_end.md).
IDLE_CPU_NEEDED = 0.5


# A worker's hand-back (the loader's columns: ~13 MB for the 54 MB trace) through a pipe of the
# default 64 KB wakes the writer once per 64 KB after the reader starts reading: 0.015-0.02 s
# on that trace, spent after this process's own half. 1 MB is the size an unprivileged process
# may set (/proc/sys/fs/pipe-max-size's default).
WORKER_PIPE_BYTES = 1 << 20


def worker_pipe() -> tuple[int, int]:
    """A pipe (read end, write end) for a forked worker's hand-back, widened to
    WORKER_PIPE_BYTES where the platform allows it (Linux); the default size elsewhere, or
    when the system refuses (a lower pipe-max-size, the user's pipe quota spent)."""
    read_fd, write_fd = os.pipe()
    if sys.platform.startswith("linux"):
        import fcntl

        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, WORKER_PIPE_BYTES)
    return read_fd, write_fd


def worker_has_a_core() -> bool:
    """Whether a forked worker would run on a core of its own now: this process may fork one
    (forks_safely), has two CPUs or more, and the others leave half a CPU idle."""
    if not forks_safely():
        return False
    cpus = usable_cpus()
    return cpus >= 2 and spare_cpus(cpus) >= IDLE_CPU_NEEDED


__all__ = ["forks_safely", "runnable_now", "spare_cpus", "usable_cpus", "worker_has_a_core",
           "worker_pipe"]
