"""Operator sequences worth fusing: elementwise chains and hand-written attention.

Both patterns are found on the host timeline: the forward ops of one thread in time order,
taking only the outermost op with a cost model of each call chain (see `roofline.counted_ops`)
and skipping views and allocations in between. Backward ops are left out: they mirror the
forward pattern and are fixed by the same change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perftune._dataclasses import lazy_dataclass
from perftune.trace.device_metrics import (
    dtype_bytes,
    inclusive_device_us,
    names,
    numel,
    op_mask,
    tensor_inputs,
)
from perftune.trace.frames import Frame
from perftune.trace.groups import group_codes
from perftune.trace.model import NO_ID, Trace, nearest_ancestor
from perftune.trace.roofline import OpCost, base_name, counted_ops
from perftune.trace.tables import Tables

# Ops under these annotations belong to the backward pass or the optimizer (the per-parameter-optimizer rule's subject).
_SKIP_UNDER = ("autograd::engine::evaluate_function", "Optimizer.step#", "Optimizer.zero_grad#")
_SOFTMAX = frozenset({"softmax", "_softmax", "log_softmax", "_log_softmax", "_safe_softmax"})
# Ops that may sit between the parts of a pattern without breaking it (views, scaling, masks).
_PASSIVE = frozenset({"view", "reshape", "_reshape_alias", "transpose", "t", "permute", "expand",
                      "contiguous", "clone", "empty", "empty_like", "empty_strided", "as_strided",
                      "unsqueeze", "squeeze", "select", "slice", "detach", "_unsafe_view",
                      "lift_fresh", "alias", "to", "_to_copy", "copy_", "resolve_conj",
                      "resolve_neg", "size", "stride", "numel", "split", "chunk", "unbind",
                      "result_type", "broadcast_tensors", "zeros", "ones", "full", "scalar_tensor",
                      "dropout", "native_dropout", "masked_fill", "where", "div", "mul", "triu",
                      "tril"})


def _starts_skipped(name: str) -> bool:
    return name.startswith(_SKIP_UNDER)


def _is_backward(name: str) -> bool:
    return "Backward" in name


@dataclass(frozen=True)
class OpRecord:
    row: int
    name: str
    cost: OpCost | None
    shape: tuple[int, ...]  # largest tensor input
    ts: float
    time_us: float  # device time on GPU traces, wall time on CPU traces


class OpSequence:
    """One host thread's forward top-level ops in time order, as columns; an op's `OpRecord` is
    built when a detector reads it (`seq[i]`), so the ops no detector looks at cost no Python
    object each (a GPU trace has thousands of uncosted forward ops per step)."""

    def __init__(self, trace: Trace, counted: dict[int, OpCost], row_array: np.ndarray,
                 names: list[str], ts: list[float], time_us: list[float]) -> None:
        self.trace = trace
        self.counted = counted
        self.row_array = row_array
        self.rows: list[int] = row_array.tolist()
        self.names = names
        self.ts = ts
        self.time_us = time_us
        self._records: dict[int, OpRecord] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> OpRecord:
        rec = self._records.get(i)
        if rec is None:
            row = self.rows[i]
            cost = self.counted.get(row)
            ins = tensor_inputs(self.trace, row) if cost is not None else []
            shape: tuple[int, ...] = ()
            for s, _ in ins:
                if not shape or numel(s) > numel(shape):
                    shape = tuple(s)
            rec = OpRecord(row=row, name=self.names[i], cost=cost, shape=shape, ts=self.ts[i],
                           time_us=self.time_us[i])
            self._records[i] = rec
        return rec

    def positions(self, row_mask: np.ndarray) -> np.ndarray:
        """Positions of the ops whose rows are in a mask over the trace's rows."""
        return np.flatnonzero(row_mask[self.row_array])


def forward_sequences(trace: Trace, tables: Tables | None = None) -> dict[tuple[int, int, int], OpSequence]:
    """Per host thread: its forward top-level ops in time order (costed or not)."""
    t = Tables.of(trace, tables)
    counted = t(counted_ops)
    is_op = t(op_mask)
    on_device = trace.has_device_activity
    dev = t(inclusive_device_us) if on_device else None
    dur = trace.col("dur")
    out: dict[tuple[int, int, int], OpSequence] = {}
    # Top-level among ops (no cpu_op above) and not under an autograd / optimizer annotation
    # (backward ops sit under those): no ancestor in either mask, over whole columns.
    under = is_op | trace.name_mask(_starts_skipped)
    top = is_op & (nearest_ancestor(trace.parent, under) == NO_ID)
    top &= ~trace.name_mask(_is_backward)
    rows = np.flatnonzero(top)
    if not len(rows):
        return out
    # Threads numbered by first appearance; within a thread the rows in time order, ties in row
    # order (lexsort is stable): what appending in row order and a stable sort by ts gave.
    thread, keys = group_codes([trace.col("rank")[rows], trace.col("pid")[rows],
                                trace.col("tid")[rows]])
    ts = trace.col("ts")[rows].astype(np.float64)
    order = np.lexsort((ts, thread))
    rows, thread, ts = rows[order], thread[order], ts[order]
    bounds = np.searchsorted(thread, np.arange(len(keys) + 1)).tolist()
    name_list = t(names)[rows].tolist()
    ts_list = ts.tolist()
    time_list = (dur if dev is None else dev)[rows].astype(np.float64).tolist()
    for g, (rank, pid, tid) in enumerate(keys):
        a, b = bounds[g], bounds[g + 1]
        out[(int(rank), int(pid), int(tid))] = OpSequence(
            trace, counted, rows[a:b], name_list[a:b], ts_list[a:b], time_list[a:b])
    return out


def _frame_key(trace: Trace, row: int, cache: dict[int, Frame | None]) -> Frame | None:
    if row not in cache:
        cache[row] = trace.user_frame(row)
    return cache[row]


# ---------------------------------------------------------------------------- elementwise chains
@lazy_dataclass(frozen=True)
class ElementwiseChain:
    rows: tuple[int, ...]  # the chain's ops, in order
    names: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str | None
    frame: Frame | None
    large_ops: int  # ops reading the chain's full shape
    time_us: float
    bytes: float  # what the chain moves, op by op
    fused_bytes: float  # what one fused kernel would move: read the input once, write once
    flops: float

    @property
    def saving_us(self) -> float:
        if self.bytes <= 0:
            return 0.0
        return self.time_us * max(0.0, 1.0 - self.fused_bytes / self.bytes)


_CHAIN_KINDS = ("elementwise", "norm", "reduction")




def find_elementwise_chains(trace: Trace, min_ops: int, min_numel: int, tables: Tables | None = None) -> list[ElementwiseChain]:
    """Runs of unfused elementwise / normalisation ops over one large shape from one function."""
    t = Tables.of(trace, tables)
    frames: dict[int, Frame | None] = {}
    out: list[ElementwiseChain] = []
    seqs = t(forward_sequences)
    if not seqs:
        return out
    counted = next(iter(seqs.values())).counted
    costed = np.zeros(trace.n, dtype=bool)
    costed[np.fromiter(counted, dtype=np.int64, count=len(counted))] = True
    # Ops that end a run: costed ones that are no chain op, and uncosted ones other than views
    # and allocations (names tested once per distinct name).
    chain = np.zeros(trace.n, dtype=bool)
    chain_rows = [row for row, cost in counted.items() if cost.kind in _CHAIN_KINDS]
    chain[np.asarray(chain_rows, dtype=np.int64)] = True
    passive = trace.name_mask(lambda name: base_name(name) in _PASSIVE)
    ends = ~chain & (costed | ~passive)
    for seq in seqs.values():
        run: list[OpRecord] = []
        run_frame: Frame | None = None

        def flush(run: list[OpRecord] = run) -> None:
            chain = _make_chain(trace, run, frames, min_ops, min_numel)
            if chain is not None:
                out.append(chain)
            run.clear()

        # Only costed ops can be chain ops; an uncosted op in between either passes (a view or
        # an allocation: no chain ends there) or ends the run. So the ops are visited at the
        # chain ops only, each told whether anything ended the run since the one before.
        ended = np.zeros(len(seq) + 1, dtype=np.int64)  # ended[i]: run-ending ops before i
        np.cumsum(ends[seq.row_array], out=ended[1:])
        last = 0
        for i in seq.positions(chain).tolist():
            if ended[i] > ended[last]:
                flush()
            last = i
            rec = seq[i]
            if run and _is_integer(rec) != _is_integer(run[0]):
                if not rec.shape or numel(rec.shape) < min_numel:
                    continue  # a counter (num_batches_tracked += 1) is no part of the chain
                flush()
            frame = _frame_key(trace, rec.row, frames)
            same_frame = frame == run_frame if frame is not None or run_frame is not None else True
            if run and (not same_frame or not _compatible(run, rec)):
                flush()
            if not run:
                run_frame = frame
            run.append(rec)
        flush()
    out.sort(key=lambda c: c.rows[0])
    return out


def _is_integer(rec: OpRecord) -> bool:
    """An op on integer or boolean tensors (indices, counters, masks), not activations."""
    dtype = (rec.cost.dtype if rec.cost is not None else None) or ""
    return dtype.lower().startswith(("int", "uint", "long", "bool", "short", "byte", "char"))


def _compatible(run: list[OpRecord], rec: OpRecord) -> bool:
    """The op works on the chain's shape, or broadcasts into it (a reduction's small result)."""
    big = max((r.shape for r in run), key=numel)
    if not rec.shape or not big:
        return True
    if tuple(rec.shape) == tuple(big):
        return True
    try:
        return tuple(np.broadcast_shapes(tuple(rec.shape), tuple(big))) == tuple(big)
    except ValueError:
        return False


def _make_chain(trace: Trace, run: list[OpRecord], frames: dict[int, Frame | None],
                min_ops: int, min_numel: int) -> ElementwiseChain | None:
    if len(run) < min_ops:
        return None
    big = max((r.shape for r in run), key=numel)
    n = numel(big) if big else 0
    if n < min_numel:
        return None
    # On a GPU an op that launched nothing (dropout in eval mode, ops on CPU tensors) is no pass
    # over device memory.
    on_device = trace.has_device_activity
    large = [r for r in run if r.shape and numel(r.shape) == n and (r.time_us > 0 or not on_device)]
    if len(large) < min_ops:
        return None
    costs = [r.cost for r in run if r.cost is not None]
    dtype = next((c.dtype for c in costs if c.dtype), None)
    ins = tensor_inputs(trace, large[0].row)
    size = dtype_bytes(max(ins, key=lambda st: numel(st[0]))[1]) if ins else None
    fused = 2.0 * n * (size or 4)
    return ElementwiseChain(
        rows=tuple(r.row for r in run), names=tuple(r.name for r in run), shape=tuple(big),
        dtype=dtype, frame=_frame_key(trace, run[0].row, frames), large_ops=len(large),
        time_us=sum(r.time_us for r in run), bytes=float(sum(c.bytes for c in costs)),
        fused_bytes=fused, flops=float(sum(c.flops for c in costs)))


# ---------------------------------------------------------------------------- attention
@lazy_dataclass(frozen=True)
class AttentionPattern:
    """matmul → (scale / mask) → softmax → (dropout) → matmul over an L×L score matrix."""

    rows: tuple[int, ...]  # all ops of the pattern, first matmul to last matmul
    scores_shape: tuple[int, ...]  # [..., L, S]
    head_dim: int
    dtype: str | None
    frame: Frame | None
    time_us: float
    extra_us: float  # time in ops between the two matmuls (softmax, scale, mask, dropout)
    score_bytes: float  # one score matrix


_MATMULS = ("matmul", "bmm", "baddbmm", "einsum")


def _matmul_out(trace: Trace, rec: OpRecord) -> tuple[tuple[int, ...], int] | None:
    """(output shape, contraction dim) of a matmul-like op from its input shapes."""
    core = base_name(rec.name)
    if core not in _MATMULS:
        return None
    ins = [s for s, _ in tensor_inputs(trace, rec.row)]
    if core == "baddbmm":
        ins = ins[1:]
    if len(ins) < 2 or len(ins[0]) < 2 or len(ins[1]) < 2:
        return None
    a, b = ins[0], ins[1]
    try:
        batch = tuple(np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])))
    except ValueError:
        return None
    return (*batch, a[-2], b[-1]), a[-1]




def find_attention_patterns(trace: Trace, min_len: int, tables: Tables | None = None) -> list[AttentionPattern]:
    t = Tables.of(trace, tables)
    frames: dict[int, Frame | None] = {}
    out: list[AttentionPattern] = []
    seqs = t(forward_sequences)
    if not seqs:
        return out
    # A pattern starts at a matmul-like op: only those positions are tried (names tested once
    # per distinct name), from the end of the last pattern found on.
    matmuls = trace.name_mask(lambda name: base_name(name) in _MATMULS)
    for seq in seqs.values():
        k = 0
        for start in seq.positions(matmuls).tolist():
            if start < k:
                continue
            k = start
            first = seq[k]
            mm = _matmul_out(trace, first)
            if mm is None or len(mm[0]) < 3 or min(mm[0][-2], mm[0][-1]) < min_len:
                continue
            scores, head_dim = mm
            # look ahead for softmax over the scores, then a matmul consuming them
            j, soft = k + 1, None
            while j < len(seq) and j - k <= 8:
                core = base_name(seq[j].name)
                if core in _SOFTMAX and tuple(seq[j].shape) == tuple(scores):
                    soft = j
                    break
                cost_j = seq[j].cost
                if core not in _PASSIVE and cost_j is not None and cost_j.kind in ("gemm", "conv"):
                    break
                j += 1
            if soft is None:
                continue
            m, second = soft + 1, None
            while m < len(seq) and m - soft <= 6:
                nxt = _matmul_out(trace, seq[m])
                ins = [s for s, _ in tensor_inputs(trace, seq[m].row)] if nxt is not None else []
                if nxt is not None and ins and tuple(ins[0]) == tuple(scores):
                    second = m
                    break
                if base_name(seq[m].name) not in _PASSIVE:
                    break
                m += 1
            if second is None:
                continue
            part = [seq[i] for i in range(k, second + 1)]
            frame = _frame_key(trace, first.row, frames)
            dtype = first.cost.dtype if first.cost is not None else None
            size = 2 if dtype in ("fp16", "bf16") else 4
            out.append(AttentionPattern(
                rows=tuple(r.row for r in part), scores_shape=tuple(scores), head_dim=int(head_dim),
                dtype=dtype, frame=frame, time_us=sum(r.time_us for r in part),
                extra_us=sum(r.time_us for r in part[1:-1]),
                score_bytes=float(numel(scores) * size)))
            k = second + 1
    out.sort(key=lambda p: p.rows[0])
    return out
