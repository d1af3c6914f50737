"""Collective communication on the device timeline: how much of it compute hides, rank skew.

NCCL/RCCL kernels run on their own streams. While compute kernels run on another stream at
the same time, communication costs nothing extra; the part of it no compute kernel overlaps is
*exposed* and adds to the step. Across ranks, synchronous collectives make every rank wait for
the slowest: the wait shows up as longer collective kernels on the fast ranks.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass

import numpy as np

from perftune.trace import categories as C
from perftune.trace.groups import distinct, running_sums, stable_order
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


def covered_prefix(ms: np.ndarray, me: np.ndarray) -> np.ndarray:
    """The merged intervals' covered length before each of them (`covered`'s `prefix`): a
    caller asking about many batches of intervals against the same (ms, me) computes it once
    (one pass per step over a whole rank's intervals made the overlap tables quadratic)."""
    return np.concatenate([[0.0], np.cumsum(me - ms)])


def covered(ms: np.ndarray, me: np.ndarray, starts: np.ndarray, ends: np.ndarray,
            prefix: np.ndarray | None = None) -> np.ndarray:
    """For each [start, end): how much of it the merged intervals (ms, me) cover. `prefix`:
    `covered_prefix(ms, me)`, when the caller has it."""
    starts = np.asarray(starts, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.float64)
    if len(ms) == 0 or len(starts) == 0:
        return np.zeros(len(starts))
    cum = covered_prefix(ms, me) if prefix is None else prefix

    def before(t: np.ndarray) -> np.ndarray:
        # covered length in (-inf, t)
        k = np.searchsorted(ms, t, side="right")  # intervals starting at or before t
        at = np.maximum(k - 1, 0)
        full = cum[at]
        # the lengths of the intervals asked about only (me - ms over all of them: a pass over
        # the whole rank per call)
        last = np.where(k > 0, np.clip(t - ms[at], 0.0, me[at] - ms[at]), 0.0)
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
    # The collective kind of each distinct collective name, as a code into `kind_names` (a code
    # of -1 indexes the last string, as the list would).
    present = distinct(name_codes[comm]).tolist()
    kinds_present = [collective_kind(str(strings[c])) for c in present]
    kind_names = sorted(set(kinds_present))
    kind_of = np.zeros(len(strings), dtype=np.int64)
    kind_of[np.asarray(present, dtype=np.int64)] = [kind_names.index(k) for k in kinds_present]
    out: list[CommStep] = []
    for r in trace.rank_ids:
        on_rank = rank == r
        cs, ce = merge_intervals(ts[compute & on_rank], end[compute & on_rank])
        prefix = covered_prefix(cs, ce)
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
            hidden = float(np.sum(covered(cs, ce, ms, me, prefix)))
            own = covered(cs, ce, ts[rows], end[rows], prefix)
            # Exposed ms per collective kind (kinds named once per distinct name), added up in
            # row order.
            kinds = kind_of[name_codes[rows]]
            exposed = (dur[rows].astype(np.float64) - own) / 1000.0
            by_kind = {kind_names[c]: v for c, _, v in zip(*running_sums(kinds, exposed), strict=True)}
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


def _run_starts(*keys: np.ndarray) -> np.ndarray:
    """Where a new run of equal keys starts, over rows sorted by those keys."""
    change = np.zeros(len(keys[0]), dtype=bool)
    if len(change):
        change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(change)


def _place_in_runs(*keys: np.ndarray) -> np.ndarray:
    """Each row's place (0, 1, ...) in its run of equal keys, over rows sorted by those keys."""
    starts = _run_starts(*keys)
    first = np.zeros(len(keys[0]), dtype=np.int64)
    first[starts] = starts
    return np.arange(len(keys[0])) - np.maximum.accumulate(first)


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
    if not len(rows):
        return []
    dur = trace.col("dur")
    ordered = rows[np.argsort(trace.col("ts")[rows], kind="stable")]
    r = trace.col("rank")[ordered].astype(np.int64)
    k = dev_step[ordered].astype(np.int64)
    name = trace.codes("name")[ordered]  # one code per distinct string (never -1: comm names)
    d = dur[ordered].astype(np.float64)
    # n: the call's place among the calls of its name in its (rank, step), in time order.
    by_name = np.lexsort((name, k, r))  # stable: time order within each (rank, step, name)
    n = np.empty(len(ordered), dtype=np.int64)
    n[by_name] = _place_in_runs(r[by_name], k[by_name], name[by_name])
    # The k-th call of a name on a rank in every step: its fastest instance and how many steps
    # have one.
    by_call = np.lexsort((n, name, r))
    starts = _run_starts(r[by_call], name[by_call], n[by_call])
    first = np.zeros(len(by_call), dtype=np.int64)
    first[starts] = 1
    run = np.cumsum(first) - 1
    count = np.empty(len(ordered), dtype=np.int64)
    count[by_call] = np.diff(np.append(starts, len(by_call)))[run]
    fastest = np.empty(len(ordered), dtype=np.float64)
    fastest[by_call] = np.minimum.reduceat(d[by_call], starts)[run]
    matched = count >= 2
    excess = np.where(matched, d - fastest, 0.0)
    # Per (rank, step), in time order: the excess added up one call after the other (cumsum is
    # sequential, and adding the unmatched calls' 0.0 changes no sum), and the durations' sum.
    by_step = np.lexsort((k, r))
    bounds = [*_run_starts(r[by_step], k[by_step]).tolist(), len(by_step)]
    out: list[CollectiveWait] = []
    for a, b in itertools.pairwise(bounds):
        part = by_step[a:b]
        out.append(CollectiveWait(rank=int(r[part[0]]), step=int(k[part[0]]),
                                  comm_ms=float(dur[ordered[part]].sum()) / 1000.0,
                                  wait_ms=(float(np.cumsum(excess[part])[-1]) + 0.0) / 1000.0,
                                  matched=int(np.count_nonzero(matched[part]))))
    return out
