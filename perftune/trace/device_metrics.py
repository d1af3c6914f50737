"""Per-operator facts for the idle, memory, compute and distributed rules.

Device time under each host op, dtype sizes from `Input type`, tensor inputs from `Input Dims`,
the batch size guessed from activations. Pure functions over a `Trace`; expensive per-trace
arrays are tables (`fn(trace, tables=None)`, perftune.trace.tables): the analysis context holds
one `Tables` per run, so rules that need the same array compute it once.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from perftune import units
from perftune.trace import categories as C
from perftune.trace.groups import stable_order
from perftune.trace.model import NO_ID, Trace, subtree_sums
from perftune.trace.tables import Tables

# ---------------------------------------------------------------------------- dtypes
_DTYPE_BYTES = {
    "float": 4, "double": 8, "c10::Half": 2, "c10::BFloat16": 2, "long int": 8, "long": 8,
    "int": 4, "short int": 2, "short": 2, "bool": 1, "unsigned char": 1, "signed char": 1,
    "char": 1, "c10::complex<float>": 8, "c10::complex<double>": 16, "c10::complex<c10::Half>": 4,
    "c10::Float8_e4m3fn": 1, "c10::Float8_e5m2": 1, "c10::Float8_e4m3fnuz": 1,
    "c10::Float8_e5m2fnuz": 1, "unsigned int": 4, "unsigned long": 8, "unsigned short": 2,
    "c10::qint8": 1, "c10::quint8": 1, "c10::qint32": 4,
}
_DTYPE_SHORT = {"float": "fp32", "double": "fp64", "c10::Half": "fp16", "c10::BFloat16": "bf16",
                "c10::Float8_e4m3fn": "fp8", "c10::Float8_e5m2": "fp8"}


def dtype_bytes(type_name: str | None) -> int | None:
    """Bytes per element of a profiler `Input type` string; None for non-tensors (Scalar, '')."""
    if not type_name:
        return None
    return _DTYPE_BYTES.get(str(type_name))


def short_dtype(type_name: str | None) -> str | None:
    """'fp32', 'bf16', ... for floating types; 'int'/'bool' for the rest; None when unknown."""
    if not type_name:
        return None
    name = str(type_name)
    if name in _DTYPE_SHORT:
        return _DTYPE_SHORT[name]
    if name == "bool":
        return "bool"
    if name in _DTYPE_BYTES:
        return "int"
    return None


# PyTorch tensors have at most 64 dimensions; a longer "shape" is corrupt or hostile data
# (a product of a million dims is a bigint that takes minutes to build).
MAX_TENSOR_DIMS = 64
_MAX_NUMEL = 1 << 62


def numel(shape: Sequence[Any]) -> int:
    """Elements of a tensor of `shape`; 0 for more than MAX_TENSOR_DIMS dims, capped at 2**62."""
    if len(shape) > MAX_TENSOR_DIMS:
        return 0
    out = 1
    for d in shape:
        out = min(out * int(d), _MAX_NUMEL)
    return out


def tensor_inputs(trace: Trace, row: int) -> list[tuple[list[int], str]]:
    """(shape, type) of each tensor input of a cpu_op (empty without record_shapes)."""
    dims = trace.input_dims(row) or []
    types = trace.input_types(row) or []
    out: list[tuple[list[int], str]] = []
    for k, shape in enumerate(dims):
        t = str(types[k]) if k < len(types) else ""
        if dtype_bytes(t) is None or not isinstance(shape, list):
            continue
        if not all(isinstance(d, int) for d in shape):
            continue  # TensorList inputs are lists of shapes
        out.append((shape, t))
    return out




# ---------------------------------------------------------------------------- device time
def inclusive_device_us(trace: Trace, tables: Tables | None = None) -> np.ndarray:
    """For every host row: device work time (µs) issued under it, itself included.

    A kernel counts for the runtime call that launched it and for every host event enclosing
    that call (the op, its parent ops, the step annotation), so an op's figure is the device
    time it caused.
    """
    out = np.zeros(trace.n)
    launch = trace.launch_of_device_event
    work = trace.cat_mask(C.DEVICE_WORK_CATS) & (launch != NO_ID)
    if not work.any():
        return out
    # Summed up the nesting tree level by level: linear in events, however deep they nest.
    per_launch = np.bincount(launch[work], weights=trace.col("dur")[work], minlength=trace.n)
    return subtree_sums(trace.parent, per_launch, trace.depth)


def kernels_under(trace: Trace, tables: Tables | None = None) -> np.ndarray:
    """For every host row: how many kernels were launched under it (inclusive)."""
    launch = trace.launch_of_device_event
    kern = trace.cat_is(C.KERNEL) & (launch != NO_ID)
    per_launch = np.bincount(launch[kern], minlength=trace.n)
    out: np.ndarray = np.rint(subtree_sums(trace.parent, per_launch, trace.depth)).astype(np.int64)
    return out


def names(trace: Trace, tables: Tables | None = None) -> np.ndarray:
    """Every row's name as a numpy object array (fast per-row access in loops)."""
    names: np.ndarray = np.asarray(trace.strings("name"), dtype=object)[trace.codes("name")]
    return names


def op_mask(trace: Trace, tables: Tables | None = None) -> np.ndarray:
    """Rows that are cpu_ops (ATen operators and other recorded operators)."""
    return np.asarray(trace.cat_mask({C.CPU_OP}), dtype=bool)


def op_ancestry(trace: Trace, tables: Tables | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For every row, over whole columns: (the innermost cpu_op strictly above it, the
    outermost cpu_op enclosing or being it), -1 where none. Computed level by level of the
    host nesting (parents before children), once per trace."""

    t = Tables.of(trace, tables)
    is_op = t(op_mask)
    parent = trace.parent
    n = len(parent)
    inner_above = np.full(n, NO_ID, dtype=np.int64)
    outer = np.full(n, NO_ID, dtype=np.int64)
    if n == 0:
        return inner_above, outer
    depth = trace.depth
    order = stable_order(depth)
    bounds = np.searchsorted(depth[order], np.arange(int(depth.max()) + 2))
    roots = order[bounds[0]:bounds[1]]
    outer[roots] = np.where(is_op[roots], roots, NO_ID)
    for d in range(1, len(bounds) - 1):
        rows = order[bounds[d]:bounds[d + 1]]
        if len(rows) == 0:
            continue
        par = parent[rows]
        inner_above[rows] = np.where(is_op[par], par, inner_above[par])
        above = outer[par]
        outer[rows] = np.where(above != NO_ID, above, np.where(is_op[rows], rows, NO_ID))
    return inner_above, outer

def launching_op(trace: Trace, device_row: int, tables: Tables | None = None) -> int | None:
    """The innermost cpu_op above the runtime call that launched a device event."""
    t = Tables.of(trace, tables)
    launch = int(trace.launch_of_device_event[device_row])
    if launch == NO_ID:
        return None
    if tables is None:  # one question: walk up (the whole-column table pays off over many)
        is_op, parent = t(op_mask), trace.parent
        p = int(parent[launch])
        while p != NO_ID:
            if is_op[p]:
                return p
            p = int(parent[p])
        return None
    found = int(t(op_ancestry)[0][launch])
    return None if found == NO_ID else found

def outermost_op(trace: Trace, row: int, tables: Tables | None = None) -> int | None:
    """The outermost cpu_op enclosing (or being) a host row: what the user's line called."""
    t = Tables.of(trace, tables)
    if tables is None:  # one question: walk up
        is_op, parent = t(op_mask), trace.parent
        walked = row if is_op[row] else None
        p = int(parent[row])
        while p != NO_ID:
            if is_op[p]:
                walked = p
            p = int(parent[p])
        return walked
    found = int(t(op_ancestry)[1][row])
    return None if found == NO_ID else found

# ---------------------------------------------------------------------------- formatting
# Finding messages keep one decimal (their text is part of the rules' snapshots).
fmt_bytes = functools.partial(units.size, missing="?", digits=1)

# ---------------------------------------------------------------------------- steps
def main_rank(trace: Trace) -> int:
    return trace.rank_ids[0] if trace.rank_ids else 0

def step_count(trace: Trace, rank: int | None = None) -> int:
    return len(trace.steps_of(main_rank(trace) if rank is None else rank))

# ---------------------------------------------------------------------------- batch size
_BATCH_OPS = ("aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::linear", "aten::layer_norm",
              "aten::batch_norm", "aten::convolution")

def guess_batch_size(trace: Trace) -> int | None:
    """The training batch size, from the leading dim of the model's activations.

    The most common leading dimension of convolution / linear / normalisation inputs with three
    or more dims (activations, not weights) is the batch in nearly every model; None when the
    trace has no shapes.
    """
    cand = np.flatnonzero(trace.name_isin(_BATCH_OPS))
    counts: dict[int, int] = {}
    for row in cand.tolist()[:5000]:
        dims = trace.input_dims(row) or []
        first = dims[0] if dims else None
        if isinstance(first, list) and len(first) >= 3 and isinstance(first[0], int):
            counts[first[0]] = counts.get(first[0], 0) + 1
    if not counts:
        return None
    return max(counts, key=lambda b: (counts[b], b))

def batch_size_values(batch: int | None, direction: str) -> list[int]:
    """Tuner values around a batch size: 'down' under memory pressure, 'up' for an idle device."""
    if batch is None or batch < 1:
        return []
    if direction == "down":
        values = {max(1, batch // 4), max(1, batch // 2), batch}
    else:
        values = {batch, batch * 2, batch * 4}
    return sorted(values)
