"""Pure functions over a `Trace`: step times, device busy/idle, syncs, copies, DataLoader waits.

These feed `perftune analyze`'s summary and the rules. None of them print or do I/O. Times
are microseconds unless a name says `_ms`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from perftune.trace import categories as C
from perftune.trace.frames import Frame
from perftune.trace.groups import distinct, median, percentile
from perftune.trace.intervals import union_length as union_length
from perftune.trace.model import NO_ID, Trace
from perftune.trace.tables import Tables

if TYPE_CHECKING:
    import pandas as pd


# ---------------------------------------------------------------------------- intervals
def clipped_union(starts: np.ndarray, ends: np.ndarray, lo: float, hi: float) -> float:
    """union_length of the intervals clipped to [lo, hi]."""
    s = np.clip(np.asarray(starts, dtype=np.float64), lo, hi)
    e = np.clip(np.asarray(ends, dtype=np.float64), lo, hi)
    return union_length(s, e)


def gaps(starts: np.ndarray, ends: np.ndarray, lo: float, hi: float) -> list[tuple[float, float]]:
    """The sub-intervals of [lo, hi] that no interval covers, in time order."""
    s = np.clip(np.asarray(starts, dtype=np.float64), lo, hi)
    e = np.clip(np.asarray(ends, dtype=np.float64), lo, hi)
    keep = e > s
    s, e = s[keep], e[keep]
    order = np.argsort(s, kind="stable")
    out: list[tuple[float, float]] = []
    cursor = lo
    for a, b in zip(s[order].tolist(), e[order].tolist(), strict=True):
        if a > cursor:
            out.append((cursor, a))
        cursor = max(cursor, b)
    if hi > cursor:
        out.append((cursor, hi))
    return out


def covered_in_windows(starts: np.ndarray, ends: np.ndarray, lo: np.ndarray,
                       hi: np.ndarray) -> np.ndarray:
    """For each window [lo, hi): the length of it that the union of the intervals covers.

    The union is merged once; each window then costs two binary searches into it, so many
    windows (one per step) cost O((n + windows) log n), whatever the intervals' lengths.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    s_all = np.asarray(starts, dtype=np.float64)
    e_all = np.asarray(ends, dtype=np.float64)
    keep = e_all > s_all
    if not keep.any() or not len(lo):
        return np.zeros(len(lo))
    order = np.argsort(s_all[keep], kind="stable")
    s = s_all[keep][order]
    e = np.maximum.accumulate(e_all[keep][order])
    new_run = np.empty(len(s), dtype=bool)
    new_run[0] = True
    new_run[1:] = s[1:] > e[:-1]
    run_start = s[new_run]
    run_end = e[np.append(np.flatnonzero(new_run)[1:] - 1, len(s) - 1)]
    run_len = run_end - run_start
    before_run = np.concatenate([[0.0], np.cumsum(run_len)])

    def upto(t: np.ndarray) -> np.ndarray:
        """Covered length in (-inf, t)."""
        k = np.searchsorted(run_start, t, side="right")
        last = np.maximum(k - 1, 0)
        part = np.clip(t - run_start[last], 0.0, run_len[last])
        return np.where(k > 0, before_run[last] + part, 0.0)

    out: np.ndarray = np.maximum(0.0, upto(np.maximum(hi, lo)) - upto(lo))
    return out


def clipped_sums(starts: np.ndarray, ends: np.ndarray, lo: np.ndarray,
                 hi: np.ndarray) -> np.ndarray:
    """For each window [lo, hi): the summed length of the intervals clipped to it (overlaps
    counted as often as they occur). Each interval's part below t is max(0, t - start) -
    max(0, t - end): sums of those are two binary searches into sorted prefix sums."""
    s = np.sort(np.asarray(starts, dtype=np.float64))
    e = np.sort(np.asarray(ends, dtype=np.float64))
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.maximum(np.asarray(hi, dtype=np.float64), lo)
    if not len(s) or not len(lo):
        return np.zeros(len(lo))
    cs = np.concatenate([[0.0], np.cumsum(s)])
    ce = np.concatenate([[0.0], np.cumsum(e)])

    def below(t: np.ndarray) -> np.ndarray:
        ks = np.searchsorted(s, t, side="right")
        ke = np.searchsorted(e, t, side="right")
        below_t: np.ndarray = (ks * t - cs[ks]) - (ke * t - ce[ke])
        return below_t

    out: np.ndarray = np.maximum(0.0, below(hi) - below(lo))
    return out


# ---------------------------------------------------------------------------- steps
def step_times(trace: Trace) -> pd.DataFrame:
    """One row per step: rank, index, name, start, end, dur_ms."""
    import pandas as pd

    rows = [(s.rank, s.index, s.name, s.start, s.end, s.dur / 1000.0) for s in trace.steps]
    return pd.DataFrame(rows, columns=["rank", "index", "name", "start", "end", "dur_ms"])


@dataclass(frozen=True)
class Distribution:
    count: int
    median: float
    p10: float
    p90: float
    mean: float
    min: float
    max: float

    @staticmethod
    def of(values: Iterable[float]) -> Distribution:
        arr = np.asarray(list(values), dtype=np.float64)
        if arr.size == 0:
            nan = float("nan")
            return Distribution(0, nan, nan, nan, nan, nan, nan)
        return Distribution(int(arr.size), float(median(arr)), float(percentile(arr, 10)),
                            float(percentile(arr, 90)), float(arr.mean()), float(arr.min()),
                            float(arr.max()))


def step_time_distribution(trace: Trace) -> Distribution:
    return Distribution.of(s.dur / 1000.0 for s in trace.steps)


# ---------------------------------------------------------------------------- device
def device_event_steps(trace: Trace) -> np.ndarray:
    """Step (index into trace.steps) of every device event, by the host call that launched it.

    Device work runs behind the host; it belongs to the step whose host code issued it. Device
    events whose launch is unknown fall back to the step window containing their start.
    """
    dev = np.flatnonzero(trace.is_device)  # only device rows: a fraction of the trace
    launch = trace.launch_of_device_event[dev]
    ts = trace.col("ts")
    when = np.where(launch != NO_ID, ts[np.maximum(launch, 0)], ts[dev])
    out = np.full(trace.n, NO_ID, dtype=np.int64)
    out[dev] = trace.step_of(when, trace.col("rank")[dev])
    return out


def device_busy(trace: Trace, rank: int | None = None, device: int | None = None,
                start: float | None = None, end: float | None = None,
                cats: Iterable[str] = C.DEVICE_WORK_CATS) -> float:
    """µs during which the device(s) ran work of `cats` within [start, end] (union, so
    concurrent streams count once)."""
    sel = trace.cat_mask(cats) & trace.is_device
    if rank is not None:
        sel &= trace.col("rank") == rank
    if device is not None:
        sel &= trace.col("device") == device
    ts = trace.col("ts")[sel]
    te = trace.col("end")[sel]
    lo = float(ts.min()) if start is None and len(ts) else (start or 0.0)
    hi = float(te.max()) if end is None and len(te) else (end or 0.0)
    return clipped_union(ts, te, lo, hi)


def device_idle_gaps(trace: Trace, rank: int, start: float, end: float,
                     device: int | None = None, min_gap_us: float = 0.0) -> pd.DataFrame:
    """Stretches of [start, end] in which `rank`'s device(s) ran no work: start, end, dur_us."""
    import pandas as pd

    sel = trace.cat_mask(C.DEVICE_WORK_CATS) & trace.is_device & (trace.col("rank") == rank)
    if device is not None:
        sel &= trace.col("device") == device
    found = [(a, b, b - a) for a, b in gaps(trace.col("ts")[sel], trace.col("end")[sel],
                                            start, end) if b - a >= min_gap_us]
    return pd.DataFrame(found, columns=["start", "end", "dur_us"])


@dataclass(frozen=True)
class StepBreakdown:
    """Where one step's time went, in milliseconds.

    Device figures are the union of the rank's device work inside the step's window (so
    compute + idle never exceed the step); host figures are time inside those host calls.
    `kernel_count` counts the compute kernels the step's host code launched.
    """

    rank: int
    step: int
    dur_ms: float
    compute_ms: float
    communication_ms: float
    memcpy_ms: float
    memset_ms: float
    device_busy_ms: float
    device_idle_ms: float
    sync_ms: float
    dataloader_ms: float
    optimizer_ms: float
    kernel_count: int


def _category_masks(trace: Trace) -> dict[str, np.ndarray]:
    kernel = trace.cat_mask(C.KERNEL_CATS)
    comm = trace.comm_kernel_mask
    return {
        "compute": kernel & ~comm,
        "communication": comm,
        "memcpy": trace.cat_mask({C.MEMCPY}),
        "memset": trace.cat_mask({C.MEMSET}),
        "work": trace.cat_mask(C.DEVICE_WORK_CATS),
    }


def step_breakdown(trace: Trace, tables: Tables | None = None) -> list[StepBreakdown]:
    masks = _category_masks(trace)
    ts = trace.col("ts")
    end = trace.col("end")
    rank = trace.col("rank")
    is_dev = trace.is_device
    host = ~is_dev
    host_masks = {
        "sync": sync_call_mask(trace, tables),
        "dataloader": trace.name_startswith(C.DATALOADER_PREFIX) & host,
        "optimizer": trace.name_startswith(C.OPTIMIZER_STEP_PREFIX) & host,
    }
    dev_step = device_event_steps(trace)
    compute_launched = np.bincount(dev_step[masks["compute"] & (dev_step >= 0)],
                                   minlength=len(trace.steps))
    steps = trace.steps
    lo = np.fromiter((s.start for s in steps), np.float64, len(steps))
    hi = np.fromiter((s.end for s in steps), np.float64, len(steps))
    step_rank = np.fromiter((s.rank for s in steps), np.int64, len(steps))
    # Each figure for all of a rank's steps at once (one merged timeline per figure): linear
    # in events and steps, where a query per step and figure cost 100 s for 10^5 steps.
    figures = ("work", "compute", "communication", "memcpy", "memset", *host_masks)
    ms = {f: np.zeros(len(steps)) for f in figures}
    for r in distinct(step_rank).tolist():
        sel = np.flatnonzero(step_rank == r)
        on_rank = rank == r
        dev_rows = np.flatnonzero(masks["work"] & is_dev & on_rank)
        for f in figures:
            if f in host_masks:
                rows = np.flatnonzero(host_masks[f] & on_rank)
            else:
                rows = dev_rows if f == "work" else dev_rows[masks[f][dev_rows]]
            ms[f][sel] = covered_in_windows(ts[rows], end[rows], lo[sel], hi[sel]) / 1000.0
    has_device = trace.has_device_activity
    out: list[StepBreakdown] = []
    for k, step in enumerate(steps):
        dur_ms = step.dur / 1000.0
        device_busy_ms = float(ms["work"][k])
        out.append(StepBreakdown(
            rank=step.rank, step=step.index, dur_ms=dur_ms,
            compute_ms=float(ms["compute"][k]), communication_ms=float(ms["communication"][k]),
            memcpy_ms=float(ms["memcpy"][k]), memset_ms=float(ms["memset"][k]),
            device_busy_ms=device_busy_ms,
            device_idle_ms=max(0.0, dur_ms - device_busy_ms) if has_device else 0.0,
            sync_ms=float(ms["sync"][k]), dataloader_ms=float(ms["dataloader"][k]),
            optimizer_ms=float(ms["optimizer"][k]),
            kernel_count=int(compute_launched[k]) if k < len(compute_launched) else 0,
        ))
    return out


# ---------------------------------------------------------------------------- syncs
def _memcpy_kind_rows(trace: Trace) -> tuple[np.ndarray, list[tuple[str, str, str]]]:
    """Per row: index into the list of distinct (kind, src, dst) of memcpy names, else -1."""
    categories, codes = trace.strings("name"), trace.codes("name")
    kinds = [C.memcpy_kind(str(c)) for c in categories]
    is_copy = trace.cat_mask({C.MEMCPY})
    return np.where(is_copy, codes, NO_ID), kinds


def pageable_copy_launch_mask(trace: Trace) -> np.ndarray:
    """Runtime rows whose device copy moves to or from pageable host memory."""
    code, kinds = _memcpy_kind_rows(trace)
    pageable = np.fromiter(("Pageable" in (k[1], k[2]) for k in kinds), bool, len(kinds))
    dev_rows = np.flatnonzero(code != NO_ID)
    if len(dev_rows) == 0:
        return np.zeros(trace.n, bool)
    hit = dev_rows[pageable[code[dev_rows]]]
    launch = trace.launch_of_device_event[hit]
    out = np.zeros(trace.n, bool)
    out[launch[launch != NO_ID]] = True
    return out


def sync_call_mask(trace: Trace, tables: Tables | None = None) -> np.ndarray:
    """Host runtime calls in which the host waits for the device: synchronize calls, blocking
    copies, and async copies to or from pageable memory (which the driver runs synchronously).
    With `tables` (the analysis's), computed once per trace and shared: never modify it."""
    return Tables.of(trace, tables)(_sync_call_mask)


def _sync_call_mask(trace: Trace, tables: Tables | None = None) -> np.ndarray:
    host = ~trace.is_device
    named = trace.name_isin(C.SYNC_CALLS | C.BLOCKING_COPY_CALLS)
    async_copy = trace.name_isin(C.ASYNC_COPY_CALLS) & pageable_copy_launch_mask(trace)
    mask: np.ndarray = (named | async_copy) & host
    return mask


def _sync_kind(call: str) -> str:
    if call in C.SYNC_CALLS:
        if "Stream" in call:
            return "stream-sync"
        if "Event" in call:
            return "event-sync"
        return "device-sync"
    if call in C.BLOCKING_COPY_CALLS:
        return "blocking-copy"
    return "pageable-copy"


@dataclass(frozen=True)
class SyncCall:
    """One host↔device synchronisation: the runtime call, its cost and what caused it."""

    row: int
    rank: int
    step: int  # index into trace.steps, -1 outside every step
    call: str
    dur_us: float
    op_chain: tuple[str, ...]
    cause: str  # innermost torch op (aten::nonzero, aten::item, ...) or the call itself
    frame: Frame | None
    # stream-sync | event-sync | device-sync | blocking-copy | pageable-copy
    kind: str = ""
    # The innermost host op around the call (-1: none): calls of one `.item()` share it.
    op_row: int = NO_ID


def host_device_syncs(trace: Trace, tables: Tables | None = None) -> list[SyncCall]:
    """Every sync call on the host, with the op chain and user frame that led to it."""
    rows = np.flatnonzero(sync_call_mask(trace, tables))
    if len(rows) == 0:
        return []
    steps = trace.step_of(trace.col("ts")[rows], trace.col("rank")[rows])
    frames = trace.user_frames(rows.tolist())
    op_rows = trace._op_rows
    rank = trace.col("rank")
    dur = trace.col("dur")
    out = []
    for row, step, frame in zip(rows.tolist(), steps.tolist(), frames, strict=True):
        chain = tuple(trace.op_chain(row))
        ops = [c for c in chain[:-1] if c.startswith(("aten::", "c10d::", "torchvision::"))]
        cause = _innermost_cause(ops) if ops else chain[-1]
        op_row = next((a for a in trace.ancestors(row) if op_rows[a]), NO_ID)
        out.append(SyncCall(row=row, rank=int(rank[row]), step=step,
                            call=chain[-1], dur_us=float(dur[row]), op_chain=chain,
                            cause=cause, frame=frame, kind=_sync_kind(chain[-1]), op_row=op_row))
    return out


# Ops that only pass a sync through (the copy that reads the value back); the cause is the op
# that needed the value on the host.
_PASS_THROUGH = frozenset({"aten::_local_scalar_dense", "aten::copy_", "aten::_to_copy", "aten::to",
                           "aten::item", "aten::is_nonzero"})


def _innermost_cause(ops: list[str]) -> str:
    """The op that made the host need device data: the innermost op that is not a pass-through.

    For `aten::index → aten::nonzero → aten::item` the cause is aten::nonzero; for a bare
    `aten::item → aten::_local_scalar_dense` (all pass-throughs) it is the outermost op,
    aten::item.
    """
    for op in reversed(ops):
        if op not in _PASS_THROUGH:
            return op
    return ops[0]


# ---------------------------------------------------------------------------- copies
def memcpy_events(trace: Trace) -> pd.DataFrame:
    """Device copies: row, rank, kind (HtoD/DtoH/DtoD/...), src and dst memory (Pageable,
    Pinned, Device, ...), bytes, dur_us, step (of the launching host call), launch row."""
    import pandas as pd

    code, kinds = _memcpy_kind_rows(trace)
    rows = np.flatnonzero(code != NO_ID)
    picked = [kinds[c] for c in code[rows].tolist()]
    return pd.DataFrame({
        "row": rows,
        "rank": trace.col("rank")[rows],
        "kind": pd.Series([k[0] for k in picked], dtype=object),
        "src": pd.Series([k[1] for k in picked], dtype=object),
        "dst": pd.Series([k[2] for k in picked], dtype=object),
        "bytes": trace.col("nbytes")[rows],
        "dur_us": trace.col("dur")[rows],
        "step": device_event_steps(trace)[rows],
        "launch": trace.launch_of_device_event[rows],
    })


def pageable_copies(trace: Trace) -> pd.DataFrame:
    copies = memcpy_events(trace)
    return copies[((copies["src"] == "Pageable") | (copies["dst"] == "Pageable")).to_numpy()]


# ---------------------------------------------------------------------------- data loading
def dataloader_waits(trace: Trace) -> pd.DataFrame:
    """`enumerate(DataLoader)#...__next__` annotations: how long each step waited for data."""
    import pandas as pd

    rows = np.flatnonzero(trace.name_startswith(C.DATALOADER_PREFIX) & ~trace.is_device)
    steps = trace.step_of(trace.col("ts")[rows], trace.col("rank")[rows])
    picked = [trace.name_of(r) for r in rows.tolist()]
    return pd.DataFrame({
        "row": rows, "rank": trace.col("rank")[rows],
        "name": pd.Series(picked, dtype=object),
        "dur_us": trace.col("dur")[rows], "step": steps,
        # _SingleProcessDataLoaderIter loads in the training process (num_workers=0).
        "multiprocess": np.fromiter(("MultiProcessing" in p for p in picked), bool, len(picked)),
    })


# ---------------------------------------------------------------------------- operators
def self_times(trace: Trace) -> pd.DataFrame:
    """Host ops (cpu_op, user annotations): row, name, dur_us, self_us (dur minus child ops)."""
    import pandas as pd

    rows, dur_us, self_us = _self_time_columns(trace)
    names = np.asarray(trace.strings("name"), dtype=object)[trace.codes("name")[rows]]
    return pd.DataFrame({"row": rows, "name": names, "dur_us": dur_us, "self_us": self_us})


def _self_time_columns(trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`self_times` as (rows, dur_us, self_us) arrays."""
    host_ops = trace.cat_mask(C.OP_CATS) & ~trace.is_device
    parent = trace.parent
    dur = trace.col("dur")
    rows = np.flatnonzero(host_ops)
    par = parent[rows]
    has_parent = par != NO_ID
    child_time = np.bincount(par[has_parent], weights=dur[rows][has_parent],
                             minlength=trace.n) if has_parent.any() else np.zeros(trace.n)
    self_us = np.maximum(0.0, dur - child_time)
    return rows, dur[rows], self_us[rows]


def top_host_ops(trace: Trace, n: int = 15) -> pd.DataFrame:
    """Host operators by total self time: name, calls, self_ms, total_ms.

    ProfilerStep#N markers are left out: they are step windows around everything, not
    operators (their "self" time is every Python line of the step), and summary.json, the
    Markdown and the HTML list the same operators."""
    import pandas as pd

    top = top_host_op_columns(trace, n)
    if top is None:
        return pd.DataFrame(columns=["name", "calls", "self_ms", "total_ms"])
    return pd.DataFrame(top)


def top_host_op_columns(trace: Trace, n: int = 15) -> dict[str, Any] | None:
    """`top_host_ops` as columns (name, calls, self_ms, total_ms), None when there are none."""
    rows, dur_us, self_us = _self_time_columns(trace)
    marker = trace.name_startswith(C.PROFILER_STEP_PREFIX)[rows]
    rows, dur_us, self_us = rows[~marker], dur_us[~marker], self_us[~marker]
    if len(rows) == 0:
        return None
    codes = trace.codes("name")[rows]
    present, calls, sums = _sums_by_code(codes, self_us, dur_us)
    top = np.argsort(-sums[0], kind="stable")[:n]
    categories = trace.strings("name")
    return {"name": [str(categories[c]) for c in present[top]],
            "calls": calls[top],
            "self_ms": sums[0][top] / 1000.0,
            "total_ms": sums[1][top] / 1000.0}


def _sums_by_code(codes: np.ndarray, *weights: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per distinct code (ascending): the code, its count, and the sum of each weight."""
    counts = np.bincount(codes)
    present = np.flatnonzero(counts)
    sums = [np.bincount(codes, weights=w, minlength=len(counts))[present] for w in weights]
    return present, counts[present], sums


def top_kernels(trace: Trace, n: int = 15) -> pd.DataFrame:
    """Device kernels by total time: name, calls, total_ms, mean_us."""
    import pandas as pd

    top = top_kernel_columns(trace, n)
    if top is None:
        return pd.DataFrame(columns=["name", "calls", "total_ms", "mean_us"])
    return pd.DataFrame(top)


def top_kernel_columns(trace: Trace, n: int = 15) -> dict[str, Any] | None:
    """`top_kernels` as columns (name, calls, total_ms, mean_us), None when there are none."""
    rows = np.flatnonzero(trace.cat_mask(C.KERNEL_CATS))
    if len(rows) == 0:
        return None
    codes = trace.codes("name")[rows]
    present, calls, (total,) = _sums_by_code(codes, trace.col("dur")[rows])
    top = np.argsort(-total, kind="stable")[:n]
    categories = trace.strings("name")
    return {"name": [str(categories[c]) for c in present[top]],
            "calls": calls[top],
            "total_ms": total[top] / 1000.0,
            "mean_us": total[top] / calls[top]}
