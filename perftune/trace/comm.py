"""Collective communication on the device timeline: how much of it compute hides, rank skew.

NCCL/RCCL kernels run on their own streams. While compute kernels run on another stream at
the same time, communication costs nothing extra; the part of it no compute kernel overlaps is
*exposed* and adds to the step. Across ranks, synchronous collectives make every rank wait for
the slowest: the wait shows up as longer collective kernels on the fast ranks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from perftune.trace import categories as C
from perftune.trace.metrics import device_event_steps
from perftune.trace.model import NO_ID, Trace
from perftune.trace.device_metrics import memoized


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

    return np.maximum(0.0, before(ends) - before(starts))


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


def collective_kind(kernel_name: str) -> str:
    """'all_reduce', 'all_gather', ... from an NCCL/RCCL kernel name; 'other' otherwise."""
    for kind, pattern in _KIND:
        if pattern.search(kernel_name):
            return kind
    return "other"


@memoized
def comm_kernel_mask(trace: Trace) -> np.ndarray:
    ev = trace.events
    kern = (ev["cat"] == C.KERNEL).to_numpy()
    if not kern.any():
        return kern
    names = ev["name"]
    flags = {n: C.is_comm_kernel(str(n)) for n in names[kern].unique()}
    return kern & names.map(flags).fillna(False).to_numpy(dtype=bool)


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


@memoized
def comm_overlap(trace: Trace) -> list[CommStep]:
    """Per rank and step: collective kernel time, and how much of it compute does not hide."""
    ev = trace.events
    comm = comm_kernel_mask(trace)
    if not comm.any():
        return []
    compute = (ev["cat"] == C.KERNEL).to_numpy() & ~comm
    ts = ev["ts"].to_numpy()
    end = ev["end"].to_numpy()
    rank = ev["rank"].to_numpy()
    dev_step = device_event_steps(trace)
    out: list[CommStep] = []
    for r in trace.rank_ids:
        on_rank = rank == r
        cs, ce = merge_intervals(ts[compute & on_rank], end[compute & on_rank])
        for k, step in enumerate(trace.steps):
            if step.rank != r:
                continue
            sel = comm & on_rank & (dev_step == k)
            if not sel.any():
                out.append(CommStep(r, k, step.dur / 1000.0, 0.0, 0.0, 0.0, 0, {}))
                continue
            ms, me = merge_intervals(ts[sel], end[sel])
            total = float(np.sum(me - ms))
            hidden = float(np.sum(covered(cs, ce, ms, me)))
            rows = np.flatnonzero(sel)
            own = covered(cs, ce, ts[rows], end[rows])
            by_kind: dict[str, float] = {}
            for row, hid in zip(rows.tolist(), own.tolist(), strict=True):
                kind = collective_kind(trace.name_of(row))
                by_kind[kind] = by_kind.get(kind, 0.0) + (float(ev["dur"].iat[row]) - hid) / 1000.0
            out.append(CommStep(rank=r, step=k, step_dur_ms=step.dur / 1000.0,
                                comm_ms=total / 1000.0, exposed_ms=(total - hidden) / 1000.0,
                                overlapped_ms=hidden / 1000.0, kernel_count=len(rows),
                                by_kind={kk: round(v, 6) for kk, v in sorted(by_kind.items())}))
    return out


def comm_launch_rows(trace: Trace) -> list[int]:
    """The host runtime calls that launched collective kernels."""
    launch = trace.launch_of_device_event
    rows = np.flatnonzero(comm_kernel_mask(trace))
    return [int(launch[r]) for r in rows.tolist() if launch[r] != NO_ID]


# ---------------------------------------------------------------------------- rank skew
@memoized
def rank_step_table(trace: Trace) -> pd.DataFrame:
    """One row per (step index, rank): dur_ms, comm_ms, busy_ms (compute kernels), work_ms.

    `work_ms` = step time minus collective time: what the rank did itself. In a synchronous
    job every rank's step lasts about as long as the slowest rank's work; the fast ranks spend
    the difference inside collectives, waiting.
    """
    comm = {(c.rank, c.step): c.comm_ms for c in comm_overlap(trace)}
    ev = trace.events
    compute = (ev["cat"] == C.KERNEL).to_numpy() & ~comm_kernel_mask(trace)
    dev_step = device_event_steps(trace)
    ts = ev["ts"].to_numpy()
    end = ev["end"].to_numpy()
    rows = []
    for k, step in enumerate(trace.steps):
        sel = compute & (dev_step == k)
        ms, me = merge_intervals(ts[sel], end[sel])
        busy = float(np.sum(me - ms)) / 1000.0
        c = comm.get((step.rank, k), 0.0)
        rows.append((step.index, step.rank, step.dur / 1000.0, c, busy, step.dur / 1000.0 - c))
    return pd.DataFrame(rows, columns=["step", "rank", "dur_ms", "comm_ms", "busy_ms", "work_ms"])


@dataclass(frozen=True)
class StepSkew:
    step: int
    ranks: int
    slowest_rank: int
    fastest_rank: int
    dur_skew_ms: float  # max - min step duration
    work_skew_ms: float  # max - min own work (step minus collectives)
    max_wait_ms: float  # most collective time any rank spent beyond the least-waiting rank
    median_dur_ms: float


def step_skew(trace: Trace) -> list[StepSkew]:
    """Per step index present on two or more ranks: who was slowest, and by how much."""
    table = rank_step_table(trace)
    out: list[StepSkew] = []
    if table.empty or table["rank"].nunique() < 2:
        return out
    for step, group in table.groupby("step", sort=True):
        if len(group) < 2:
            continue
        slow = group.loc[group["work_ms"].idxmax()]
        fast = group.loc[group["work_ms"].idxmin()]
        out.append(StepSkew(
            step=int(step), ranks=len(group), slowest_rank=int(slow["rank"]),
            fastest_rank=int(fast["rank"]),
            dur_skew_ms=float(group["dur_ms"].max() - group["dur_ms"].min()),
            work_skew_ms=float(group["work_ms"].max() - group["work_ms"].min()),
            max_wait_ms=float(group["comm_ms"].max() - group["comm_ms"].min()),
            median_dur_ms=float(group["dur_ms"].median())))
    return out
