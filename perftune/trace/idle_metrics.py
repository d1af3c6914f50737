"""When the device sits idle inside a step, and why; tiny kernels; host-side overhead.

Device idle is measured on the device timeline: inside each step's window, the time no kernel,
copy or memset runs on any stream of the rank. Each gap gets one cause, judged from what the
host was doing:

- `input`:      the host was waiting for the next batch (a DataLoader `__next__` covers most
                of the gap);
- `sync`:       the host had blocked in a synchronising call until the device drained, so
                nothing was queued when the device finished (the call ends where the gap starts);
- `dependency`: work had been queued before the gap began but had to wait (a stream waiting
                on an event, e.g. for a collective or another stream);
- `launch`:     a short gap between back-to-back kernels (shorter than `launch_gap_us`): the
                host issues kernels more slowly than the device runs them;
- `host`:       the host was busy elsewhere (Python, operator dispatch, CPU ops) and launched
                the next work late.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from perftune._dataclasses import lazy_dataclass
from perftune.trace import categories as C
from perftune.trace.comm import covered, merge_intervals
from perftune.trace.groups import distinct, unique_codes
from perftune.trace.metrics import clipped_sums, covered_in_windows, sync_call_mask
from perftune.trace.model import NO_ID, Trace, nearest_ancestor
from perftune.trace.tables import Tables

CAUSES = ("input", "sync", "dependency", "launch", "host")
LAUNCH_GAP_US = 10.0


@lazy_dataclass(frozen=True)
class IdleGap:
    rank: int
    step: int  # index into trace.steps
    start: float
    end: float
    cause: str
    host_row: int  # the host event blamed (DataLoader annotation, sync call, ...), else -1
    next_device_row: int  # the device event that ended the gap, else -1

    @property
    def dur(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class StepIdle:
    """Device idle time of one step, in milliseconds, split by cause."""

    rank: int
    step: int
    dur_ms: float
    busy_ms: float
    idle_ms: float
    by_cause: dict[str, float] = field(default_factory=dict)

    @property
    def idle_share(self) -> float:
        return self.idle_ms / self.dur_ms if self.dur_ms > 0 else 0.0


def _dataloader_mask(trace: Trace) -> np.ndarray:
    mask: np.ndarray = trace.name_startswith(C.DATALOADER_PREFIX) & ~trace.is_device
    return mask


def _work_mask(trace: Trace) -> np.ndarray:
    mask: np.ndarray = trace.cat_mask(C.DEVICE_WORK_CATS)
    return mask


@dataclass(frozen=True)
class IdleGapColumns:
    """Every idle gap as columns (one entry per gap, in the order `idle_gaps` lists them):
    rank by rank, step by step, in time order within a step."""

    rank: np.ndarray
    step: np.ndarray  # index into trace.steps
    start: np.ndarray
    end: np.ndarray
    cause: np.ndarray  # index into CAUSES
    host_row: np.ndarray
    next_device_row: np.ndarray

    def __len__(self) -> int:
        return len(self.start)

    @property
    def dur(self) -> np.ndarray:
        d: np.ndarray = self.end - self.start
        return d

    def where(self, mask: np.ndarray) -> IdleGapColumns:
        return IdleGapColumns(self.rank[mask], self.step[mask], self.start[mask], self.end[mask],
                              self.cause[mask], self.host_row[mask], self.next_device_row[mask])

    def of_rank(self, rank: int, causes: Sequence[str] | None = None) -> IdleGapColumns:
        """The gaps of one rank (of the given causes only, when given)."""
        mask = self.rank == rank
        if causes is not None:
            mask &= np.isin(self.cause, [CAUSES.index(c) for c in causes])
        return self.where(mask)


def _no_gaps() -> IdleGapColumns:
    i, f = np.empty(0, dtype=np.int64), np.empty(0)
    return IdleGapColumns(i, i, f, f, i, i, i)


def idle_gaps(trace: Trace, tables: Tables | None = None) -> list[IdleGap]:
    """Every gap in device activity inside a step, with its cause (see the module docstring).
    One object per gap: the rules read `idle_gap_columns`."""
    g = Tables.of(trace, tables)(idle_gap_columns)
    return [IdleGap(r, step, start, end, CAUSES[c], row, nx)
            for r, step, start, end, c, row, nx in zip(
                g.rank.tolist(), g.step.tolist(), g.start.tolist(), g.end.tolist(),
                g.cause.tolist(), g.host_row.tolist(), g.next_device_row.tolist(), strict=True)]


def idle_gap_columns(trace: Trace, tables: Tables | None = None) -> IdleGapColumns:
    """Every gap in device activity inside a step, with its cause, as columns."""
    return _idle_gaps(trace, LAUNCH_GAP_US, tables)


def _idle_gaps(trace: Trace, launch_gap_us: float, tables: Tables | None = None) -> IdleGapColumns:
    if not trace.has_device_activity:
        return _no_gaps()
    ts = trace.col("ts")
    end = trace.col("end")
    rank = trace.col("rank")
    work = _work_mask(trace)
    dl = _dataloader_mask(trace)
    syncs = sync_call_mask(trace, tables)
    launch = trace.launch_of_device_event
    parts: list[tuple[np.ndarray, ...]] = []
    for r in trace.rank_ids:
        on_rank = rank == r
        w_rows = np.flatnonzero(work & on_rank)
        if len(w_rows) == 0:
            continue
        w_order = w_rows[np.argsort(ts[w_rows], kind="stable")]
        w_ts = ts[w_order]
        ms, me = merge_intervals(ts[w_rows], end[w_rows])
        dl_rows = np.flatnonzero(dl & on_rank)
        dls, dle = merge_intervals(ts[dl_rows], end[dl_rows])
        s_rows = np.flatnonzero(syncs & on_rank)
        s_end = end[s_rows]
        s_order = np.argsort(s_end)
        s_rows, s_end = s_rows[s_order], s_end[s_order]
        g0s: list[np.ndarray] = []
        g1s: list[np.ndarray] = []
        ks: list[np.ndarray] = []
        for k, step in enumerate(trace.steps):
            if step.rank != r:
                continue
            # Complement of the merged busy intervals inside the step window.
            lo, hi = step.start, step.end
            # The merged intervals are sorted and disjoint: those overlapping the step are one
            # slice (a search per step, not a mask over every interval per step).
            inside = slice(int(np.searchsorted(me, lo, side="right")),
                           int(np.searchsorted(ms, hi, side="left")))
            bs = np.clip(ms[inside], lo, hi)
            be = np.clip(me[inside], lo, hi)
            g_start = np.concatenate([[lo], be])
            g_end = np.concatenate([bs, [hi]])
            keep = g_end - g_start > 0.0
            g0s.append(g_start[keep])
            g1s.append(g_end[keep])
            ks.append(np.full(int(keep.sum()), k, dtype=np.int64))
        g0 = np.concatenate(g0s) if g0s else np.empty(0)
        if len(g0):
            g1, g_step = np.concatenate(g1s), np.concatenate(ks)
            cause, host, nxt = _classify(g0, g1, dls, dle, s_rows, s_end, w_order, w_ts, ts,
                                         launch, launch_gap_us)
            parts.append((np.full(len(g0), r, dtype=np.int64), g_step, g0, g1, cause, host, nxt))
    if not parts:
        return _no_gaps()
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    return IdleGapColumns(cols[0], cols[1].astype(np.int64), cols[2].astype(np.float64),
                          cols[3].astype(np.float64), cols[4].astype(np.int64),
                          cols[5].astype(np.int64), cols[6].astype(np.int64))


def _classify(g0: np.ndarray, g1: np.ndarray, dls: np.ndarray,
              dle: np.ndarray, s_rows: np.ndarray, s_end: np.ndarray, w_order: np.ndarray,
              w_ts: np.ndarray, ts: np.ndarray, launch: np.ndarray,
              launch_gap_us: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cause (index into CAUSES), blamed host row and next device row of each gap [g0, g1)
    of one rank, over whole arrays (first match wins)."""
    n = len(g0)
    gap = g1 - g0
    nxt_pos = np.searchsorted(w_ts, g1, side="left")
    has_next = nxt_pos < len(w_order)
    nxt = np.where(has_next, w_order[np.minimum(nxt_pos, max(len(w_order) - 1, 0))], NO_ID)
    nxt_launch = np.where(has_next, launch[np.maximum(nxt, 0)], NO_ID)
    # Blame the DataLoader annotation that overlaps the gap the most (its row is found by the
    # rule; here the gap keeps no row, the annotation intervals are merged).
    is_input = (covered(dls, dle, g0, g1) >= 0.5 * gap) if len(dls) else np.zeros(n, dtype=bool)
    # A sync call that returned when the device drained, i.e. at the start of the gap.
    tol = 2.0 + np.minimum(0.5 * gap, 50.0)
    a = np.searchsorted(s_end, g0 - 2.0, side="left")
    b = np.searchsorted(s_end, g0 + tol, side="right")
    is_sync = b > a
    sync_row = s_rows[np.minimum(a, max(len(s_rows) - 1, 0))] if len(s_rows) else np.full(n, NO_ID)
    is_dep = (nxt_launch != NO_ID) & (ts[np.maximum(nxt_launch, 0)] < g0 - 1.0)
    is_launch = (gap < launch_gap_us) & has_next
    cause = np.select([is_input, is_sync, is_dep, is_launch], [0, 1, 2, 3], 4)
    host = np.select([is_input, is_sync], [NO_ID, sync_row], nxt_launch)
    return cause, host, nxt


def step_idle(trace: Trace, tables: Tables | None = None) -> list[StepIdle]:
    """Per step: device busy and idle time (ms) on the device timeline, idle split by cause."""
    t = Tables.of(trace, tables)
    if not trace.has_device_activity:
        return []
    gaps = t(idle_gap_columns)
    n_steps, n_causes = len(trace.steps), len(CAUSES)
    key = gaps.step * n_causes + gaps.cause
    # Each (step, cause) sum adds its gaps in gap order, as a running float sum does
    # (bincount adds in index order).
    sums = np.bincount(key, weights=gaps.dur / 1000.0,
                       minlength=n_steps * n_causes).reshape(-1, n_causes).tolist()
    # A step's idle time adds its causes in the order they first occur in the step.
    present, first, _ = unique_codes(key, return_index=True)
    order = np.argsort(first, kind="stable")
    seen: dict[int, list[int]] = {}
    for kc in present[order].tolist():
        seen.setdefault(kc // n_causes, []).append(kc % n_causes)
    out = []
    for k, step in enumerate(trace.steps):
        row = sums[k] if k < len(sums) else [0.0] * n_causes
        idle = sum(row[c] for c in seen.get(k, ()))
        dur = step.dur / 1000.0
        out.append(StepIdle(rank=step.rank, step=k, dur_ms=dur, busy_ms=max(0.0, dur - idle),
                            idle_ms=idle, by_cause={c: round(row[i], 6) if i in seen.get(k, ())
                                                    else 0.0 for i, c in enumerate(CAUSES)}))
    return out


def gaps_overlapping(trace: Trace, gaps: IdleGapColumns, rows: np.ndarray) -> np.ndarray:
    """For each host row: how much of the given gaps it overlaps (µs)."""
    if not len(gaps) or len(rows) == 0:
        return np.zeros(len(rows))
    gs, ge = merge_intervals(gaps.start, gaps.end)
    return covered(gs, ge, trace.col("ts")[rows], trace.col("end")[rows])


# ---------------------------------------------------------------------------- tiny kernels
@dataclass(frozen=True)
class TinyKernels:
    """Kernels that run for less time than the host call that launched them."""

    rows: np.ndarray  # kernel rows
    launch_rows: np.ndarray
    steps: np.ndarray  # step index of each (by launch time), -1 outside steps
    dur_us: np.ndarray
    launch_us: np.ndarray
    wait_us: np.ndarray  # device idle before each one, capped at its launch call's duration
    kernel_count: int  # all kernels in steps


def tiny_kernels(trace: Trace, tables: Tables | None = None) -> TinyKernels:
    kern = trace.cat_is(C.KERNEL)
    launch = trace.launch_of_device_event
    ts = trace.col("ts")
    end = trace.col("end")
    dur = trace.col("dur")
    rank = trace.col("rank")
    empty = np.empty(0, dtype=np.int64)
    rows = np.flatnonzero(kern & (launch != NO_ID))
    if len(rows) == 0:
        return TinyKernels(empty, empty, empty, np.empty(0), np.empty(0), np.empty(0), 0)
    lrows = launch[rows]
    steps_all = trace.step_of(ts[lrows], rank[lrows])
    tiny = dur[rows] < dur[lrows]
    # Device idle before each kernel: from the latest end of earlier work on the same rank.
    work = np.flatnonzero(_work_mask(trace))
    wait = np.zeros(len(rows))
    for r in trace.rank_ids:
        w = work[rank[work] == r]
        order = w[np.lexsort((end[w], ts[w]))]
        run_end = np.maximum.accumulate(end[order])
        sel = np.flatnonzero((rank[rows] == r) & tiny)
        if len(sel) == 0 or len(order) == 0:
            continue
        # Each kernel's place in the rank's work order (0 when it is not there).
        where = np.zeros(trace.n, dtype=np.int64)
        where[order] = np.arange(len(order))
        p = where[rows[sel]]
        prev_end = np.where(p > 0, run_end[np.maximum(p - 1, 0)], ts[rows[sel]])
        wait[sel] = np.maximum(0.0, ts[rows[sel]] - prev_end)
    keep = tiny & (steps_all != NO_ID)
    return TinyKernels(rows=rows[keep], launch_rows=lrows[keep], steps=steps_all[keep],
                       dur_us=dur[rows][keep], launch_us=dur[lrows][keep],
                       wait_us=np.minimum(wait[keep], dur[lrows][keep]),
                       kernel_count=int(np.count_nonzero(steps_all != NO_ID)))


# ---------------------------------------------------------------------------- host overhead
@lazy_dataclass(frozen=True)
class HostOverhead:
    """Where a rank's host time goes in one step (ms): inside ops vs between them."""

    rank: int
    step: int
    dur_ms: float
    op_ms: float  # union over the rank's threads of top-level ops, runtime calls, DataLoader waits
    tiny_op_ms: float  # top-level ops shorter than the tiny threshold
    python_ms: float  # step time when no thread of the rank runs any of those (Python, profiler)
    op_count: int  # cpu_ops starting in the step, nested ones included
    top_level_ops: int

    @property
    def overhead_share(self) -> float:
        return (self.python_ms + self.tiny_op_ms) / self.dur_ms if self.dur_ms > 0 else 0.0


def host_overhead(trace: Trace, tables: Tables | None = None) -> list[HostOverhead]:
    return host_overhead_with(trace, tiny_op_us=20.0)


def host_overhead_with(trace: Trace, tiny_op_us: float) -> list[HostOverhead]:
    is_op = trace.cat_mask({C.CPU_OP})
    busy_kind = is_op | trace.cat_mask(C.RUNTIME_CATS) | _dataloader_mask(trace)
    ts = trace.col("ts")
    end = trace.col("end")
    rank = trace.col("rank")
    # Top-level: no cpu_op or runtime call above (annotations and python frames do not count).
    top_level = busy_kind & (nearest_ancestor(trace.parent, busy_kind) == NO_ID)
    steps = trace.steps
    lo = np.fromiter((s.start for s in steps), np.float64, len(steps))
    hi = np.fromiter((s.end for s in steps), np.float64, len(steps))
    step_rank = np.fromiter((s.rank for s in steps), np.int64, len(steps))
    op_ms = np.zeros(len(steps))
    tiny_ms = np.zeros(len(steps))
    op_count = np.zeros(len(steps), np.int64)
    top_ops = np.zeros(len(steps), np.int64)
    # All steps of a rank at once (sorted times and prefix sums): a pass over every event per
    # step made 10^5 steps quadratic.
    for r in distinct(step_rank).tolist():
        sel = np.flatnonzero(step_rank == r)
        a, b = lo[sel], hi[sel]
        on_rank = rank == r
        top = np.flatnonzero(top_level & on_rank)
        op_ms[sel] = covered_in_windows(ts[top], end[top], a, b)
        top_op = top[is_op[top]]
        tiny = top_op[(end[top_op] - ts[top_op]) < tiny_op_us]
        tiny_ms[sel] = clipped_sums(ts[tiny], end[tiny], a, b)
        # Top-level ops overlapping [a, b): those starting before b, less those ended by a.
        top_ops[sel] = np.maximum(0, np.searchsorted(np.sort(ts[top_op]), b, "left")
                                  - np.searchsorted(np.sort(end[top_op]), a, "right"))
        # cpu_ops starting in [a, b), less zero-length ones exactly at a (they end at a).
        ops = np.flatnonzero(is_op & on_rank)
        op_ts = np.sort(ts[ops])
        instant = np.sort(ts[ops][end[ops] <= ts[ops]])
        op_count[sel] = (np.searchsorted(op_ts, b, "left") - np.searchsorted(op_ts, a, "left")
                         - (np.searchsorted(instant, a, "right")
                            - np.searchsorted(instant, a, "left")))
    out = []
    for k, step in enumerate(steps):
        busy_us = float(op_ms[k])
        out.append(HostOverhead(
            rank=step.rank, step=k, dur_ms=step.dur / 1000.0, op_ms=busy_us / 1000.0,
            tiny_op_ms=float(tiny_ms[k]) / 1000.0,
            python_ms=max(0.0, step.dur - busy_us) / 1000.0,
            op_count=int(op_count[k]), top_level_ops=int(top_ops[k])))
    return out


@lazy_dataclass(frozen=True)
class ModuleLoop:
    """The module instance a rank calls most often per step (`nn.Module: LSTMCell_0` events,
    recorded with python stacks): a Python loop stepping one small module — an RNN cell over
    time steps, a policy over environment steps — shows as tens of calls per step."""

    rank: int
    module: str               # the instance, as the trace names it: 'LSTMCell_0'
    calls_per_step: float     # mean over the rank's steps
    steps: int


_MODULE_EVENT = "nn.Module: "


def module_loops(trace: Trace, tables: Tables | None = None) -> list[ModuleLoop]:
    """Per rank: the module instance with the most calls per step (mean over the steps); none
    for a rank without module events in its steps."""
    rows = np.flatnonzero(trace.name_startswith(_MODULE_EVENT))
    if not len(rows) or not trace.steps:
        return []
    rank = trace.col("rank")
    steps = trace.step_of(trace.col("ts")[rows], rank[rows])
    keep = steps >= 0
    rows = rows[keep]
    counts: dict[tuple[int, str], int] = {}
    for row in rows.tolist():
        key = (int(rank[row]), trace.name_of(row))
        counts[key] = counts.get(key, 0) + 1
    n_steps: dict[int, int] = {}
    for s in trace.steps:
        n_steps[s.rank] = n_steps.get(s.rank, 0) + 1
    best: dict[int, ModuleLoop] = {}
    for (r, name), calls in sorted(counts.items()):
        per_step = calls / max(1, n_steps.get(r, 1))
        if r not in best or per_step > best[r].calls_per_step:
            best[r] = ModuleLoop(rank=r, module=name.removeprefix(_MODULE_EVENT),
                                 calls_per_step=per_step, steps=n_steps.get(r, 0))
    return [best[r] for r in sorted(best)]
