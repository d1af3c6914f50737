"""Collective communication on the device timeline: how much of it compute hides, rank skew.

NCCL/RCCL kernels run on their own streams. While compute kernels run on another stream at
the same time, communication costs nothing extra; the part of it no compute kernel overlaps is
*exposed* and adds to the step. Across ranks, synchronous collectives make every rank wait for
the slowest: the wait shows up as longer collective kernels on the fast ranks.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from perftune.trace import categories as C
from perftune.trace.groups import stable_order
from perftune.trace.metrics import device_event_steps
from perftune.trace.model import NO_ID, Trace
from perftune.trace.tables import Tables


# ---------------------------------------------------------------------------- intervals
def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, disjoint intervals covering the same time as the input."""
    if len(starts) == 0:
        return np.empty(0), np.empty(0)
    order = np.argsort(starts, kind="stable")
    s = np.asarray(starts, dtype=np.float64)[order]
    e = np.maximum.accumulate(np.asarray(ends, dtype=np.float64)[order])
    new = np.empty(len(s), dtype=bool)
    new[0] = True
    new[1:] = s[1:] > e[:-1]
    run = np.cumsum(new) - 1
    out_s = s[new]
    out_e = np.zeros(len(out_s))
    np.maximum.at(out_e, run, e)
    return out_s, out_e


def covered(ms: np.ndarray, me: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each [start, end): how much of it the merged intervals (ms, me) cover."""
    starts = np.asarray(starts, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.float64)
    if len(ms) == 0 or len(starts) == 0:
        return np.zeros(len(starts))
    cum = np.concatenate([[0.0], np.cumsum(me - ms)])

    def before(t: np.ndarray) -> np.ndarray:
        # covered length in (-inf, t)
        k = np.searchsorted(ms, t, side="right")  # intervals starting at or before t
        full = cum[np.maximum(k - 1, 0)]
        last = np.where(k > 0, np.clip(t - ms[np.maximum(k - 1, 0)], 0.0,
                                       (me - ms)[np.maximum(k - 1, 0)]), 0.0)
        return np.where(k > 0, full + last, 0.0)

    out: np.ndarray = np.maximum(0.0, before(ends) - before(starts))
    return out


# ---------------------------------------------------------------------------- collectives
_KIND = (
    ("all_reduce", re.compile(r"all_?reduce", re.IGNORECASE)),
    ("all_gather", re.compile(r"all_?gather", re.IGNORECASE)),
    ("reduce_scatter", re.compile(r"reduce_?scatter", re.IGNORECASE)),
    ("broadcast", re.compile(r"broadcast", re.IGNORECASE)),
    ("all_to_all", re.compile(r"all_?to_?all|alltoall", re.IGNORECASE)),
    ("send_recv", re.compile(r"send|recv", re.IGNORECASE)),
    ("reduce", re.compile(r"reduce", re.IGNORECASE)),
)


@functools.lru_cache(maxsize=1 << 16)
def collective_kind(kernel_name: str) -> str:
    """'all_reduce', 'all_gather', ... from an NCCL/RCCL kernel name; 'other' otherwise. Each
    distinct (interned) name is matched once."""
    for kind, pattern in _KIND:
        if pattern.search(kernel_name):
            return kind
    return "other"


def comm_kernel_mask(trace: Trace) -> np.ndarray:
    """Kernel rows that are NCCL / RCCL collectives."""
    return np.asarray(trace.comm_kernel_mask, dtype=bool)


@dataclass(frozen=True)
class CommStep:
    """Collective time of one step of one rank, in milliseconds."""

    rank: int
    step: int  # index into trace.steps
    step_dur_ms: float
    comm_ms: float  # union of collective kernels launched in the step
    exposed_ms: float  # part of comm_ms with no compute kernel running on any stream
    overlapped_ms: float
    kernel_count: int
    by_kind: dict[str, float]  # exposed ms per collective kind

    @property
    def exposed_share(self) -> float:
        return self.exposed_ms / self.step_dur_ms if self.step_dur_ms > 0 else 0.0


def comm_overlap(trace: Trace, tables: Tables | None = None) -> list[CommStep]:
    """Per rank and step: collective kernel time, and how much of it compute does not hide."""
    comm = comm_kernel_mask(trace)
    if not comm.any():
        return []
    compute = trace.cat_mask(C.KERNEL_CATS) & ~comm
    ts = trace.col("ts")
    end = trace.col("end")
    dur = trace.col("dur")
    rank = trace.col("rank")
    dev_step = device_event_steps(trace)
    strings, name_codes = trace.strings("name"), trace.codes("name")
    out: list[CommStep] = []
    for r in trace.rank_ids:
        on_rank = rank == r
        cs, ce = merge_intervals(ts[compute & on_rank], end[compute & on_rank])
        # The rank's collective kernels grouped by step once (rows ascending within a step),
        # not one mask over every event per step.
        comm_rows = np.flatnonzero(comm & on_rank)
        comm_steps = dev_step[comm_rows]
        order = stable_order(comm_steps)
        sorted_steps = comm_steps[order]
        for k, step in enumerate(trace.steps):
            if step.rank != r:
                continue
            lo, hi = np.searchsorted(sorted_steps, k, side="left"), np.searchsorted(sorted_steps, k, side="right")
            if hi == lo:
                out.append(CommStep(r, k, step.dur / 1000.0, 0.0, 0.0, 0.0, 0, {}))
                continue
            rows = comm_rows[order[lo:hi]]
            ms, me = merge_intervals(ts[rows], end[rows])
            total = float(np.sum(me - ms))
            hidden = float(np.sum(covered(cs, ce, ms, me)))
            own = covered(cs, ce, ts[rows], end[rows])
            by_kind: dict[str, float] = {}
            names = [str(strings[c]) for c in name_codes[rows].tolist()]
            for name, length, hid in zip(names, dur[rows].tolist(), own.tolist(), strict=True):
                kind = collective_kind(name)
                by_kind[kind] = by_kind.get(kind, 0.0) + (float(length) - hid) / 1000.0
            out.append(CommStep(rank=r, step=k, step_dur_ms=step.dur / 1000.0,
                                comm_ms=total / 1000.0, exposed_ms=(total - hidden) / 1000.0,
                                overlapped_ms=hidden / 1000.0, kernel_count=len(rows),
                                by_kind={kk: round(v, 6) for kk, v in sorted(by_kind.items())}))
    return out




# ---------------------------------------------------------------------------- one rank's wait
@dataclass(frozen=True)
class CollectiveWait:
    """Collective time of one step beyond the fastest instance of the same collective (ms)."""

    rank: int
    step: int  # index into trace.steps
    comm_ms: float
    wait_ms: float
    matched: int  # collectives matched with the same collective in other steps


def collective_waits(trace: Trace, tables: Tables | None = None) -> list[CollectiveWait]:
    """Per rank and step: how much longer its collectives ran than their fastest instances.

    The k-th launch of a collective kernel in each step moves the same data every step, so
    the fastest of its instances is the transfer; the excess in other steps is time spent
    waiting for slower peers. This needs only one rank's trace; with every rank's trace,
    `step_skew` names the straggler.
    """
    comm = comm_kernel_mask(trace)
    if not comm.any():
        return []
    dev_step = device_event_steps(trace)
    rows = np.flatnonzero(comm & (dev_step != NO_ID))
    dur = trace.col("dur")
    rank = trace.col("rank")
    per_key: dict[tuple[int, str, int], dict[int, float]] = {}
    by_step: dict[tuple[int, int], list[tuple[int, str, float]]] = {}
    ordered = rows[np.argsort(trace.col("ts")[rows], kind="stable")]
    # Each row's rank, step, name and duration as Python values in one conversion each.
    strings = trace.strings("name")
    names = [str(strings[c]) for c in trace.codes("name")[ordered].tolist()]
    for row, r, k, name, d in zip(ordered.tolist(), rank[ordered].tolist(),
                                  dev_step[ordered].tolist(), names, dur[ordered].tolist(),
                                  strict=True):
        by_step.setdefault((int(r), int(k)), []).append((row, name, float(d)))
    for (r, k), calls in by_step.items():
        seen: dict[str, int] = {}
        for _, name, d in calls:
            n = seen.get(name, 0)
            seen[name] = n + 1
            per_key.setdefault((r, name, n), {})[k] = d
    out: list[CollectiveWait] = []
    for (r, k), calls in sorted(by_step.items()):
        wait = 0.0
        matched = 0
        seen2: dict[str, int] = {}
        for _, name, d in calls:
            n = seen2.get(name, 0)
            seen2[name] = n + 1
            inst = per_key[(r, name, n)]
            if len(inst) >= 2:
                wait += d - min(inst.values())
                matched += 1
        rs = [row for row, _, _ in calls]
        out.append(CollectiveWait(rank=r, step=k, comm_ms=float(dur[rs].sum()) / 1000.0,
                                  wait_ms=wait / 1000.0, matched=matched))
    return out
