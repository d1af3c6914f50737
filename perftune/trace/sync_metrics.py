"""Host-operator views for the sync and input-pipeline rules (pure functions over a `Trace`).

The central question is *which user-visible operator* made the host wait for the device, or
would make it wait on a GPU. `host_hazards` answers it once per trace: every sync call, every
blocking device→host copy and every operator that needs device data on the host (nonzero,
unique, item, ...) is walked up to the outermost ATen op (the "user op": what the user's line
called), classified into a neutral `SyncCause` (what the op is, not which rule reports it), and
measured (stall on a GPU trace, CPU cost otherwise).

Every query takes a `HostIndex`: the per-trace lookups (threads, frames, copies) and the
derived tables (hazards, masked-loss pairs, ...) computed lazily, once per index. The analysis
context (perftune.engine.context) owns one index per run; nothing is cached at module level.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

import numpy as np

from perftune._dataclasses import lazy_dataclass
from perftune.trace import categories as C
from perftune.trace.device_metrics import op_ancestry
from perftune.trace.frames import (
    Frame,
    dotted_name,
    is_user_frame,
    package_of,
    parse_python_function,
)
from perftune.trace.groups import distinct, median
from perftune.trace.metrics import sync_call_mask
from perftune.trace.model import NO_ID, Trace, _thread_key, thread_time_order
from perftune.trace.tables import Tables

# ---------------------------------------------------------------------------- op families
NONZERO_OPS = frozenset({"aten::nonzero", "aten::nonzero_numpy", "aten::argwhere",
                         "aten::masked_select"})
WHERE_OP = "aten::where"
INDEX_OP = "aten::index"
INDEX_PUT_OPS = frozenset({"aten::index_put_", "aten::index_put", "aten::_index_put_impl_"})
UNIQUE_OPS = frozenset({"aten::_unique", "aten::_unique2", "aten::unique_dim",
                        "aten::unique_consecutive", "aten::unique_dim_consecutive", "aten::unique"})
REPEAT_INTERLEAVE_OP = "aten::repeat_interleave"
SCALAR_OPS = frozenset({"aten::is_nonzero", "aten::item", "aten::_local_scalar_dense"})
COPY_OPS = frozenset({"aten::to", "aten::_to_copy", "aten::copy_"})
LOSS_OPS = frozenset({"aten::cross_entropy_loss", "aten::nll_loss", "aten::nll_loss_nd",
                      "aten::nll_loss2d", "aten::nll_loss_forward", "aten::binary_cross_entropy",
                      "aten::binary_cross_entropy_with_logits", "aten::mse_loss",
                      "aten::smooth_l1_loss", "aten::l1_loss", "aten::huber_loss"})
# Ops that, met anywhere below a user op, mean it needed device data on the host.
_LEAF_OPS = NONZERO_OPS | UNIQUE_OPS | SCALAR_OPS | {REPEAT_INTERLEAVE_OP}

# Python-level calls (from with_stack `<built-in method NAME of ...>` events).
TENSOR_FACTORY_CALLS = frozenset({"tensor", "as_tensor", "Tensor", "LongTensor", "FloatTensor",
                                  "IntTensor", "BoolTensor", "HalfTensor", "DoubleTensor",
                                  "new_tensor"})
HOST_TRANSFER_CALLS = frozenset({"tolist", "numpy", "cpu"})
DEVICE_MOVE_CALLS = frozenset({"to", "cuda"})

_BUILTIN = re.compile(r"^<built-in (?:method|function) (?P<name>[A-Za-z_][\w]*)")



class SyncCause(StrEnum):
    """What kind of operation made (or would make) the host wait: a fact about the trace.
    Which rule reports which cause is the rules' business (their `causes` metadata)."""

    DATA_DEPENDENT_SHAPE = "data-dependent-shape op"
    UNIQUE = "unique"
    BOOLEAN_MASK_ASSIGNMENT = "boolean mask assignment"
    REPEAT_INTERLEAVE = "repeat_interleave without output size"
    SCALAR_READBACK = "scalar readback"
    HOST_TRANSFER = "device-to-host transfer"
    PAGEABLE_COPY = "copy from pageable memory"
    BLOCKING_COPY = "blocking copy"
    TENSOR_FROM_PYTHON = "tensor from python data"
    EXPLICIT_SYNCHRONIZE = "explicit synchronize"


def python_call_name(name: str) -> str | None:
    """'<built-in method item of Tensor object at 0x..>' → 'item'; frames and others → None."""
    m = _BUILTIN.match(name)
    return m.group("name") if m else None


# ---------------------------------------------------------------------------- per-trace index
@dataclass(frozen=True)
class _ThreadIndex:
    rows: np.ndarray  # host rows of one thread, sorted by start time
    ts: np.ndarray


class _ThreadOf:
    """Host row -> its thread's (rank, pid, tid) key, from one array (no dict per row)."""

    def __init__(self, thread_no: np.ndarray, keys: list[tuple[int, int, int]]) -> None:
        self._no = thread_no
        self._keys = keys

    def get(self, row: int, default: tuple[int, int, int] | None = None) -> tuple[int, int, int] | None:
        n = int(self._no[row]) if 0 <= row < len(self._no) else -1
        return self._keys[n] if n >= 0 else default

    def __getitem__(self, row: int) -> tuple[int, int, int]:
        key = self.get(row)
        if key is None:
            raise KeyError(row)
        return key


class HostIndex:
    """Lookups the rules need many times (events under an op, python frames of an op) and the
    tables derived from them, each computed once per index."""

    def __init__(self, trace: Trace, tables: Tables | None = None) -> None:
        self.trace = trace
        self.tables = tables
        self.cat = trace.cats
        self.names = trace.names
        self.ts = trace.col("ts")
        self.end = trace.col("end")
        self.dur = trace.col("dur")
        self.is_device = trace.col("is_device")
        self.is_runtime = trace.cat_mask(C.RUNTIME_CATS)
        self.is_op = trace.cat_mask({C.CPU_OP})
        # Every host call in which the host waits for the device: the one detector,
        # trace.metrics.sync_call_mask (also behind host_device_syncs and the summary's syncs);
        # `sync` are those that wait by name (synchronize, cudaMemcpy), `waits` adds the async
        # copies to or from pageable memory, which the driver runs synchronously.
        self.waits = sync_call_mask(trace, tables)
        self.sync = self.waits & trace.name_isin(C.SYNC_CALLS | C.BLOCKING_COPY_CALLS)
        self.is_copy_call = trace.name_isin(C.COPY_CALLS)
        self.parent = trace.parent
        # Host rows grouped by thread, each thread's rows in time order (ties in row order).
        host = np.flatnonzero(~self.is_device)
        r, p, t = (trace.col(c)[host] for c in ("rank", "pid", "tid"))
        # (rank, pid, tid, ts): one order-preserving thread key, then a start sort and a radix
        # sort of the threads (np.lexsort's permutation, without its four full sorts).
        order = thread_time_order(_thread_key(r, p, t), self.ts[host])
        rows, r, p, t = host[order], r[order], p[order], t[order]
        cut = np.flatnonzero((r[1:] != r[:-1]) | (p[1:] != p[:-1]) | (t[1:] != t[:-1])) + 1
        starts = np.concatenate([[0], cut]).astype(np.int64) if len(rows) else np.empty(0, np.int64)
        ends = np.concatenate([cut, [len(rows)]]).astype(np.int64) if len(rows) else starts
        keys = list(zip(r[starts].tolist(), p[starts].tolist(), t[starts].tolist(), strict=True))
        self.threads: dict[tuple[int, int, int], _ThreadIndex] = {}
        thread_no = np.full(trace.n, -1, dtype=np.int64)
        for n, (key, a, b) in enumerate(zip(keys, starts.tolist(), ends.tolist(), strict=True)):
            arr = rows[a:b]
            self.threads[key] = _ThreadIndex(rows=arr, ts=self.ts[arr])
            thread_no[arr] = n
        self.thread_of = _ThreadOf(thread_no, keys)
        self._frame_rows: dict[int, bool] = {}

    def under(self, row: int) -> np.ndarray:
        """Host rows nested inside `row` (same thread, starting within it), in time order."""
        key = self.thread_of.get(row)
        if key is None:
            return np.empty(0, dtype=np.int64)
        th = self.threads[key]
        lo = np.searchsorted(th.ts, self.ts[row], side="left")
        hi = np.searchsorted(th.ts, self.end[row], side="left")
        rows: np.ndarray = th.rows[lo:hi]
        keep = (rows != row) & (self.end[rows] <= self.end[row] + 0.01)
        return np.asarray(rows[keep], dtype=np.int64)

    @cached_property
    def _copy_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Device memcpy rows with a correlation id, sorted by (rank, correlation), and those
        (rank, correlation) keys."""
        corr = self.trace.col("corr")
        rows = np.flatnonzero(self.trace.cat_mask({C.MEMCPY}) & (corr != NO_ID))
        keys = _rank_corr_key(self.trace.col("rank")[rows], corr[rows])
        order = np.argsort(keys, kind="stable")
        return keys[order], rows[order]

    def copies_of(self, runtime_rows: np.ndarray) -> list[int]:
        """Device memcpy rows issued by any of `runtime_rows` (same rank and correlation id)."""
        keys, rows = self._copy_keys
        wanted = _rank_corr_key(self.trace.col("rank")[runtime_rows],
                                self.trace.col("corr")[runtime_rows])
        lo = np.searchsorted(keys, wanted, side="left")
        count = np.searchsorted(keys, wanted, side="right") - lo
        # rows[lo:lo+count] of every runtime row, concatenated (no loop over them)
        at = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(int(count.sum()))
        found: list[int] = rows[at].tolist()
        return found

    def is_user_frame_row(self, row: int) -> bool:
        cached = self._frame_rows.get(row)
        if cached is None:
            frame = parse_python_function(self.names[row]) if self.cat[row] == C.PYTHON_FUNCTION else None
            cached = frame is not None and is_user_frame(frame)
            self._frame_rows[row] = cached
        return cached


    # ------------------------------------------------------------ derived, once per index
    @cached_property
    def outer_op(self) -> np.ndarray:
        """For every row: the outermost cpu_op enclosing or being it, else -1 (the analysis'
        shared op-ancestry table)."""
        return Tables.of(self.trace, self.tables)(op_ancestry)[1]

    @cached_property
    def hazards(self) -> tuple[Hazard, ...]:
        return _host_hazards(self)

    @cached_property
    def device_starts(self) -> dict[int, np.ndarray]:
        trace = self.trace
        work = trace.cat_mask(C.DEVICE_WORK_CATS)
        rank, ts = trace.col("rank")[work], trace.col("ts")[work]
        return {int(r): np.sort(ts[rank == r]) for r in distinct(rank).tolist()}

    @cached_property
    def masked_loss_pairs(self) -> dict[int, int]:
        return _masked_loss_pairs(self)

    @cached_property
    def masked_copy_pairs(self) -> dict[int, int]:
        return _masked_copy_pairs(self)

    @cached_property
    def dataloader_ends(self) -> dict[tuple[int, int, int], np.ndarray]:
        rows = np.flatnonzero(~self.is_device & self.trace.name_startswith(C.DATALOADER_PREFIX)).tolist()
        out: dict[tuple[int, int, int], list[float]] = {}
        for r in rows:
            out.setdefault(self.thread_of[r], []).append(float(self.end[r]))
        return {k: np.sort(np.asarray(v)) for k, v in out.items()}


# ---------------------------------------------------------------------------- small queries
def user_op(host: HostIndex, row: int) -> int | None:
    """The outermost ATen op enclosing `row` (itself included): the op the user's line called."""
    found = int(host.outer_op[row])
    return None if found == NO_ID else found


def calling_python(host: HostIndex, row: int) -> str | None:
    """The python-level call that issued op `row` ('item', 'tolist', 'tensor', ...), if recorded.

    Looks only at python events between the op and the user's frame, so a `.to()` inside a
    library's `tolist` wrapper still reports 'tolist'."""
    idx, trace = host, host.trace
    name: str | None = None
    for a in trace.ancestors(row):
        if idx.cat[a] != C.PYTHON_FUNCTION:
            continue
        if idx.is_user_frame_row(a):
            break
        called = python_call_name(idx.names[a])
        if called is not None:
            name = called  # keep going: the outermost builtin call below the user frame wins
    return name


def user_frame_row(host: HostIndex, row: int) -> int | None:
    """Row of the innermost user python frame enclosing `row` (follows fwdbwd for backward)."""
    idx, trace = host, host.trace
    for a in trace.ancestors(row):
        if idx.cat[a] == C.PYTHON_FUNCTION and idx.is_user_frame_row(a):
            return a
    fwd = trace.forward_op_of(row)
    if fwd is not None and fwd != row:
        return user_frame_row(host, fwd)
    return None


def runtime_calls_under(host: HostIndex, row: int) -> list[int]:
    idx = host
    return [int(r) for r in idx.under(row) if idx.is_runtime[r]]


def ops_under(host: HostIndex, row: int) -> list[int]:
    idx = host
    return [int(r) for r in idx.under(row) if idx.is_op[r]]


def in_scope_steps(trace: Trace, rows: np.ndarray | Sequence[int]) -> np.ndarray:
    """Step index of each row; rows outside every step get -1.

    Traces whose steps come from optimizer calls bound N-1 steps with N calls: the iteration
    before the first boundary is work of a real step too, so it maps to step 0 there.
    """
    arr = np.asarray(rows, dtype=np.int64)
    if len(arr) == 0:
        return np.empty(0, dtype=np.int64)
    ts = trace.col("ts")[arr]
    steps = trace.step_of(ts, trace.col("rank")[arr])
    if trace.step_source == "optimizer-step" and trace.steps:
        # N optimizer calls bound N-1 steps; the work before the first boundary and after
        # the last is the first and the last iteration, partial but real.
        first = min(s.start for s in trace.steps)
        last_index = max(range(len(trace.steps)), key=lambda k: trace.steps[k].end)
        steps[(steps == NO_ID) & (ts < first)] = 0
        steps[(steps == NO_ID) & (ts >= trace.steps[last_index].end)] = last_index
    return steps


def step_windows(trace: Trace) -> int:
    """How many step iterations the trace covers (N optimizer calls = N iterations)."""
    n = len({(s.rank, s.index) for s in trace.steps}) // max(1, len(trace.rank_ids))
    if trace.step_source == "optimizer-step":
        n += 1
    return max(1, n)


def median_step_us(trace: Trace) -> float:
    if not trace.steps:
        return trace.span_us()
    return float(median([s.dur for s in trace.steps]))


# ---------------------------------------------------------------------------- hazards
@dataclass(frozen=True)
class Hazard:
    """One occurrence of an op that synchronises (GPU) or would synchronise (CPU) the host."""

    row: int                     # the user op (or the sync call / python call when no op)
    cause: SyncCause | None      # what kind of op it is; None: a sync of some other op
    kind: str                    # short label: 'nonzero', 'boolean-mask-index', 'item', ...
    chain: tuple[str, ...]       # user op → ... → runtime calls
    sync_rows: tuple[int, ...]   # sync calls (and blocking copies) under it
    copy_rows: tuple[int, ...]   # device memcpy events it issued
    stall_us: float              # host time spent waiting in sync_rows
    cpu_us: float                # host duration of the op
    on_device: bool              # it launched device work or waited for the device
    step: int                    # index into trace.steps, -1 outside
    rank: int
    python_call: str | None      # 'item', 'tolist', 'to', ... when with_stack recorded it
    frame_row: int | None        # row of the innermost user python frame

    @property
    def latent(self) -> bool:
        return not self.on_device


def _copy_kinds(trace: Trace, copy_rows: Sequence[int]) -> set[tuple[str, str, str]]:
    strings = trace.strings("name")
    codes = trace.codes("name")[np.asarray(copy_rows, dtype=np.int64)]
    return {C.memcpy_kind(str(strings[c])) for c in distinct(codes).tolist()}


def _factory(call: str | None) -> str:
    """`torch.tensor`, or `Tensor.new_tensor` (a method: the new tensor lands on its
    receiver's device)."""
    return f"Tensor.{call}" if call == "new_tensor" else f"torch.{call}"


def classify(names: Sequence[str], python_call: str | None,
             copy_kinds: set[tuple[str, str, str]], has_op: bool,
             has_sync: bool = True) -> tuple[SyncCause | None, str]:
    """Cause and label for a user op chain (outermost op first).

    The user op decides: a sync deep inside an unrelated op (bincount, nms, ...) is left to
    the generic rule, attributed to that op, rather than blamed on an `.item()` nobody wrote.
    """
    if not has_op:
        return SyncCause.EXPLICIT_SYNCHRONIZE, "explicit synchronize"
    kinds = {k[0] for k in copy_kinds}
    if python_call in TENSOR_FACTORY_CALLS and any(n in SCALAR_OPS for n in names):
        # `torch.tensor([loss, acc])`: each tensor of the list read back to the host
        return SyncCause.SCALAR_READBACK, f"{_factory(python_call)}([...]) of tensors (one read-back per element)"
    if python_call in TENSOR_FACTORY_CALLS:
        return SyncCause.TENSOR_FROM_PYTHON, f"{_factory(python_call)}(python data)"
    if python_call in HOST_TRANSFER_CALLS and (not copy_kinds or "DtoH" in kinds):
        return SyncCause.HOST_TRANSFER, f".{python_call}()"
    top = names[0]
    if top in INDEX_PUT_OPS and "aten::nonzero" in names:
        return SyncCause.BOOLEAN_MASK_ASSIGNMENT, "boolean-mask assignment"
    if top == INDEX_OP and "aten::nonzero" in names:
        return SyncCause.DATA_DEPENDENT_SHAPE, "boolean-mask indexing"
    if top in NONZERO_OPS:
        return SyncCause.DATA_DEPENDENT_SHAPE, top.removeprefix("aten::")
    if top == WHERE_OP and ("aten::nonzero_numpy" in names or "aten::nonzero" in names):
        return SyncCause.DATA_DEPENDENT_SHAPE, "where(condition)"
    if top in UNIQUE_OPS:
        return SyncCause.UNIQUE, top.removeprefix("aten::").lstrip("_").rstrip("2")
    if top == REPEAT_INTERLEAVE_OP:
        return SyncCause.REPEAT_INTERLEAVE, "repeat_interleave"
    if top in SCALAR_OPS:
        label = {"aten::is_nonzero": "bool(tensor)", "aten::item": "float()/int() of a tensor",
                 "aten::_local_scalar_dense": "scalar read-back"}[top]
        if python_call in {"item", "tolist"}:
            label = f".{python_call}()"
        return SyncCause.SCALAR_READBACK, label
    if top in COPY_OPS and copy_kinds:
        pageable_out = any(k == "DtoH" and dst == "Pageable" for k, _, dst in copy_kinds)
        if "DtoH" in kinds and (has_sync or pageable_out):
            return SyncCause.HOST_TRANSFER, f".{python_call}()" if python_call else "device→host copy"
        if any(k == "HtoD" and src == "Pageable" for k, src, _ in copy_kinds):
            return SyncCause.PAGEABLE_COPY, "host→device copy from pageable memory"
        if has_sync:
            return SyncCause.BLOCKING_COPY, "blocking copy"
        return None, top  # an asynchronous copy: nothing waits
    return None, top


@dataclass
class _Acc:
    syncs: list[int]
    copies: list[int]


def _rank_corr_key(rank: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """One int64 per (rank, correlation id); correlations fit in 43 bits (as model's)."""
    return rank.astype(np.int64) * (1 << 44) + (corr.astype(np.int64) + (1 << 43))


def _is_user_frame_name(name: str) -> bool:
    frame = parse_python_function(name)
    return frame is not None and is_user_frame(frame)


def _is_anchor_call(name: str) -> bool:
    called = python_call_name(name)
    return called in HOST_TRANSFER_CALLS or called in TENSOR_FACTORY_CALLS


def _python_anchors(idx: HostIndex, rows: np.ndarray) -> np.ndarray:
    """The `.tolist()` / `.cpu()` / `torch.tensor(...)` python call that issued each of `rows`
    (NO_ID: none): the outermost such call among its enclosing python frames below the user's
    own frame. All rows climb together, one numpy step per nesting level."""
    trace = idx.trace
    python = trace.cat_mask({C.PYTHON_FUNCTION})
    user = python & trace.name_mask(_is_user_frame_name)
    call = python & trace.name_mask(_is_anchor_call)
    anchor = np.full(len(rows), NO_ID, dtype=np.int64)
    which = np.arange(len(rows))
    up = idx.parent[rows]
    while len(which):
        go_on = (up != NO_ID) & ~user[np.maximum(up, 0)]
        which, up = which[go_on], up[go_on]
        hit = call[up]
        anchor[which[hit]] = up[hit]  # an outer one overwrites an inner one
        up = idx.parent[up]
    return anchor


def library_frames(host: HostIndex, row: int) -> tuple[str, ...]:
    """Files of the non-user python frames between op `row` and the user's frame."""
    idx, trace = host, host.trace
    out: list[str] = []
    for a in trace.ancestors(row):
        if idx.cat[a] != C.PYTHON_FUNCTION:
            continue
        if idx.is_user_frame_row(a):
            break
        frame = parse_python_function(idx.names[a])
        if frame is not None:
            out.append(frame.file)
    return tuple(out)


# Frames that only route a call (module __call__, hooks, decorators): never what a user called.
_PLUMBING_FILES = ("torch/nn/modules/module.py", "torch/_dynamo/", "torch/utils/_contextlib.py",
                   "torch/autograd/grad_mode.py", "torch/_compile.py", "torch/utils/hooks.py",
                   "torch/_jit_internal.py", "torch/overrides.py", "torch/utils/_device.py",
                   "torch/_tensor.py", "torch/autograd/profiler.py", "perftune/capture/",
                   "perftune/_runtime.py")
_MODULE_PREFIX = "nn.Module: "


@lazy_dataclass(frozen=True)
class LibraryCall:
    """The library code a user's line called on the way to an op (numpy's memmap indexing,
    nn.TransformerEncoder's forward, a framework's training loop)."""

    name: str                 # what the user's line called: 'numpy._core.memmap.__getitem__',
                              # 'nn.TransformerEncoder' (a module: its class)
    function: str             # the entry frame's function: '__getitem__', 'forward', 'train'
    module_class: str | None  # the nn.Module class called, when the call was a module's
    inner: tuple[str, ...]    # dotted names of the library frames below the entry, outer first
    package: str | None       # top-level package of the entry frame ('numpy', 'torch', ...)
    entry: str = ""           # the entry frame's dotted name ('torch.nn.modules.rnn.forward')

    @property
    def functions(self) -> tuple[str, ...]:
        """Function names of every library frame from the entry down (for known fixes)."""
        return (self.function, *(n.rsplit(".", 1)[-1] for n in self.inner))


def _module_class(name: str) -> str:
    """'nn.Module: TransformerEncoder_0' → 'TransformerEncoder'."""
    base = name.removeprefix(_MODULE_PREFIX)
    head, _, tail = base.rpartition("_")
    return head if head and tail.isdigit() else base


def library_call(host: HostIndex, row: int) -> LibraryCall | None:
    """The library function (or module) the user's innermost frame called to issue `row`, or
    None when the op came straight from the user's line. Backward ops use their forward op."""
    idx, trace = host, host.trace
    frames: list[Frame] = []      # library frames below the user frame, inner first
    modules: list[str] = []       # nn.Module events below the user frame, inner first
    reached_user = False
    for a in trace.ancestors(row):
        if idx.cat[a] != C.PYTHON_FUNCTION:
            continue
        name = idx.names[a]
        if name.startswith(_MODULE_PREFIX):
            modules.append(name)
            continue
        if idx.is_user_frame_row(a):
            reached_user = True
            break
        frame = parse_python_function(name)
        if frame is not None:
            frames.append(frame)
    if not reached_user:
        fwd = trace.forward_op_of(row)
        if fwd is not None and fwd != row:
            return library_call(host, fwd)
        return None
    outer_first = [f for f in reversed(frames)
                   if not any(p in f.file.replace("\\", "/") for p in _PLUMBING_FILES)]
    if not outer_first:
        return None
    entry = outer_first[0]
    inner = tuple(dotted_name(f) for f in outer_first[1:])
    module = _module_class(modules[-1]) if modules and entry.function == "forward" else None
    package = package_of(entry)
    if module is not None:
        name = f"nn.{module}" if package == "torch" else module
    else:
        name = dotted_name(entry)
    return LibraryCall(name=name, function=entry.function, module_class=module, inner=inner,
                       package=package, entry=dotted_name(entry))


def idle_after_us(host: HostIndex, row: int, cap_us: float = 10_000.0) -> float:
    """Device idle time right after host event `row` ends (the bubble a sync leaves behind).

    A sync drains the device; it stays idle until the host has queued the next work."""
    idx, trace = host, host.trace
    starts = host.device_starts.get(int(trace.col("rank")[row]))
    if starts is None or len(starts) == 0:
        return 0.0
    end = float(idx.end[row])
    k = int(np.searchsorted(starts, end, side="left"))
    if k >= len(starts):
        return 0.0
    return float(min(cap_us, max(0.0, starts[k] - end)))


def host_hazards(host: HostIndex) -> tuple[Hazard, ...]:
    """Every sync-causing (or, on a CPU trace, sync-prone) op occurrence, one per user op."""
    return host.hazards


def _host_hazards(host: HostIndex) -> tuple[Hazard, ...]:
    idx, trace = host, host.trace

    def anchors_of(rows: np.ndarray) -> np.ndarray:
        """The python call that issued each row, else its user op (NO_ID: neither)."""
        py = _python_anchors(idx, rows)
        return np.asarray(np.where(py != NO_ID, py, idx.outer_op[rows]), dtype=np.int64)

    waits = np.flatnonzero(idx.waits)
    wait_anchors = anchors_of(waits)
    leaf = trace.name_isin(_LEAF_OPS) & idx.is_op
    leaves = np.flatnonzero(leaf)
    # Device copies launched under a user op: the launch from the event's own column, else
    # (an event the loader did not pair) by its correlation.
    copy_rows = np.flatnonzero(trace.cat_mask({C.MEMCPY}))
    launches = trace.launch_of_device_event[copy_rows].astype(np.int64)
    for k in np.flatnonzero(launches == NO_ID).tolist():
        launch = trace.launched_by(int(copy_rows[k]))
        launches[k] = NO_ID if launch is None else launch
    keep = launches != NO_ID
    keep[keep] = idx.outer_op[launches[keep]] != NO_ID
    copies, launches = copy_rows[keep], launches[keep]
    # Waits without an anchor are explicit syncs; the others, the leaf ops and the copies make
    # one group per anchor, numbered in order of first appearance (waits, leaves, copies).
    explicit: list[int] = waits[wait_anchors == NO_ID].tolist()
    anchors = np.concatenate([wait_anchors, anchors_of(leaves), anchors_of(launches)])
    member = np.concatenate([waits, np.full(len(leaves), NO_ID, dtype=np.int64), copies])
    source = np.repeat(np.arange(3), [len(waits), len(leaves), len(copies)])
    has = anchors != NO_ID
    anchors, member, source = anchors[has], member[has], source[has]
    order = np.argsort(anchors, kind="stable")
    bounds = np.flatnonzero(np.diff(anchors[order], prepend=NO_ID - 1) != 0)
    first = order[bounds]  # each anchor's first appearance
    by_anchor = np.split(order, bounds[1:]) if len(order) else []
    groups: dict[int, _Acc] = {}
    for g in np.argsort(first, kind="stable").tolist():
        part = by_anchor[g]
        groups[int(anchors[part[0]])] = _Acc(member[part[source[part] == 0]].tolist(),
                                            member[part[source[part] == 2]].tolist())
    # Python-level transfers and factories (on CPU traces visible only through with_stack).
    calls = np.flatnonzero(trace.cat_mask({C.PYTHON_FUNCTION}) & trace.name_mask(_is_anchor_call))
    calls = calls[_python_anchors(idx, calls) == NO_ID]
    for row in calls.tolist():
        parent = int(idx.parent[row])
        if parent == NO_ID or idx.is_user_frame_row(parent):
            groups.setdefault(row, _Acc([], []))

    rank_col = trace.col("rank")
    hazards: list[Hazard] = []
    for anchor, acc in groups.items():
        inner_rows = idx.under(anchor)
        op_names = idx.names[inner_rows[idx.is_op[inner_rows]]].tolist()
        if idx.is_op[anchor]:
            names = [idx.names[anchor], *op_names]
            call = calling_python(host, anchor)
        else:
            names = op_names
            call = python_call_name(idx.names[anchor])
        runtime_rows = inner_rows[idx.is_runtime[inner_rows]]
        runtime = runtime_rows.tolist()
        syncs = sorted(set(acc.syncs) | set(runtime_rows[idx.sync[runtime_rows]].tolist()))
        copies = sorted(set(acc.copies).union(
            idx.copies_of(runtime_rows[idx.is_copy_call[runtime_rows]])))
        real_syncs = any(idx.sync[r] for r in syncs)
        if idx.is_op[anchor]:
            cause, kind = classify(names, call, _copy_kinds(trace, copies), has_op=True,
                                  has_sync=real_syncs)
        elif call in TENSOR_FACTORY_CALLS and "aten::lift_fresh" not in names and not copies:
            continue  # torch.tensor(existing_tensor): no python data involved
        elif names or copies or call in HOST_TRANSFER_CALLS:
            cause, kind = classify(names or [f"Tensor.{call}"], call, _copy_kinds(trace, copies),
                                  has_op=True)
        else:
            continue
        if cause is None and not syncs:
            continue  # an ordinary op that happened to contain a copy
        stall = float(sum(idx.dur[s] for s in syncs))
        chain = _chain(trace, idx, anchor, inner_rows, syncs, copies, leaf)
        if not idx.is_op[anchor]:
            chain = (f"Tensor.{call}" if call in HOST_TRANSFER_CALLS else _factory(call), *chain)
        hazards.append(Hazard(
            row=anchor, cause=cause, kind=kind, chain=chain, sync_rows=tuple(syncs),
            copy_rows=tuple(copies), stall_us=stall, cpu_us=float(idx.dur[anchor]),
            on_device=bool(runtime) or bool(syncs), step=-1, rank=int(rank_col[anchor]),
            python_call=call, frame_row=user_frame_row(host, anchor)))
    for row in explicit:
        cause, kind = _classify_opless(trace, idx, row)
        hazards.append(Hazard(
            row=row, cause=cause, kind=kind, chain=tuple(_clean_chain(trace.op_chain(row))),
            sync_rows=(row,), copy_rows=(), stall_us=float(idx.dur[row]),
            cpu_us=float(idx.dur[row]), on_device=True, step=-1, rank=int(rank_col[row]),
            python_call=None, frame_row=user_frame_row(host, row)))
    hazards.sort(key=lambda h: float(idx.ts[h.row]))
    steps = in_scope_steps(trace, [h.row for h in hazards])
    return tuple(Hazard(**{**h.__dict__, "step": int(s)}) for h, s in zip(hazards, steps, strict=True))


def _classify_opless(trace: Trace, idx: HostIndex, row: int) -> tuple[SyncCause | None, str]:
    """A sync call under no ATen op: `torch.cuda.synchronize()` and friends called from Python
    (an explicit synchronize), unless a library's annotated region issued it (DDP's forward,
    ...): then it is a sync without a cause of its own, named after that region."""
    for a in trace.ancestors(row):
        if idx.cat[a] == C.PYTHON_FUNCTION:
            frame = parse_python_function(idx.names[a])
            if frame is not None and "synchronize" in frame.function \
                    and "torch/cuda/" in frame.file.replace("\\", "/"):
                return SyncCause.EXPLICIT_SYNCHRONIZE, "explicit synchronize"
            continue
        if idx.cat[a] == C.USER_ANNOTATION and not _is_marker(idx.names[a]) \
                and not idx.names[a].startswith((C.OPTIMIZER_STEP_PREFIX, "##")):
            return None, idx.names[a]
    return SyncCause.EXPLICIT_SYNCHRONIZE, "explicit synchronize"


def _clean_chain(names: Sequence[str]) -> list[str]:
    """Drop step/DataLoader/optimizer annotations from an op chain: they are not causes."""
    return [n for n in names if not n.startswith((C.PROFILER_STEP_PREFIX, C.DATALOADER_PREFIX,
                                                    C.OPTIMIZER_STEP_PREFIX, "##"))]


def _chain(trace: Trace, idx: HostIndex, op: int, inner: np.ndarray, syncs: list[int],
           copies: list[int], leaf: np.ndarray) -> tuple[str, ...]:
    """user op → the op that needed device data → the runtime calls that waited."""
    # The call the host waited in: a real sync call when there is one (after the copy).
    waits = [r for r in syncs if idx.sync[r]] or syncs
    target: int | None = max(waits, key=lambda r: idx.ts[r]) if waits else None
    if target is None:
        leaves = inner[leaf[inner]]  # leaf: ATen leaf ops (`_LEAF_OPS`), a mask over rows
        target = int(leaves[-1]) if len(leaves) else None
    if target is None:
        return (idx.names[op],) if idx.is_op[op] else ()
    above = np.asarray(trace.ancestors(target)[::-1], dtype=np.int64)
    path = above[(above == op) | np.isin(above, inner)].tolist()
    names = [idx.names[a] for a in path if idx.is_op[a]]
    if idx.is_op[target]:
        names.append(idx.names[target])
    else:
        parent = int(idx.parent[target])
        calls = inner[idx.is_runtime[inner] & (idx.parent[inner] == parent)
                      & (idx.ts[inner] <= idx.ts[target])].tolist()
        names.extend(idx.names[r] for r in calls[-2:] if r != target)
        names.append(idx.names[target])
    # Collapse repeats (aten::sum → aten::sum) without losing order.
    out: list[str] = []
    for n in names:
        if not out or out[-1] != n:
            out.append(n)
    return tuple(out)


# ---------------------------------------------------------------------------- copies
def to_non_blocking(concrete: Sequence[object] | None) -> bool | None:
    """The `non_blocking` argument of an `aten::to` call, from its concrete inputs."""
    if not concrete:
        return None
    pos = {8: 5, 6: 3, 5: 2}.get(len(concrete))
    if pos is None:
        return None
    value = str(concrete[pos])
    return True if value == "True" else False if value == "False" else None


@lazy_dataclass(frozen=True)
class DeviceMove:
    """A `.to(...)` / `.cuda()` call in user code: a host→device copy on a GPU."""

    row: int                 # the aten::to op
    python_call: str         # 'to' or 'cuda'
    input_dims: tuple[int, ...] | None
    non_blocking: bool | None
    step: int
    frame_row: int | None
    after_dataloader: bool   # among the first ops after a DataLoader __next__
    cpu_us: float
    early_in_step: bool = False  # among the first ops of its step (moving the step's inputs)


def device_moves(host: HostIndex) -> tuple[DeviceMove, ...]:
    """Every `aten::to` that the user's code called as `.to(...)`/`.cuda()` (with_stack needed)."""
    idx, trace = host, host.trace
    loader_ends = idx.dataloader_ends
    out: list[DeviceMove] = []
    rows = np.flatnonzero(idx.trace.name_isin({"aten::to"}) & idx.is_op).tolist()
    for row in rows:
        if user_op(host, row) != row:
            continue
        call = calling_python(host, row)
        if call not in DEVICE_MOVE_CALLS:
            continue
        dims = trace.input_dims(row)
        first = dims[0] if dims and isinstance(dims[0], list) else None
        out.append(DeviceMove(
            row=row, python_call=str(call),
            input_dims=tuple(int(d) for d in first) if first is not None else None,
            non_blocking=to_non_blocking(trace.concrete_inputs(row)), step=-1,
            frame_row=user_frame_row(host, row),
            after_dataloader=_follows_dataloader(idx, row, loader_ends), cpu_us=float(idx.dur[row])))
    steps = in_scope_steps(trace, [m.row for m in out])
    moves = []
    for m, k in zip(out, steps.tolist(), strict=True):
        early = False
        if 0 <= k < len(trace.steps):
            early = _few_ops_between(idx, trace.steps[k].start, m.row)
        moves.append(DeviceMove(**{**m.__dict__, "step": int(k), "early_in_step": early}))
    return tuple(moves)


def _is_marker(name: str) -> bool:
    return name.startswith((C.PROFILER_STEP_PREFIX, C.DATALOADER_PREFIX))


def _few_ops_between(idx: HostIndex, start: float, row: int, limit: int = 8) -> bool:
    """At most `limit` top-level ops (or annotated blocks) ran on this thread between `start`
    and `row`, copies aside: `row` belongs to the preparation of the step's inputs."""
    key = idx.thread_of.get(row)
    if key is None:
        return False
    th = idx.threads[key]
    lo = np.searchsorted(th.ts, start, side="left")
    hi = np.searchsorted(th.ts, idx.ts[row], side="left")
    count = 0
    for r in th.rows[lo:hi].tolist():
        if not (idx.is_op[r] or idx.cat[r] == C.USER_ANNOTATION) or _is_marker(idx.names[r]) \
                or idx.names[r] in COPY_OPS:
            continue
        parent = int(idx.parent[r])
        if parent != NO_ID and (idx.is_op[parent] or (idx.cat[parent] == C.USER_ANNOTATION
                                                      and not _is_marker(idx.names[parent]))):
            continue  # nested in an op or a block already counted
        count += 1
        if count > limit:
            return False
    return True


def uses_pinned_memory(host: HostIndex) -> bool:
    """Whether the program pins host memory anywhere in the trace (tensor.pin_memory())."""
    return bool(host.trace.name_isin(("aten::pin_memory", "aten::_pin_memory")).any())


def _follows_dataloader(idx: HostIndex, row: int, ends: dict[tuple[int, int, int], np.ndarray]) -> bool:
    """True when `row` comes right after a DataLoader `__next__` on the same thread: few
    top-level ops since the batch arrived (a forward pass in between means it is not the
    batch being moved)."""
    key = idx.thread_of.get(row)
    if key is None or key not in ends:
        return False
    arr = ends[key]
    k = int(np.searchsorted(arr, idx.ts[row], side="right")) - 1
    if k < 0:
        return False
    return _few_ops_between(idx, float(arr[k]), row)


def follows_dataloader(host: HostIndex, row: int) -> bool:
    """Whether host event `row` is among the first ops after a DataLoader `__next__`."""
    idx = host
    return _follows_dataloader(idx, row, idx.dataloader_ends)


# ---------------------------------------------------------------------------- data loading
@lazy_dataclass(frozen=True)
class LoaderWait:
    rows: tuple[int, ...]
    single_process: bool
    wait_us_per_step: float
    share: float          # of the steps' time (single-process: the median step's share)
    steps: int


def _median_step_share(trace: Trace, rows: list[int], step_ids: list[int], dur: np.ndarray) -> float:
    """The median over the profiled steps of each step's wait / its time (a step without a
    wait counts 0)."""
    waits = np.zeros(len(trace.steps))
    for r, k in zip(rows, step_ids, strict=True):
        waits[k] += float(dur[r])
    durs = np.asarray([s.dur for s in trace.steps], dtype=float)
    ok = durs > 0
    if not ok.any():
        return 0.0
    return float(median(np.minimum(1.0, waits[ok] / durs[ok])))


def dataloader_wait(host: HostIndex) -> LoaderWait | None:
    """DataLoader `__next__` time inside steps, per step and as a share of the step."""
    idx, trace = host, host.trace
    rows = np.flatnonzero(~idx.is_device & trace.name_startswith(C.DATALOADER_PREFIX)).tolist()
    if not rows:
        return None
    # Strictly inside step windows: the first batch of a run waits for worker start-up.
    steps = trace.step_of(trace.col("ts")[rows], trace.col("rank")[rows])
    pairs = [(r, s) for r, s in zip(rows, steps.tolist(), strict=True) if s != NO_ID]
    if not pairs:
        return None
    inside = [r for r, _ in pairs]
    n = step_windows(trace)
    total = float(sum(idx.dur[r] for r in inside))
    stepped = float(sum(s.dur for s in trace.steps))
    single = any("SingleProcess" in idx.names[r] for r in inside)
    # Share of the time spent in steps: with optimizer-bounded steps the first iteration's
    # wait falls before the first boundary, so the ratio can pass 1; cap it.
    share = min(1.0, total / stepped) if stepped > 0 else 0.0
    if single:
        # In the training process every step loads its own batches: a real wait is in every
        # step. On a contended machine a preemption inflates whichever interval it lands in
        # (a cheap __getitem__ of trainer_nan_callback.py: 0.2-12 % of the steps' time over 7
        # windows at load 5.6-9.4, one step at 14 %, the median step at most 7.6 %; the
        # planted slow loaders 36-75 % in every step). The median step says it; workers
        # deliver in bursts (a wait every other step), so their share stays the total's.
        share = _median_step_share(trace, inside, [s for _, s in pairs], idx.dur)
    return LoaderWait(rows=tuple(inside), single_process=single, wait_us_per_step=total / n,
                      share=share, steps=n)


# ---------------------------------------------------------------------------- masked losses
def _selected_count(trace: Trace, idx: HostIndex, index_row: int) -> int | None:
    """How many elements a boolean-mask index selected, from the shape nonzero resized to."""
    for r in idx.under(index_row).tolist():
        if idx.names[r] in ("aten::as_strided_", "aten::resize_") and idx.is_op[r]:
            dims = trace.input_dims(r)
            if dims and isinstance(dims[0], list) and len(dims[0]) == 2:
                return int(dims[0][0])
    return None


def masked_loss_pairs(host: HostIndex) -> dict[int, int]:
    """Boolean-mask index ops whose result feeds a loss: index op row → loss op row."""
    return host.masked_loss_pairs


def _masked_loss_pairs(host: HostIndex, max_between: int = 6) -> dict[int, int]:
    """Boolean-mask index ops whose result feeds a loss: index op row → loss op row.

    The loss is the next top-level loss op in the same call of the same user function, a few
    ops later; when both shapes were recorded, its input must have as many rows as the mask
    selected."""
    idx, trace = host, host.trace
    out: dict[int, int] = {}
    frames: dict[int, list[int]] = {}
    for h in host.hazards:
        if h.kind == "boolean-mask indexing" and h.frame_row is not None:
            frames.setdefault(h.frame_row, []).append(h.row)
    for frame_row, index_rows in frames.items():
        inside = [r for r in idx.under(frame_row).tolist() if idx.is_op[r]
                  and (int(idx.parent[r]) == NO_ID or not idx.is_op[int(idx.parent[r])])]
        position = {r: k for k, r in enumerate(inside)}
        for row in index_rows:
            k = position.get(row)
            if k is None:
                continue
            for later in inside[k + 1:k + 2 + max_between]:
                if idx.names[later] not in LOSS_OPS:
                    continue
                selected = _selected_count(trace, idx, row)
                dims = trace.input_dims(later)
                rows = dims[0][0] if dims and isinstance(dims[0], list) and dims[0] else None
                if selected is not None and rows is not None and int(rows) != selected:
                    break
                out[row] = later
                break
    return out


def in_data_loading(host: HostIndex, row: int) -> bool:
    """Whether `row` runs inside a DataLoader fetch (`__next__`, or torch/utils/data code):
    batches are built from CPU tensors there, even in a GPU job."""
    idx, trace = host, host.trace
    for a in trace.ancestors(row):
        name = idx.names[a]
        if name.startswith(C.DATALOADER_PREFIX):
            return True
        if idx.cat[a] == C.PYTHON_FUNCTION and "torch/utils/data/" in name.replace("\\", "/"):
            return True
    return False


def masked_copy_pairs(host: HostIndex) -> dict[int, int]:
    """`t[mask] = v[mask]`: boolean-mask index op row → the index_put_ row assigning it."""
    return host.masked_copy_pairs


def _masked_copy_pairs(host: HostIndex, max_between: int = 2) -> dict[int, int]:
    """`t[mask] = v[mask]`: boolean-mask index ops whose result is assigned through a mask by
    the next top-level ops of the same call (index op row → index_put_ row)."""
    idx = host
    puts = {h.row for h in host.hazards if h.cause == SyncCause.BOOLEAN_MASK_ASSIGNMENT}
    out: dict[int, int] = {}
    for h in host.hazards:
        if h.kind != "boolean-mask indexing" or h.frame_row is None:
            continue
        key = idx.thread_of.get(h.row)
        if key is None:
            continue
        th = idx.threads[key]
        k = int(np.searchsorted(th.ts, idx.end[h.row], side="left"))
        seen = 0
        for r in th.rows[k:k + 64].tolist():
            if not idx.is_op[r] or (int(idx.parent[r]) != NO_ID and idx.is_op[int(idx.parent[r])]):
                continue
            if r in puts:
                out[h.row] = r
                break
            seen += 1
            if seen > max_between:
                break
    return out
