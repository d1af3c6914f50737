"""How busy the runner is: what other processes took from the CPUs before and during launches.

Wall time is the wrong figure to compare on a shared runner: another process that takes a CPU
for a few seconds slows whichever launch it overlaps. The gate measures, around each launch,
the machine's busy CPU time (/proc/stat) and the launch's own CPU time (its process, counted
by the kernel when the gate reaps it); the difference is what *other* processes used. With that
above a threshold (or the hypervisor stealing time, or a load average showing runnable
processes before the gate started) the runner is busy, and the gate decides on the launches'
CPU time per step instead of their wall time (perftune.gate.runner).

Linux only; elsewhere nothing is measured and the gate stays on wall time.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
# Other processes using half a CPU or more on average during a launch: the runner is busy.
BUSY_OTHERS_CPUS = 0.5
# The hypervisor took this share of the CPU time: the VM's neighbours compete too.
BUSY_STEAL = 0.05
# How long the gate watches the machine before its first launch.
PROBE_S = 1.0


@dataclass(frozen=True)
class CpuTimes:
    """A reading of the machine's CPU counters (seconds, summed over CPUs)."""

    at: float  # time.monotonic()
    busy_s: float  # user + nice + system + irq + softirq + steal, all CPUs
    total_s: float
    steal_s: float
    children_s: float  # user + sys of this process's reaped children (the launches)
    cpus: int


def parse_proc_stat(text: str) -> tuple[float, float, float] | None:
    """(busy, total, steal) in clock ticks from /proc/stat's aggregate `cpu` line."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [float(v) for v in fields[1:]]
            values += [0.0] * (8 - len(values))
            user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
            # guest time is already counted in user/nice.
            busy = user + nice + system + irq + softirq + steal
            return busy, busy + idle + iowait, steal
    return None


def process_cpu_s(pids: Iterable[int]) -> float:
    """CPU seconds the processes `pids` used, theirs and their reaped children's (utime, stime,
    cutime, cstime of /proc/PID/stat). A launch forked from a zygote is the zygote's child, not
    ours, so RUSAGE_CHILDREN does not see it: the zygotes' figures count it as our own."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = text.rpartition(")")[2].split()  # after the command name, which may hold spaces
        with contextlib.suppress(IndexError, ValueError):
            total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / ticks


def read_cpu_times(own_pids: Iterable[int] = ()) -> CpuTimes | None:
    """The counters now; None where /proc/stat is not readable (not Linux). `own_pids`:
    processes of ours that are not our children (the zygotes), counted as our own."""
    try:
        parsed = parse_proc_stat(PROC_STAT.read_text())
    except OSError:
        return None
    if parsed is None:
        return None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, total, steal = parsed
    return CpuTimes(at=time.monotonic(), busy_s=busy / ticks, total_s=total / ticks,
                    steal_s=steal / ticks,
                    children_s=usage.ru_utime + usage.ru_stime + process_cpu_s(own_pids),
                    cpus=os.cpu_count() or 1)


@dataclass(frozen=True)
class LaunchLoad:
    """What the rest of the machine did while one launch ran."""

    wall_s: float
    others_cpus: float  # CPUs' worth of time other processes used, on average
    steal: float  # share of the machine's CPU time the hypervisor took
    load_average: float | None  # 1-minute load average at the launch's end

    @property
    def busy(self) -> bool:
        return self.others_cpus >= BUSY_OTHERS_CPUS or self.steal >= BUSY_STEAL

    def to_json(self) -> dict[str, float | None]:
        return {"others_cpus": round(self.others_cpus, 3), "steal": round(self.steal, 4),
                "load_average": self.load_average}


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return None


def launch_load(before: CpuTimes | None, after: CpuTimes | None) -> LaunchLoad | None:
    """Others' CPU use between two readings taken around one launch (and nothing else)."""
    if before is None or after is None:
        return None
    wall = after.at - before.at
    total = after.total_s - before.total_s
    if wall <= 0 or total <= 0:
        return None
    own = max(0.0, after.children_s - before.children_s)
    others = max(0.0, (after.busy_s - before.busy_s) - own) / wall
    return LaunchLoad(wall_s=wall, others_cpus=others,
                      steal=(after.steal_s - before.steal_s) / total,
                      load_average=load_average())


def probe_others(seconds: float = PROBE_S) -> LaunchLoad | None:
    """What other processes use while nothing of ours runs: `seconds` of watching."""
    before = read_cpu_times()
    if before is None:
        return None
    time.sleep(seconds)
    return launch_load(before, read_cpu_times())


@dataclass(frozen=True)
class RunnerLoad:
    """The runner's load over a gate: before its first launch and during each launch."""

    before: LaunchLoad | None
    launches: tuple[LaunchLoad, ...] = ()

    @property
    def measured(self) -> bool:
        return bool(self.launches) or self.before is not None

    @property
    def busy(self) -> bool:
        return any(launch.busy for launch in self.all)

    @property
    def all(self) -> tuple[LaunchLoad, ...]:
        return self.launches if self.before is None else (self.before, *self.launches)

    @property
    def max_others(self) -> float:
        return max((launch.others_cpus for launch in self.launches), default=0.0)

    @property
    def mean_others(self) -> float:
        if not self.launches:
            return 0.0
        return sum(launch.others_cpus for launch in self.launches) / len(self.launches)

    @property
    def max_steal(self) -> float:
        return max((launch.steal for launch in self.launches), default=0.0)

    @property
    def load_averages(self) -> list[float]:
        return [launch.load_average for launch in self.all if launch.load_average is not None]

    def describe(self) -> str:
        """One clause for the verdict: what was measured."""
        parts = []
        if self.before is not None:
            parts.append(f"other processes used {self.before.others_cpus:.2f} CPUs before the "
                         "first launch")
        if self.launches:
            parts.append(f"other processes used {self.mean_others:.2f} CPUs on average during "
                         f"the launches (up to {self.max_others:.2f})")
            if self.max_steal > 0.005:
                parts.append(f"the hypervisor stole up to {self.max_steal:.0%}")
        if self.load_averages:
            parts.append(f"load average up to {max(self.load_averages):.1f} on "
                         f"{os.cpu_count() or 1} CPUs")
        if not parts:
            return "the runner's load could not be measured here"
        return ", ".join(parts)

    def to_json(self) -> dict[str, object]:
        return {"busy": self.busy,
                "before": None if self.before is None else self.before.to_json(),
                "mean_others_cpus": round(self.mean_others, 3),
                "max_others_cpus": round(self.max_others, 3),
                "max_steal": round(self.max_steal, 4),
                "load_averages": [round(v, 2) for v in self.load_averages]}

    def with_launch(self, launch: LaunchLoad | None) -> RunnerLoad:
        if launch is None:
            return self
        return RunnerLoad(self.before, (*self.launches, launch))
