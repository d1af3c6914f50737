"""Kernel-level facts: which kernels are matrix math, on tensor cores or not, how they fill the GPU.

Launch properties (grid, block, registers, shared memory, the profiler's occupancy estimate)
come from `Trace.kernels`; device limits from the trace's `deviceProperties`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from perftune.trace import categories as C
from perftune.trace import device_specs
from perftune.trace import groups as G
from perftune.trace.device_metrics import launching_op, op_ancestry, outermost_op
from perftune.trace.model import NO_ID, Trace
from perftune.trace.roofline import uses_tensor_cores
from perftune.trace.tables import Tables

if TYPE_CHECKING:
    import pandas as pd

_MATRIX = re.compile(
    r"gemm|conv|scudnn|winograd|dgrad|wgrad|fprop|xmma|cutlass|nvjet|Cijk_|igemm|"
    r"implicit_convolve|_fft_|fft2d|sm\d\d_xmma",
    re.IGNORECASE)
_NOT_MATRIX = re.compile(r"\bbn_|batch_?norm|nchwToNhwc|nhwcToNchw|splitKreduce|elementwise|"
                         r"reduce_kernel|epilogue|softmax|layer_?norm|transpose|fill|copy",
                         re.IGNORECASE)
_CONV = re.compile(r"conv|scudnn|winograd|dgrad|wgrad|fprop|implicit_convolve|igemm", re.IGNORECASE)
# Vendor-tuned libraries pick their own tiles and occupancy on purpose.
_LIBRARY = re.compile(r"gemm|cudnn|cutlass|xmma|nvjet|Cijk_|MIOpen|cublas|nccl|rccl|flash|fmha|"
                      r"sm\d\d_|ampere_|volta_|turing_|hopper_|maxwell_|"
                      # cuDNN's convolution engines, cuBLAS's gemv / split-K, CUB, cuTENSOR
                      r"wgrad|dgrad|fprop|convolve|winograd|splitKreduce|gemv|cub::|cutensor|"
                      # NVLS / multimem and symmetric-memory collectives
                      r"multimem|nvls|symm_mem|all_reduce", re.IGNORECASE)


def is_matrix_kernel(name: str) -> bool:
    """GEMM or convolution kernels (cuBLAS, cuDNN, CUTLASS, rocBLAS/Tensile, MIOpen)."""
    return bool(_MATRIX.search(name)) and not _NOT_MATRIX.search(name)


def is_conv_kernel(name: str) -> bool:
    return is_matrix_kernel(name) and bool(_CONV.search(name))


def is_library_kernel(name: str) -> bool:
    return bool(_LIBRARY.search(name))


def is_triton_kernel(name: str) -> bool:
    return name.startswith(("triton_", "triton__")) or "_triton_" in name


def _props(trace: Trace, rank: int, device: int) -> dict[str, object]:
    return trace.device_props(rank, device) or (
        dict(trace.device_properties[0]) if trace.device_properties else {})


KERNEL_COLUMNS = ("row", "rank", "device", "name", "dur", "ts", "blocks", "threads", "registers",
                  "shared_memory", "blocks_per_sm", "occupancy", "sms", "matrix", "tensor_core",
                  "launch")


def kernel_columns(trace: Trace, tables: Tables | None = None) -> dict[str, np.ndarray]:
    """`kernel_table` as numpy columns (no pandas): one array per column, a row per kernel in
    trace order; computed once per analysis when `tables` is given."""
    t = Tables.of(trace, tables)
    columns: dict[str, np.ndarray] = t(_kernel_columns)
    return columns


def _kernel_columns(trace: Trace, tables: Tables | None = None) -> dict[str, np.ndarray]:
    rows = np.flatnonzero(trace.cat_mask(C.KERNEL_CATS))
    if len(rows) == 0:
        return {c: np.empty(0, dtype=object) for c in KERNEL_COLUMNS}
    out: dict[str, np.ndarray] = {
        "row": rows, "rank": trace.col("rank")[rows], "device": trace.col("device")[rows],
        "name": trace.col("name")[rows], "dur": trace.col("dur")[rows],
        "ts": trace.col("ts")[rows]}
    store = trace.arg_store
    n = len(rows)
    dims = np.full((n, 6), NO_ID, dtype=np.int64)
    floats = np.full((n, 5), np.nan)
    if store is not None and len(store.kernel_rows):
        k = np.minimum(np.searchsorted(store.kernel_rows, rows), len(store.kernel_rows) - 1)
        found = store.kernel_rows[k] == rows
        dims[found] = store.kernel_dims[k[found]]
        floats[found] = store.kernel_floats[k[found]]
    grid, block = dims[:, :3], dims[:, 3:]
    out["blocks"] = np.where((grid > 0).all(axis=1), np.prod(np.maximum(grid, 1), axis=1), NO_ID)
    out["threads"] = np.where((block > 0).all(axis=1), np.prod(np.maximum(block, 1), axis=1),
                              NO_ID)
    out["registers"], out["shared_memory"], out["blocks_per_sm"] = (floats[:, 0], floats[:, 1],
                                                                    floats[:, 2])
    out["occupancy"] = floats[:, 4]
    # The SM count per (rank, device) pair, looked up once per pair and spread by its code.
    pairs, keys = G.group_codes([out["rank"], out["device"]])
    sms = [_props(trace, int(r), int(d)).get("numSms") for r, d in keys]
    out["sms"] = np.asarray([v if isinstance(v, int) else NO_ID for v in sms],
                            dtype=np.int64)[pairs]
    codes = trace.codes("name")[rows]
    strings = trace.strings("name")
    used = G.distinct(codes)
    matrix = np.zeros(len(strings), dtype=bool)
    tensor = np.zeros(len(strings), dtype=bool)
    for c in used.tolist():
        name = strings[c]
        matrix[c] = is_matrix_kernel(name)
        tensor[c] = matrix[c] and uses_tensor_cores(name)
    out["matrix"], out["tensor_core"] = matrix[codes], tensor[codes]
    out["launch"] = trace.launch_of_device_event[rows]
    return {c: out[c] for c in KERNEL_COLUMNS}


def kernel_table(trace: Trace, tables: Tables | None = None) -> pd.DataFrame:
    """One row per kernel: row, rank, device, name, dur, ts, blocks (grid product), threads
    (block product), registers, shared_memory, blocks_per_sm, occupancy (the profiler's estimate,
    %), sms (of its device), matrix, tensor_core, launch (runtime row); -1 / NaN when unknown.
    The pandas form of `kernel_columns` (the analysis reads the columns)."""
    import pandas as pd

    columns = kernel_columns(trace, tables)
    if len(columns["row"]) == 0:
        return pd.DataFrame({c: [] for c in KERNEL_COLUMNS})
    return pd.DataFrame(columns)


# ---------------------------------------------------------------------------- fp32 matrix math
@dataclass(frozen=True)
class MatrixKernelUse:
    """Time in GEMM/convolution kernels of one trace, split by tensor-core use (µs)."""

    total_us: float
    tensor_core_us: float
    fp32_simt_us: float  # matrix kernels not on tensor cores, launched by fp32 (or unknown) ops
    half_simt_us: float  # not on tensor cores although the op ran in fp16/bf16
    top_simt: list[tuple[str, float, int]]  # (kernel, µs, calls) by time
    simt_rows: np.ndarray


def matrix_kernel_use(trace: Trace, tables: Tables | None = None) -> MatrixKernelUse:
    t = Tables.of(trace, tables)
    table = kernel_columns(trace, t)
    empty = MatrixKernelUse(0.0, 0.0, 0.0, 0.0, [], np.empty(0, np.int64))
    if len(table["row"]) == 0:
        return empty
    is_mat = table["matrix"].astype(bool)
    if not is_mat.any():
        return empty
    mat_rows, mat_dur = table["row"][is_mat], table["dur"][is_mat]
    mat_names = table["name"][is_mat]
    tc = table["tensor_core"][is_mat].astype(bool)
    dur = trace.col("dur")
    # Matrix kernels off the tensor cores: the op that launched each (`launching_op`, over
    # whole columns) and its input dtype, decoded once per distinct `Input type` text.
    simt = np.flatnonzero(~tc)
    simt_rows = mat_rows[simt]
    launch = trace.launch_of_device_event[simt_rows]
    ops = np.full(len(simt_rows), NO_ID, dtype=np.int64)
    launched = launch != NO_ID
    if launched.any():
        ops[launched] = t(op_ancestry)[0][launch[launched]]
    half = np.zeros(len(simt_rows), dtype=bool)
    with_op = np.flatnonzero(ops != NO_ID)
    if len(with_op):
        op_rows = ops[with_op].tolist()
        dtypes: dict[bytes | None, str | None] = {}
        for k, key, op in zip(with_op.tolist(), trace.arg_bytes_of("input_type", ops[with_op]),
                              op_rows, strict=True):
            if key not in dtypes:
                dtypes[key] = _op_dtype(trace, op)
            half[k] = dtypes[key] in ("fp16", "bf16")
    half_us = 0.0
    for us in dur[simt_rows[half]].tolist():  # in kernel order, as the sum always was
        half_us += us
    fp32_rows = simt_rows[~half].tolist()
    fp32_mask = np.zeros(len(mat_rows), dtype=bool)
    fp32_mask[simt[~half]] = True
    fp32_dur, fp32_names = mat_dur[fp32_mask], mat_names[fp32_mask]
    top: list[tuple[str, float, int]] = []
    if len(fp32_dur):
        codes, keys = G.group_codes([fp32_names], sort=True)
        sums = G.group_sum(codes, fp32_dur, len(keys))
        sizes = G.group_size(codes, len(keys))
        top = [(str(keys[g]), float(sums[g]), int(sizes[g])) for g in G.sort_desc(sums)[:8].tolist()]
    return MatrixKernelUse(total_us=float(np.nansum(mat_dur)),
                           tensor_core_us=float(mat_dur[tc].sum()),
                           fp32_simt_us=float(np.nansum(fp32_dur)), half_simt_us=half_us,
                           top_simt=top, simt_rows=np.asarray(fp32_rows, dtype=np.int64))


def _op_dtype(trace: Trace, op: int) -> str | None:
    from perftune.trace.device_metrics import short_dtype

    types = trace.input_types(op) or []
    for t in types:
        d = short_dtype(str(t))
        if d in ("fp32", "fp16", "bf16", "fp64"):
            return d
    return None


def user_op_of_kernel(trace: Trace, row: int, tables: Tables | None = None) -> int | None:
    """The outermost op above a kernel's launch (what the user's line called); pass `tables`
    when calling it for many kernels."""
    t = Tables.of(trace, tables)
    inner = launching_op(trace, row, t)
    return outermost_op(trace, inner, t) if inner is not None else None


# ---------------------------------------------------------------------------- grid fill
GRID_FILL_COLUMNS = ("row", "rank", "name", "dur", "blocks", "threads", "sms", "fill",
                     "resident_blocks_per_sm", "waves", "wave_efficiency", "theoretical_occupancy",
                     "limiter", "occupancy", "registers", "shared_memory", "library", "triton")


def grid_fill_columns(trace: Trace, tables: Tables | None = None) -> dict[str, np.ndarray]:
    """Per kernel with known launch dims: blocks, SMs, fill (blocks / SMs, at most 1), resident
    blocks per SM (occupancy calculator), waves, wave efficiency, theoretical occupancy and its
    limiter, the profiler's occupancy estimate (%), library / triton flags; numpy columns,
    computed once per analysis when `tables` is given."""
    t = Tables.of(trace, tables)
    columns: dict[str, np.ndarray] = t(_grid_fill_columns)
    return columns


def _grid_fill_columns(trace: Trace, tables: Tables | None = None) -> dict[str, np.ndarray]:
    t = Tables.of(trace, tables)
    table = kernel_columns(trace, t)
    if len(table["row"]) == 0:
        return {c: np.empty(0, dtype=object) for c in GRID_FILL_COLUMNS}
    keep = (table["blocks"] > 0) & (table["threads"] > 0) & (table["sms"] > 0)
    if not keep.any():
        return {c: np.empty(0, dtype=object) for c in GRID_FILL_COLUMNS}
    known = {c: v[keep] for c, v in table.items()}
    known["registers"] = np.nan_to_num(known["registers"], nan=0.0)
    known["shared_memory"] = np.nan_to_num(known["shared_memory"], nan=0.0)
    keys = ("rank", "device", "threads", "registers", "shared_memory")
    codes, combos = G.group_codes([known[k] for k in keys])
    resident = np.zeros(len(combos), dtype=np.int64)
    theoretical = np.full(len(combos), np.nan)
    limiter = np.empty(len(combos), dtype=object)
    for g, (rank, device, threads, regs, smem) in enumerate(combos):
        occ = device_specs.occupancy(int(threads), float(regs), float(smem),
                                     _props(trace, int(rank), int(device)))
        resident[g] = occ.blocks_per_sm if occ else 0
        theoretical[g] = occ.fraction if occ else np.nan
        limiter[g] = occ.limiter if occ else "unknown"
    known["resident_blocks_per_sm"] = resident[codes]
    known["theoretical_occupancy"] = theoretical[codes]
    known["limiter"] = limiter[codes]
    blocks = known["blocks"].astype(np.float64)
    sms_a = known["sms"].astype(np.float64)
    per_wave = known["resident_blocks_per_sm"].astype(np.float64) * sms_a
    waves = np.where(per_wave > 0, blocks / np.maximum(per_wave, 1), 0.0)
    known["fill"] = np.minimum(1.0, blocks / sms_a)
    known["waves"] = waves
    known["wave_efficiency"] = np.where(waves > 0, waves / np.ceil(np.maximum(waves, 1e-12)), 1.0)
    known["library"] = G.flags_of(known["name"], is_library_kernel)
    known["triton"] = G.flags_of(known["name"], is_triton_kernel)
    return {c: known[c] for c in GRID_FILL_COLUMNS}


def grid_fill(trace: Trace, tables: Tables | None = None) -> pd.DataFrame:
    """`grid_fill_columns` as a pandas frame (the analysis reads the columns)."""
    import pandas as pd

    columns = grid_fill_columns(trace, tables)
    if len(columns["row"]) == 0:
        return pd.DataFrame({c: [] for c in GRID_FILL_COLUMNS})
    return pd.DataFrame(columns)
