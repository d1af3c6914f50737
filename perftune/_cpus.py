"""How many CPUs this process may use, and how many of them the other processes leave idle:
the forked workers (the loader's, perftune.trace.load; the rules', perftune.engine.split) pay
only with a core to run on."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def spare_cpus(cpus: int | None = None) -> float:
    """CPUs the other processes leave idle, by the 1-minute load average (which counts this
    process: at least one CPU is taken); unknown load: all but this one."""
    cpus = usable_cpus() if cpus is None else cpus
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


__all__ = ["forks_safely", "spare_cpus", "usable_cpus"]
