"""Pure functions over a `Trace`: step times, device busy/idle, syncs, copies, DataLoader waits.

These feed `perftune analyze`'s summary and the rules. None of them print or do I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from perftune.trace import categories as C
from perftune.trace.frames import Frame
from perftune.trace.model import NO_ID, Trace


# ---------------------------------------------------------------------------- intervals
def union_length(starts: np.ndarray, ends: np.ndarray) -> float:
    """Total length covered by a set of intervals (overlaps counted once)."""
    if len(starts) == 0:
        return 0.0
    order = np.argsort(starts, kind="stable")
    s = starts[order]
    e = np.maximum.accumulate(ends[order])
    # A new run starts where an interval begins after everything before it has ended.
    new_run = np.empty(len(s), dtype=bool)
    new_run[0] = True
    new_run[1:] = s[1:] > e[:-1]
    run_id = np.cumsum(new_run) - 1
    run_start = s[new_run]
    run_end = np.zeros(len(run_start))
    np.maximum.at(run_end, run_id, e)
    return float(np.sum(run_end - run_start))


def clipped_union(starts: np.ndarray, ends: np.ndarray, lo: float, hi: float) -> float:
    s = np.clip(starts, lo, hi)
    e = np.clip(ends, lo, hi)
    keep = e > s
    return union_length(s[keep], e[keep])


# ---------------------------------------------------------------------------- steps
def step_times(trace: Trace) -> pd.DataFrame:
    """One row per step: rank, index, name, start, end, dur_ms."""
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
        return Distribution(int(arr.size), float(np.median(arr)), float(np.percentile(arr, 10)),
                            float(np.percentile(arr, 90)), float(arr.mean()), float(arr.min()),
                            float(arr.max()))


def step_time_distribution(trace: Trace) -> Distribution:
    return Distribution.of(s.dur / 1000.0 for s in trace.steps)


# ---------------------------------------------------------------------------- device
def device_event_steps(trace: Trace) -> np.ndarray:
    """Step (index into trace.steps) of every device event, by the host call that launched it.

    Device work runs behind the host; it belongs to the step whose host code issued it. Device
    events whose launch is unknown fall back to the step window containing their start.
    """
    ev = trace.events
    launch = trace.launch_of_device_event
    is_dev = ev["is_device"].to_numpy()
    when = np.where(launch != NO_ID, ev["ts"].to_numpy()[np.maximum(launch, 0)], ev["ts"].to_numpy())
    out = trace.step_of(when, ev["rank"].to_numpy())
    out[~is_dev] = NO_ID
    return out


@dataclass(frozen=True)
class StepBreakdown:
    """Where one step's time went, in milliseconds."""

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
    ev = trace.events
    cat = ev["cat"]
    names = ev["name"].astype(str)
    kernel = (cat == C.KERNEL).to_numpy()
    comm = kernel & names.map(C.is_comm_kernel).to_numpy(dtype=bool)
    return {
        "compute": kernel & ~comm,
        "communication": comm,
        "memcpy": (cat == C.MEMCPY).to_numpy(),
        "memset": (cat == C.MEMSET).to_numpy(),
        "work": cat.isin(C.DEVICE_WORK_CATS).to_numpy(),
    }


def step_breakdown(trace: Trace) -> list[StepBreakdown]:
    ev = trace.events
    masks = _category_masks(trace)
    dev_step = device_event_steps(trace)
    ts = ev["ts"].to_numpy()
    end = ev["end"].to_numpy()
    host_sync = sync_call_mask(trace)
    names = ev["name"].astype(str)
    dl = (names.str.startswith(C.DATALOADER_PREFIX) & ~ev["is_device"]).to_numpy()
    opt = (names.str.startswith(C.OPTIMIZER_STEP_PREFIX) & ~ev["is_device"]).to_numpy()
    rank = ev["rank"].to_numpy()
    out: list[StepBreakdown] = []
    for k, step in enumerate(trace.steps):
        in_step = dev_step == k

        def busy(mask: np.ndarray, in_step: np.ndarray = in_step) -> float:
            sel = mask & in_step
            return union_length(ts[sel], end[sel]) / 1000.0

        on_rank = rank == step.rank
        host_window = on_rank & (ts < step.end) & (end > step.start)

        def host_time(mask: np.ndarray, host_window: np.ndarray = host_window) -> float:
            sel = mask & host_window
            return clipped_union(ts[sel], end[sel], step.start, step.end) / 1000.0

        device_busy = busy(masks["work"])
        dur_ms = step.dur / 1000.0
        out.append(StepBreakdown(
            rank=step.rank, step=step.index, dur_ms=dur_ms,
            compute_ms=busy(masks["compute"]), communication_ms=busy(masks["communication"]),
            memcpy_ms=busy(masks["memcpy"]), memset_ms=busy(masks["memset"]),
            device_busy_ms=device_busy,
            device_idle_ms=max(0.0, dur_ms - device_busy) if trace.has_device_activity else 0.0,
            sync_ms=host_time(host_sync), dataloader_ms=host_time(dl), optimizer_ms=host_time(opt),
            kernel_count=int(np.count_nonzero(masks["compute"] & in_step)),
        ))
    return out


# ---------------------------------------------------------------------------- syncs
def sync_call_mask(trace: Trace) -> np.ndarray:
    """Host runtime calls in which the host waits for the device."""
    ev = trace.events
    names = ev["name"]
    return (names.isin(C.SYNC_CALLS) | names.isin(C.BLOCKING_COPY_CALLS)).to_numpy() & ~ev["is_device"].to_numpy()


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


def host_device_syncs(trace: Trace) -> list[SyncCall]:
    """Every sync call on the host, with the op chain and user frame that led to it."""
    ev = trace.events
    rows = np.flatnonzero(sync_call_mask(trace))
    if len(rows) == 0:
        return []
    steps = trace.step_of(ev["ts"].to_numpy()[rows], ev["rank"].to_numpy()[rows])
    out = []
    for row, step in zip(rows.tolist(), steps.tolist(), strict=True):
        chain = tuple(trace.op_chain(row))
        ops = [c for c in chain[:-1] if c.startswith(("aten::", "c10d::", "torchvision::"))]
        cause = _innermost_cause(ops) if ops else chain[-1]
        out.append(SyncCall(row=row, rank=int(ev["rank"].iat[row]), step=step,
                            call=chain[-1], dur_us=float(ev["dur"].iat[row]), op_chain=chain,
                            cause=cause, frame=trace.user_frame(row)))
    return out


# Ops that only pass a sync through (the copy that reads the value back); the cause is the op
# that needed the value on the host.
_PASS_THROUGH = frozenset({"aten::_local_scalar_dense", "aten::copy_", "aten::_to_copy", "aten::to",
                           "aten::item", "aten::is_nonzero"})


def _innermost_cause(ops: list[str]) -> str:
    """The op that made the host need device data: the outermost-but-meaningful op in the chain.

    For `aten::index → aten::nonzero → aten::item` the cause is aten::nonzero; for a bare
    `aten::item → aten::_local_scalar_dense` it is aten::item.
    """
    for op in reversed(ops):
        if op not in _PASS_THROUGH:
            return op
    return ops[0]


# ---------------------------------------------------------------------------- copies
def memcpy_events(trace: Trace) -> pd.DataFrame:
    """Device copies with kind (HtoD/DtoH/DtoD), source/destination memory, bytes, step."""
    ev = trace.events
    rows = np.flatnonzero((ev["cat"] == C.MEMCPY).to_numpy())
    steps = device_event_steps(trace)[rows] if len(rows) else np.empty(0, np.int64)
    kinds = [C.memcpy_kind(trace.name_of(r)) for r in rows.tolist()]
    return pd.DataFrame({
        "row": rows,
        "rank": ev["rank"].to_numpy()[rows],
        "kind": [k[0] for k in kinds],
        "src": [k[1] for k in kinds],
        "dst": [k[2] for k in kinds],
        "bytes": ev["nbytes"].to_numpy()[rows],
        "dur_us": ev["dur"].to_numpy()[rows],
        "step": steps,
        "launch": trace.launch_of_device_event[rows] if len(rows) else np.empty(0, np.int64),
    })


def pageable_copies(trace: Trace) -> pd.DataFrame:
    copies = memcpy_events(trace)
    return copies[(copies["src"] == "Pageable") | (copies["dst"] == "Pageable")]


# ---------------------------------------------------------------------------- data loading
def dataloader_waits(trace: Trace) -> pd.DataFrame:
    """`enumerate(DataLoader)#...__next__` annotations: how long each step waited for data."""
    ev = trace.events
    names = ev["name"].astype(str)
    rows = np.flatnonzero((names.str.startswith(C.DATALOADER_PREFIX) & ~ev["is_device"]).to_numpy())
    steps = trace.step_of(ev["ts"].to_numpy()[rows], ev["rank"].to_numpy()[rows])
    picked = names.to_numpy()[rows].astype(str)
    return pd.DataFrame({
        "row": rows, "rank": ev["rank"].to_numpy()[rows], "name": picked,
        "dur_us": ev["dur"].to_numpy()[rows], "step": steps,
        # _SingleProcessDataLoaderIter loads in the training process (num_workers=0).
        "multiprocess": np.char.find(picked, "MultiProcessing") >= 0 if len(rows) else np.empty(0, bool),
    })


# ---------------------------------------------------------------------------- operators
def _self_times(trace: Trace) -> pd.DataFrame:
    ev = trace.events
    host_ops = (ev["cat"].isin(C.OP_CATS)).to_numpy()
    parent = trace.parent
    child_time = np.zeros(len(ev))
    rows = np.flatnonzero(host_ops)
    par = parent[rows]
    has_parent = par != NO_ID
    np.add.at(child_time, par[has_parent], ev["dur"].to_numpy()[rows][has_parent])
    self_us = np.maximum(0.0, ev["dur"].to_numpy() - child_time)
    return pd.DataFrame({"row": rows, "name": ev["name"].astype(str).to_numpy()[rows],
                         "dur_us": ev["dur"].to_numpy()[rows], "self_us": self_us[rows]})


def top_host_ops(trace: Trace, n: int = 15) -> pd.DataFrame:
    """Host operators by total self time: name, calls, self_ms, total_ms."""
    df = _self_times(trace)
    if df.empty:
        return pd.DataFrame(columns=["name", "calls", "self_ms", "total_ms"])
    agg = df.groupby("name", observed=True).agg(calls=("row", "size"), self_us=("self_us", "sum"),
                                                total_us=("dur_us", "sum"))
    agg = agg.sort_values("self_us", ascending=False).head(n)
    return pd.DataFrame({"name": agg.index, "calls": agg["calls"].to_numpy(),
                         "self_ms": agg["self_us"].to_numpy() / 1000.0,
                         "total_ms": agg["total_us"].to_numpy() / 1000.0})


def top_kernels(trace: Trace, n: int = 15) -> pd.DataFrame:
    """Device kernels by total time: name, calls, total_ms, mean_us."""
    ev = trace.events
    sel = ev[(ev["cat"] == C.KERNEL)]
    if sel.empty:
        return pd.DataFrame(columns=["name", "calls", "total_ms", "mean_us"])
    agg = sel.groupby("name", observed=True)["dur"].agg(["size", "sum", "mean"])
    agg = agg.sort_values("sum", ascending=False).head(n)
    return pd.DataFrame({"name": agg.index.astype(str), "calls": agg["size"].to_numpy(),
                         "total_ms": agg["sum"].to_numpy() / 1000.0, "mean_us": agg["mean"].to_numpy()})
