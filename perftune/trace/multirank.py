"""The ranks of one job side by side: step skew, stragglers, communication and collective waits.

Synchronous data parallelism runs at the speed of its slowest rank: every collective completes
only once every rank has entered it, so the ranks that arrive early spend the difference inside
the collective. Three views of that, per rank and step:

- *communication*: the union of the rank's collectives in the step, and the part of it that no
  compute overlaps (*exposed*). On a GPU trace the collectives are NCCL/RCCL kernels and the
  figures come from `comm.comm_overlap`; on a CPU trace (gloo) they are the collectives' host
  annotations (`gloo:all_reduce` on gloo's worker threads) and compute is the rank's host
  operators on its other threads.
- *collective wait*: the k-th collective of a step is the same call on every rank; its duration
  on a rank minus its shortest duration on any rank is the time that rank waited for the
  others (`collective_waits`).
- *busy time*: the step minus that wait — what the rank did itself. The rank with the most is
  the step's slowest rank; a rank that is the slowest step after step, by a clear margin, is a
  straggler (`straggler`).

Pure functions of a loaded multi-rank `Trace` (one file per rank, `trace.load(dir)`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from perftune._dataclasses import lazy_dataclass
from perftune.documents import (
    CollectiveTotals,
    LargestMargin,
    MultiRank,
    RankStats,
    Skew,
    StragglerRank,
)
from perftune.documents import RankStep as RankStepRow
from perftune.documents import StepAcrossRanks as StepAcrossRanksRow
from perftune.trace import categories as C
from perftune.trace.comm import (
    collective_kind,
    comm_overlap,
    covered,
    covered_prefix,
    merge_intervals,
)
from perftune.trace.frame_source import SourceLookup, call_line
from perftune.trace.frames import is_user_frame, parse_python_function
from perftune.trace.metrics import device_event_steps
from perftune.trace.model import NO_ID, Trace
from perftune.trace.tables import Tables

# Host-side collectives that *run* on the host (CPU backends): gloo's worker threads annotate
# each collective they execute. `nccl:*` host annotations only enqueue device work and are not
# used: on a GPU trace the kernels are the collectives.
_HOST_COLLECTIVE = re.compile(r"^(gloo|mpi|ucc):", re.IGNORECASE)
# Host operators that are communication, not compute (they only enqueue or wait).
_HOST_COMM_OP = re.compile(r"^(c10d::|gloo:|nccl:|mpi:|ucc:|record_param_comms)|"
                           r"torch\.distributed\.|distributed::", re.IGNORECASE)

# Defaults shared by summary.json's straggler and the rank-straggler rule (its options override them).
STRAGGLER_MIN_MS = 1.0
STRAGGLER_MIN_SHARE = 0.05
# Fewer steps than this: a straggler must be the slowest rank in every one of them (2 of 3 is
# what ranks sharing busy cores do by chance; the straggler rule's `min_steps`).
STRAGGLER_MIN_STEPS = 5


# ---------------------------------------------------------------------------- collectives
@lazy_dataclass(frozen=True)
class CollectiveCall:
    """One collective on one rank: a communication kernel, or a host collective on CPU."""

    rank: int
    step: int  # Step.index of the step that issued it
    seq: int  # its position among the rank's collectives of that step, by start time
    name: str
    kind: str  # all_reduce, all_gather, ... (comm.collective_kind)
    start_ms: float  # from the start of the trace
    dur_ms: float
    source: str  # device | host


def _host_collective_mask(trace: Trace) -> np.ndarray:
    mask: np.ndarray = (trace.name_matches(_HOST_COLLECTIVE) & ~trace.is_device
                        & ~trace.cat_mask({C.PYTHON_FUNCTION}))
    return mask


def comm_source(trace: Trace, tables: Tables | None = None) -> dict[int, str]:
    """Per rank: 'device' (communication kernels), 'host' (CPU collectives) or 'none'."""
    rank = trace.col("rank")
    device = np.asarray(trace.comm_kernel_mask, dtype=bool)
    host = _host_collective_mask(trace)
    out: dict[int, str] = {}
    for r in trace.rank_ids:
        on_rank = rank == r
        out[r] = ("device" if (device & on_rank).any() else
                  "host" if (host & on_rank).any() else "none")
    return out


def collective_calls(trace: Trace, tables: Tables | None = None) -> list[CollectiveCall]:
    """Every collective inside a step, per rank, in start order (see `comm_source`)."""
    t = Tables.of(trace, tables)
    ts = trace.col("ts")
    dur = trace.col("dur")
    rank = trace.col("rank")
    sources = t(comm_source)
    device_mask = np.asarray(trace.comm_kernel_mask, dtype=bool)
    host_mask = _host_collective_mask(trace)
    dev_step = device_event_steps(trace) if device_mask.any() else None
    out: list[CollectiveCall] = []
    for r, source in sources.items():
        on_rank = rank == r
        if source == "device":
            assert dev_step is not None
            rows = np.flatnonzero(device_mask & on_rank)
            steps = dev_step[rows]
        elif source == "host":
            rows = np.flatnonzero(host_mask & on_rank)
            steps = trace.step_of(ts[rows], rank[rows])
        else:
            continue
        keep = steps != NO_ID
        rows, steps = rows[keep], steps[keep]
        order = np.lexsort((ts[rows], steps))
        seq: Counter[int] = Counter()
        ordered = rows[order]
        strings = trace.strings("name")
        names = [str(strings[c]) for c in trace.codes("name")[ordered].tolist()]
        for k, name, start, length in zip(steps[order].tolist(), names, ts[ordered].tolist(),
                                          dur[ordered].tolist(), strict=True):
            index = trace.steps[k].index
            out.append(CollectiveCall(
                rank=int(r), step=index, seq=seq[index], name=name,
                kind=collective_kind(name.split(":", 1)[-1]), start_ms=float(start) / 1000.0,
                dur_ms=float(length) / 1000.0, source=source))
            seq[index] += 1
    return out


@lazy_dataclass(frozen=True)
class CollectiveWait:
    """One collective call matched across ranks: how long each rank spent in it, and waited."""

    step: int
    seq: int
    kind: str
    dur_ms: dict[int, float]  # per rank
    wait_ms: dict[int, float]  # per rank: its duration minus the shortest
    last_rank: int  # the rank that waited least: the others waited for it
    start_ms: dict[int, float]  # per rank, from the start of the trace

    @property
    def max_wait_ms(self) -> float:
        return max(self.wait_ms.values(), default=0.0)


def collective_waits(trace: Trace, tables: Tables | None = None) -> list[CollectiveWait]:
    """Per collective call index (step, position in the step) present on two or more ranks
    with the same kind: the per-rank duration minus the minimum across ranks."""
    return waits_of_calls(Tables.of(trace, tables)(collective_calls))


def waits_of_calls(calls: Iterable[CollectiveCall]) -> list[CollectiveWait]:
    """`collective_waits` of the calls of every rank, however they were gathered."""
    groups: dict[tuple[int, int], list[CollectiveCall]] = {}
    for call in calls:
        groups.setdefault((call.step, call.seq), []).append(call)
    out: list[CollectiveWait] = []
    for (step, seq), calls in sorted(groups.items()):
        if len({c.rank for c in calls}) < 2 or len({c.kind for c in calls}) != 1:
            continue  # one rank only, or not the same collective: nothing to compare
        durations = {c.rank: c.dur_ms for c in calls}
        fastest = min(durations.values())
        waits = {r: d - fastest for r, d in durations.items()}
        last = min(sorted(durations), key=lambda r: durations[r])
        out.append(CollectiveWait(step=step, seq=seq, kind=calls[0].kind, dur_ms=durations,
                                  wait_ms=waits, last_rank=last,
                                  start_ms={c.rank: c.start_ms for c in calls}))
    return out


# ---------------------------------------------------------------------------- per rank and step
@lazy_dataclass(frozen=True)
class RankStep:
    """One step of one rank (milliseconds)."""

    rank: int
    step: int  # Step.index
    dur_ms: float
    comm_ms: float  # union of its collectives
    exposed_ms: float  # the part of comm_ms with no compute running
    wait_ms: float  # collective wait, concurrent collectives counted once (0: none matched)
    exposed_wait_ms: float  # the part of the wait with no compute running (in exposed_ms)
    busy_ms: float  # dur_ms minus the wait: the rank's own time
    calls: int  # collectives in the step
    matched: int  # of which matched with other ranks


def compute_intervals(trace: Trace, tables: Tables | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per rank, the merged intervals (µs) during which it computed: its non-communication
    kernels when its collectives are kernels; else its host operators on threads that run no
    collective, leaving out operators that only enqueue or wait for communication."""
    t = Tables.of(trace, tables)
    ts = trace.col("ts")
    end = trace.col("end")
    rank = trace.col("rank")
    tid = trace.col("tid")
    pid = trace.col("pid")
    device_comm = np.asarray(trace.comm_kernel_mask, dtype=bool)
    kernels = trace.cat_mask(C.KERNEL_CATS) & ~device_comm
    host_comm = _host_collective_mask(trace)
    ops = trace.cat_mask({C.CPU_OP}) & ~trace.is_device & ~trace.name_matches(_HOST_COMM_OP)
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for r, source in t(comm_source).items():
        on_rank = rank == r
        if source == "device":
            rows = np.flatnonzero(kernels & on_rank)
        else:
            comm_rows = np.flatnonzero(host_comm & on_rank)
            threads = set(zip(pid[comm_rows].tolist(), tid[comm_rows].tolist(), strict=True))
            rows = np.flatnonzero(ops & on_rank)
            keep = np.fromiter(((p, t) not in threads for p, t in
                                zip(pid[rows].tolist(), tid[rows].tolist(), strict=True)),
                               bool, len(rows))
            rows = rows[keep]
        out[r] = merge_intervals(ts[rows], end[rows])
    return out


def _host_exposure(trace: Trace, tables: Tables | None = None) -> dict[tuple[int, int], tuple[float, float]]:
    """(comm µs, exposed µs) per (rank, index into trace.steps) for ranks with host collectives
    (device collectives: `comm.comm_overlap`)."""
    t = Tables.of(trace, tables)
    ts = trace.col("ts")
    end = trace.col("end")
    rank = trace.col("rank")
    comm = _host_collective_mask(trace)
    compute = t(compute_intervals)
    out: dict[tuple[int, int], tuple[float, float]] = {}
    for r, source in t(comm_source).items():
        if source != "host":
            continue
        comm_rows = np.flatnonzero(comm & (rank == r))
        cs, ce = compute[r]
        prefix = covered_prefix(cs, ce)
        for k, step in enumerate(trace.steps):
            if step.rank != r:
                continue
            sel = comm_rows[(ts[comm_rows] < step.end) & (end[comm_rows] > step.start)]
            if len(sel) == 0:
                out[(r, k)] = (0.0, 0.0)
                continue
            ms, me = merge_intervals(np.maximum(ts[sel], step.start), np.minimum(end[sel], step.end))
            total = float(np.sum(me - ms))
            hidden = float(np.sum(covered(cs, ce, ms, me, prefix)))
            out[(r, k)] = (total, max(0.0, total - hidden))
    return out


@lazy_dataclass(frozen=True)
class RankResult:
    """One rank reduced to what the cross-rank analysis needs: small, picklable, computed where
    the rank's trace is (a worker process, a Dask worker) so that only this travels.

    Times of `calls` are ms from the start of the trace they were read from; `compute` holds the
    rank's compute intervals (µs, same origin) inside its collectives only, which is all the
    wait's exposure needs.
    """

    rank: int
    source: str  # comm_source: device | host | none
    steps: tuple[tuple[int, float, float, float], ...]  # (Step.index, dur_ms, comm_ms, exposed_ms), by start
    calls: tuple[CollectiveCall, ...]
    compute: tuple[np.ndarray, np.ndarray]
    # Where the trace's times start (Trace.t0_us, absolute µs) and each step's start (ms from
    # there, the order of `steps`): what the report's collective timeline lines ranks up by.
    origin_us: float = 0.0
    step_starts_ms: tuple[float, ...] = ()
    # Where the rank's time went in the user's code, per step (`user_calls`): what names the
    # line a straggler spends its extra time at.
    user_calls: tuple[UserCall, ...] = ()


@lazy_dataclass(frozen=True)
class UserCall:
    """The time one step spent in the calls one line of the user's code made to one function
    (summed over that step's calls; inclusive of everything below)."""

    step: int  # Step.index
    file: str
    line: int  # the call's line when the source was read (`call_line`), else the frame's
    function: str  # the user's function making the call
    callee: str  # what it called: 'extra_work', 'sleep', 'Linear_0' (a module instance)
    depth: int  # python frames above the call (the outermost user calls have the least)
    ms: float
    text: str | None = None  # the line's source, when it was read


def _callee_label(name: str) -> str:
    """'train.py(30): extra_work' → 'extra_work'; '<built-in function sleep>' → 'sleep';
    '<built-in method item of Tensor object>' → 'item'; 'nn.Module: Linear_0' → 'Linear_0'."""
    frame = parse_python_function(name)
    if frame is not None:
        return frame.function
    if name.startswith("nn.Module: "):
        return name.removeprefix("nn.Module: ")
    words = name.strip("<>").split()
    if len(words) >= 3 and words[0] == "built-in":
        return words[2]
    return name


# Per rank: at most this many (line, callee) keys kept, the ones with the most time.
USER_CALLS_KEPT = 64


def user_calls(trace: Trace, rank: int, lookup: SourceLookup | None = None) -> tuple[UserCall, ...]:
    """Per step of `rank`: the time in each call a user frame made (to the user's own
    functions, to a library, to a module), counting calls that began and ended inside the step
    (the loop function that spans the steps is the caller, never a call). With `lookup`, the
    caller's line is the call site in its source (`extra_work(...)`), not the frame's."""
    if not trace.has_python_stacks or not trace.steps:
        return ()
    ev = trace.columns
    py_rows = np.flatnonzero(trace.cat_mask({C.PYTHON_FUNCTION}) & (ev["rank"] == rank))
    if not len(py_rows):
        return ()
    ts, end, dur = ev["ts"], ev["end"], ev["dur"]
    steps = trace.step_of(ts[py_rows], ev["rank"][py_rows])
    parent = trace.python_parent

    depth: dict[int, int] = {}

    def depth_of(row: int) -> int:
        chain: list[int] = []
        while row != NO_ID and row not in depth and len(chain) < 10_000:
            chain.append(row)
            row = parent(row)
        d = depth.get(row, -1) if row != NO_ID else -1
        for r in reversed(chain):
            d += 1
            depth[r] = d
        return depth[chain[0]] if chain else d

    frames = trace._frames
    user: dict[int, bool] = {}
    totals: dict[tuple[int, str, int, str, str], float] = {}
    depths: dict[tuple[int, str, int, str, str], int] = {}
    step_list = trace.steps
    for row, k in zip(py_rows.tolist(), steps.tolist(), strict=True):
        if k < 0:
            continue
        step = step_list[k]
        if ts[row] < step.start or end[row] > step.end:
            continue  # not a call made inside the step
        p = parent(row)
        frame = frames.get(p) if p != NO_ID else None
        if frame is None:
            continue
        if p not in user:
            user[p] = is_user_frame(frame)
        if not user[p]:
            continue
        key = (step.index, frame.file, frame.line, frame.function, _callee_label(trace.name_of(row)))
        totals[key] = totals.get(key, 0.0) + float(dur[row]) / 1000.0
        if key not in depths:
            depths[key] = depth_of(row)
    by_site: dict[tuple[str, int, str, str], float] = {}
    for (_, file, line, function, callee), ms in totals.items():
        site = (file, line, function, callee)
        by_site[site] = by_site.get(site, 0.0) + ms
    kept = set(sorted(by_site, key=lambda s: -by_site[s])[:USER_CALLS_KEPT])
    lines: dict[tuple[str, int, str, str], int] = {}
    for file, line, function, callee in kept:
        found = (call_line(lookup, parse_python_function(f"{file}({line}): {function}"), callee)
                 if lookup is not None else None)
        lines[(file, line, function, callee)] = found if found is not None else line
    texts = {site: (lookup.line(site[0], at) if lookup is not None else None)
             for site, at in lines.items()}
    return tuple(UserCall(step=k, file=file, line=lines[(file, line, function, callee)],
                          function=function, callee=callee, depth=depths[(k, file, line, function, callee)],
                          ms=ms, text=(texts[(file, line, function, callee)] or "").rstrip() or None)
                 for (k, file, line, function, callee), ms in sorted(totals.items())
                 if (file, line, function, callee) in kept)


def reduce_rank(trace: Trace, rank: int, tables: Tables | None = None,
                lookup: SourceLookup | None = None) -> RankResult:
    """Rank `rank` of `trace` reduced to a RankResult (`lookup`: the user's source, to name
    the lines of `user_calls`)."""
    t = Tables.of(trace, tables)
    device = {(c.rank, c.step): (c.comm_ms, c.exposed_ms) for c in t(comm_overlap)}
    host = {key: (c / 1000.0, e / 1000.0) for key, (c, e) in t(_host_exposure).items()}
    steps = []
    starts = []
    for k, step in sorted(enumerate(trace.steps), key=lambda ks: ks[1].start):
        if step.rank != rank:
            continue
        comm_ms, exposed_ms = device.get((rank, k)) or host.get((rank, k)) or (0.0, 0.0)
        steps.append((step.index, step.dur / 1000.0, comm_ms, exposed_ms))
        starts.append(step.start / 1000.0)
    calls = tuple(c for c in t(collective_calls) if c.rank == rank)
    cs, ce = t(compute_intervals).get(rank, (np.empty(0), np.empty(0)))
    if len(calls):  # keep compute only inside the calls (the waits lie there)
        ws, we = merge_intervals(np.asarray([c.start_ms * 1000.0 for c in calls]),
                                 np.asarray([(c.start_ms + c.dur_ms) * 1000.0 for c in calls]))
        cs, ce = _intersect(cs, ce, ws, we)
    else:
        cs, ce = np.empty(0), np.empty(0)
    return RankResult(rank=rank, source=t(comm_source).get(rank, "none"), steps=tuple(steps),
                      calls=calls, compute=(cs, ce), origin_us=float(trace.t0_us),
                      step_starts_ms=tuple(starts), user_calls=user_calls(trace, rank, lookup))


def _intersect(a_s: np.ndarray, a_e: np.ndarray, b_s: np.ndarray,
               b_e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersection of two sets of merged, sorted intervals."""
    if len(a_s) == 0 or len(b_s) == 0:
        return np.empty(0), np.empty(0)
    # For each b interval, the a intervals that may overlap it.
    lo = np.searchsorted(a_e, b_s, side="right")
    hi = np.searchsorted(a_s, b_e, side="left")
    counts = np.maximum(hi - lo, 0)
    if counts.sum() == 0:
        return np.empty(0), np.empty(0)
    b_idx = np.repeat(np.arange(len(b_s)), counts)
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    a_idx = np.repeat(lo, counts) + offsets
    starts = np.maximum(a_s[a_idx], b_s[b_idx])
    ends = np.minimum(a_e[a_idx], b_e[b_idx])
    keep = ends > starts
    return starts[keep], ends[keep]


def rank_results(trace: Trace, tables: Tables | None = None) -> list[RankResult]:
    """Every rank of a loaded trace reduced (the in-process path of the cross-rank analysis)."""
    t = Tables.of(trace, tables)
    return [reduce_rank(trace, r, t) for r in sorted(trace.rank_ids)]


def rank_steps(trace: Trace, tables: Tables | None = None) -> list[RankStep]:
    """One row per step of every rank: duration, communication, exposure, wait, busy time."""
    t = Tables.of(trace, tables)
    return rank_steps_of(t(rank_results), t(collective_waits))


def rank_steps_of(results: Sequence[RankResult],
                  waits_table: Sequence[CollectiveWait] | None = None) -> list[RankStep]:
    """`rank_steps` from reduced ranks (`waits_table`: their collective waits, if computed)."""
    if waits_table is None:
        waits_table = waits_of_calls(c for r in results for c in r.calls)
    # A rank that arrives early waits at the start of the collective: the first `wait` ms of
    # each call are waiting. Buckets reduced concurrently (several gloo threads, streams)
    # overlap, so the waits of one step are a union, never more than the step.
    spans: dict[tuple[int, int], list[tuple[float, float]]] = {}
    matched: Counter[tuple[int, int]] = Counter()
    for w in waits_table:
        for r, wait in w.wait_ms.items():
            spans.setdefault((r, w.step), []).append((w.start_ms[r], w.start_ms[r] + wait))
            matched[(r, w.step)] += 1
    waits: dict[tuple[int, int], tuple[float, float]] = {}
    compute = {res.rank: res.compute for res in results}
    prefixes: dict[int, np.ndarray] = {}  # per rank, once (not a pass over its compute per step)
    for key, pairs in spans.items():
        starts, ends = merge_intervals(np.asarray([a for a, _ in pairs]),
                                       np.asarray([b for _, b in pairs]))
        cs, ce = compute.get(key[0], (np.empty(0), np.empty(0)))
        if key[0] not in prefixes:
            prefixes[key[0]] = covered_prefix(cs, ce)
        hidden = float(np.sum(covered(cs, ce, starts * 1000.0, ends * 1000.0,
                                      prefixes[key[0]]))) / 1000.0
        total = float(np.sum(ends - starts))
        waits[key] = (total, max(0.0, total - hidden))
    calls: Counter[tuple[int, int]] = Counter((c.rank, c.step) for res in results for c in res.calls)
    out: list[RankStep] = []
    for res in sorted(results, key=lambda res: res.rank):
        for index, dur_ms, comm_ms, exposed_ms in res.steps:
            key = (res.rank, index)
            wait, exposed_wait = waits.get(key, (0.0, 0.0))
            out.append(RankStep(rank=res.rank, step=index, dur_ms=dur_ms, comm_ms=comm_ms,
                                exposed_ms=exposed_ms, wait_ms=wait,
                                exposed_wait_ms=min(exposed_wait, exposed_ms),
                                busy_ms=dur_ms - wait, calls=calls.get(key, 0),
                                matched=matched.get(key, 0)))
    return out


@lazy_dataclass(frozen=True)
class StepAcrossRanks:
    """One step index seen on two or more ranks."""

    step: int
    ranks: int
    median_dur_ms: float
    dur_skew_ms: float  # longest minus shortest step
    busy_skew_ms: float  # most minus least busy time
    slowest_rank: int  # the busiest rank: the others waited for it
    fastest_rank: int
    max_wait_ms: float  # the longest collective wait of any rank


def _busy(row: RankStep, waits_known: bool) -> float:
    # Without matched collectives the whole communication time stands in for the wait.
    return row.busy_ms if waits_known else row.dur_ms - row.comm_ms


def steps_across_ranks(trace: Trace, tables: Tables | None = None) -> list[StepAcrossRanks]:
    """Per step index present on two or more ranks: skew, and who was slowest."""
    if len(trace.rank_ids) < 2:  # one rank: no step to compare, nothing to reduce
        return []
    return steps_across_ranks_of(Tables.of(trace, tables)(rank_steps))


def steps_across_ranks_of(rank_rows: Sequence[RankStep]) -> list[StepAcrossRanks]:
    by_step: dict[int, list[RankStep]] = {}
    for row in rank_rows:
        by_step.setdefault(row.step, []).append(row)
    out: list[StepAcrossRanks] = []
    for step, rows in sorted(by_step.items()):
        rows = sorted(rows, key=lambda r: r.rank)
        if len({r.rank for r in rows}) < 2:
            continue
        known = any(r.matched for r in rows)
        busy = [_busy(r, known) for r in rows]
        durs = [r.dur_ms for r in rows]
        waits = [r.wait_ms if known else r.comm_ms for r in rows]
        out.append(StepAcrossRanks(
            step=step, ranks=len(rows), median_dur_ms=float(_middle(durs)),
            dur_skew_ms=max(durs) - min(durs), busy_skew_ms=max(busy) - min(busy),
            slowest_rank=rows[int(np.argmax(busy))].rank,
            fastest_rank=rows[int(np.argmin(busy))].rank,
            max_wait_ms=max(waits) - (0.0 if known else min(waits))))
    return out


# ---------------------------------------------------------------------------- stragglers
@lazy_dataclass(frozen=True)
class Straggler:
    """A rank the others wait for, step after step."""

    rank: int
    slowest_in: int  # steps in which it was the slowest rank
    steps: int  # steps seen on two or more ranks
    margin_ms: float  # median over steps of its busy time minus the other ranks' median
    median_step_ms: float
    slowest_counts: dict[int, int]

    @property
    def share_of_step(self) -> float:
        return self.margin_ms / self.median_step_ms if self.median_step_ms > 0 else 0.0

    @property
    def persistent(self) -> bool:
        return self.slowest_in * 2 >= self.steps

    def consistent(self, min_steps: int = STRAGGLER_MIN_STEPS) -> bool:
        """Enough steps to call it: at least `min_steps`, else the slowest in all of them."""
        return self.steps >= min_steps or self.slowest_in == self.steps


def straggler_candidate(trace: Trace, tables: Tables | None = None) -> Straggler | None:
    """The rank with the largest median margin over the others' busy time, whatever its size
    (None with fewer than two ranks per step). `straggler` applies the thresholds."""
    t = Tables.of(trace, tables)
    return straggler_candidate_of(t(steps_across_ranks), t(rank_steps))


def straggler_candidate_of(table: Sequence[StepAcrossRanks],
                           rank_rows: Sequence[RankStep]) -> Straggler | None:
    if not table:
        return None
    by_step: dict[int, list[RankStep]] = {}
    for row in rank_rows:
        by_step.setdefault(row.step, []).append(row)
    margins: dict[int, list[float]] = {}
    for s in table:
        rows = by_step[s.step]
        known = any(r.matched for r in rows)
        busy = {r.rank: _busy(r, known) for r in rows}
        for r, value in busy.items():
            others = [v for q, v in busy.items() if q != r]
            margins.setdefault(r, []).append(value - float(_middle(others)))
    scores = {r: float(_middle(values)) for r, values in margins.items()}
    rank = max(sorted(scores), key=lambda r: scores[r])
    counts = Counter(s.slowest_rank for s in table)
    return Straggler(rank=rank, slowest_in=counts.get(rank, 0), steps=len(table),
                     margin_ms=scores[rank],
                     median_step_ms=float(_middle(s.median_dur_ms for s in table)),
                     slowest_counts=dict(sorted(counts.items())))


def straggler(trace: Trace, min_ms: float = STRAGGLER_MIN_MS,
              min_share: float = STRAGGLER_MIN_SHARE) -> Straggler | None:
    """The straggler, when one rank's own work exceeds the others' by at least `min_ms` and
    `min_share` of the step (median over steps) and it is the slowest in at least half of them."""
    return straggler_of(straggler_candidate(trace), min_ms, min_share)


def straggler_of(found: Straggler | None, min_ms: float = STRAGGLER_MIN_MS,
                 min_share: float = STRAGGLER_MIN_SHARE) -> Straggler | None:
    """The candidate, when it passes `straggler`'s thresholds (and `consistent`)."""
    if found is None or not found.persistent or not found.consistent():
        return None
    if found.margin_ms < min_ms or found.share_of_step < min_share:
        return None
    return found


def _middle(values: Iterable[float]) -> float:
    """`statistics.median`, the same arithmetic (the middle value, or the mean of the two
    middle ones), without importing statistics (and random, fractions) on every analysis."""
    data = sorted(values)
    n = len(data)
    if n == 0:
        raise ValueError("no median of no values")
    if n % 2:
        return data[n // 2]
    return (data[n // 2 - 1] + data[n // 2]) / 2


# ---------------------------------------------------------------------------- summary.json
def _median(values: Iterable[float]) -> float | None:
    data = [v for v in values if math.isfinite(v)]
    return float(_middle(data)) if data else None


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _r(value: float | None) -> float | None:
    """A figure as summary.json holds it: rounded to 4 decimals, null when undefined."""
    if value is None:
        return None
    number = float(value)
    return round(number, 4) if math.isfinite(number) else None


def _rf(value: float) -> float:
    """A figure the schema requires to be a number, rounded (a non-finite one as 0)."""
    if isinstance(value, int):
        return value  # a sum of nothing stays the integer 0
    return _r(value) or 0.0


def multi_rank_summary(trace: Trace, min_ms: float = STRAGGLER_MIN_MS,
                       min_share: float = STRAGGLER_MIN_SHARE,
                       tables: Tables | None = None) -> MultiRank | None:
    """summary.json's `multi_rank` section; None when fewer than two ranks were loaded.
    `min_ms` and `min_share` are the straggler thresholds (`straggler`)."""
    t = Tables.of(trace, tables)
    if len(trace.rank_ids) < 2:
        return None
    return cross_rank_summary(t(rank_results), min_ms, min_share)


def cross_rank_summary(results: Sequence[RankResult], min_ms: float = STRAGGLER_MIN_MS,
                       min_share: float = STRAGGLER_MIN_SHARE) -> MultiRank | None:
    """The `multi_rank` section from reduced ranks only (no trace): what `perftune analyze DIR
    --jobs N` and `--scheduler` compute after gathering one RankResult per rank."""
    if len(results) < 2:
        return None
    results = sorted(results, key=lambda res: res.rank)
    rank_ids = [res.rank for res in results]
    waits = waits_of_calls(c for res in results for c in res.calls)
    rows = rank_steps_of(results, waits)
    table = steps_across_ranks_of(rows)
    slowest = Counter(s.slowest_rank for s in table)
    sources = {res.rank: res.source for res in results}
    per_rank = []
    for r in rank_ids:
        mine = [row for row in rows if row.rank == r]
        per_rank.append(RankStats(
            rank=r,
            steps=len(mine),
            median_step_ms=_r(_median(row.dur_ms for row in mine)),
            comm_ms_per_step=_rf(_mean([row.comm_ms for row in mine]) or 0.0),
            exposed_comm_ms_per_step=_rf(_mean([row.exposed_ms for row in mine]) or 0.0),
            wait_ms_per_step=_rf(_mean([row.wait_ms for row in mine]) or 0.0),
            busy_ms_per_step=_r(_mean([row.busy_ms for row in mine])),
            slowest_in_steps=slowest.get(r, 0),
            comm_source=sources.get(r, "none"),  # type: ignore[arg-type]
        ))
    candidate = straggler_candidate_of(table, rows)
    found = straggler_of(candidate, min_ms, min_share)
    kinds = {s for s in sources.values() if s != "none"}
    return MultiRank(
        ranks=len(rank_ids),
        comm_source=kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "none"),  # type: ignore[arg-type]
        steps_compared=len(table),
        step_skew_ms=Skew(median=_r(_median(s.dur_skew_ms for s in table)),
                          max=_r(max((s.dur_skew_ms for s in table), default=None))),
        busy_skew_ms=Skew(median=_r(_median(s.busy_skew_ms for s in table)),
                          max=_r(max((s.busy_skew_ms for s in table), default=None))),
        straggler=None if found is None else StragglerRank(
            rank=found.rank, slowest_in_steps=found.slowest_in, steps=found.steps,
            margin_ms=_rf(found.margin_ms), share_of_step=_rf(found.share_of_step)),
        largest_margin=None if candidate is None else LargestMargin(
            rank=candidate.rank, margin_ms=_rf(candidate.margin_ms),
            slowest_in_steps=candidate.slowest_in),
        per_rank=per_rank,
        per_step=[StepAcrossRanksRow(
            step=s.step, ranks=s.ranks, median_step_ms=_rf(s.median_dur_ms),
            step_skew_ms=_rf(s.dur_skew_ms), busy_skew_ms=_rf(s.busy_skew_ms),
            slowest_rank=s.slowest_rank, fastest_rank=s.fastest_rank,
            max_wait_ms=_rf(s.max_wait_ms)) for s in table],
        rank_steps=[RankStepRow(
            rank=row.rank, step=row.step, dur_ms=_rf(row.dur_ms), comm_ms=_rf(row.comm_ms),
            exposed_ms=_rf(row.exposed_ms), wait_ms=_rf(row.wait_ms),
            exposed_wait_ms=_rf(row.exposed_wait_ms), busy_ms=_rf(row.busy_ms),
            calls=row.calls, matched=row.matched) for row in rows],
        collectives=CollectiveTotals(
            calls=sum(len(res.calls) for res in results),
            matched=len(waits),
            wait_ms_by_rank={str(r): _rf(sum(row.wait_ms for row in rows if row.rank == r))
                             for r in rank_ids}),
    )
