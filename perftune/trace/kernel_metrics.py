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
from perftune.trace.device_metrics import launching_op, outermost_op
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


def kernel_table(trace: Trace, tables: Tables | None = None) -> pd.DataFrame:
    """One row per kernel: row, rank, device, name, dur, ts, blocks (grid product), threads
    (block product), registers, shared_memory, blocks_per_sm, occupancy (the profiler's estimate,
    %), sms (of its device), matrix, tensor_core, launch (runtime row); -1 / NaN when unknown."""
    import pandas as pd

    rows = np.flatnonzero(trace.cat_mask(C.KERNEL_CATS))
    cols = ["row", "rank", "device", "name", "dur", "ts", "blocks", "threads", "registers",
            "shared_memory", "blocks_per_sm", "occupancy", "sms", "matrix", "tensor_core", "launch"]
    if len(rows) == 0:
        return pd.DataFrame({c: [] for c in cols})
    base = pd.DataFrame({
        "row": rows, "rank": trace.col("rank")[rows], "device": trace.col("device")[rows],
        "name": trace.col("name")[rows], "dur": trace.col("dur")[rows],
        "ts": trace.col("ts")[rows], "launch": trace.launch_of_device_event[rows]})
    kern = trace.kernels
    if not kern.empty:
        base = base.merge(kern, on="row", how="left")
    for c in ("grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z"):
        if c not in base:
            base[c] = NO_ID
        base[c] = base[c].fillna(NO_ID).astype(np.int64)
    for c in ("registers", "shared_memory", "blocks_per_sm", "occupancy"):
        if c not in base:
            base[c] = np.nan
    grid = base[["grid_x", "grid_y", "grid_z"]].to_numpy()
    block = base[["block_x", "block_y", "block_z"]].to_numpy()
    base["blocks"] = np.where((grid > 0).all(axis=1), np.prod(np.maximum(grid, 1), axis=1), NO_ID)
    base["threads"] = np.where((block > 0).all(axis=1), np.prod(np.maximum(block, 1), axis=1), NO_ID)
    sms: dict[tuple[int, int], int] = {}
    for key in set(zip(base["rank"].tolist(), base["device"].tolist(), strict=True)):
        value = _props(trace, int(key[0]), int(key[1])).get("numSms")
        sms[key] = int(value) if isinstance(value, int) else NO_ID
    base["sms"] = [sms[k] for k in zip(base["rank"].tolist(), base["device"].tolist(), strict=True)]
    flags = {n: (is_matrix_kernel(n), is_matrix_kernel(n) and uses_tensor_cores(n))
             for n in base["name"].unique()}
    base["matrix"] = base["name"].map(lambda n: flags[n][0]).astype(bool)
    base["tensor_core"] = base["name"].map(lambda n: flags[n][1]).astype(bool)
    return base[cols]


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
    table = t(kernel_table)
    empty = MatrixKernelUse(0.0, 0.0, 0.0, 0.0, [], np.empty(0, np.int64))
    if table.empty:
        return empty
    mat = table[table["matrix"].to_numpy(dtype=bool)]
    if mat.empty:
        return empty
    tc = mat["tensor_core"].to_numpy(dtype=bool)
    simt = mat[~tc]
    half_us = 0.0
    fp32_rows: list[int] = []
    dur = trace.col("dur")
    for row in simt["row"].tolist():
        op = launching_op(trace, int(row), t)
        dtype = _op_dtype(trace, op) if op is not None else None
        if dtype in ("fp16", "bf16"):
            half_us += float(dur[int(row)])
        else:
            fp32_rows.append(int(row))
    fp32 = simt[simt["row"].isin(fp32_rows)]
    agg = fp32.groupby("name")["dur"].agg(["sum", "size"]).sort_values("sum", ascending=False)
    top = [(str(n), float(r["sum"]), int(r["size"])) for n, r in agg.head(8).iterrows()]
    return MatrixKernelUse(total_us=float(mat["dur"].sum()),
                           tensor_core_us=float(mat["dur"].to_numpy()[tc].sum()),
                           fp32_simt_us=float(fp32["dur"].sum()), half_simt_us=half_us,
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
def grid_fill(trace: Trace, tables: Tables | None = None) -> pd.DataFrame:
    """Per kernel with known launch dims: blocks, SMs, fill (blocks / SMs, at most 1), resident
    blocks per SM (occupancy calculator), waves, wave efficiency, theoretical occupancy and its
    limiter, the profiler's occupancy estimate (%), library / triton flags."""
    import pandas as pd

    t = Tables.of(trace, tables)
    table = t(kernel_table)
    cols = ["row", "rank", "name", "dur", "blocks", "threads", "sms", "fill",
            "resident_blocks_per_sm", "waves", "wave_efficiency", "theoretical_occupancy",
            "limiter", "occupancy", "registers", "shared_memory", "library", "triton"]
    known = table[(table["blocks"] > 0) & (table["threads"] > 0) & (table["sms"] > 0)].copy()
    if known.empty:
        return pd.DataFrame({c: [] for c in cols})
    known["registers"] = known["registers"].fillna(0.0)
    known["shared_memory"] = known["shared_memory"].fillna(0.0)
    keys = ["rank", "device", "threads", "registers", "shared_memory"]
    combos = known[keys].drop_duplicates()
    occ_rows = []
    for rank, device, threads, regs, smem in combos.itertuples(index=False):
        occ = device_specs.occupancy(int(threads), float(regs), float(smem),
                                     _props(trace, int(rank), int(device)))
        occ_rows.append((rank, device, threads, regs, smem,
                         occ.blocks_per_sm if occ else 0, occ.fraction if occ else np.nan,
                         occ.limiter if occ else "unknown"))
    occ_df = pd.DataFrame(occ_rows, columns=[*keys, "resident_blocks_per_sm",
                                             "theoretical_occupancy", "limiter"])
    known = known.merge(occ_df, on=keys, how="left")
    blocks = known["blocks"].to_numpy(dtype=np.float64)
    sms_a = known["sms"].to_numpy(dtype=np.float64)
    per_wave = known["resident_blocks_per_sm"].to_numpy(dtype=np.float64) * sms_a
    waves = np.where(per_wave > 0, blocks / np.maximum(per_wave, 1), 0.0)
    known["fill"] = np.minimum(1.0, blocks / sms_a)
    known["waves"] = waves
    known["wave_efficiency"] = np.where(waves > 0, waves / np.ceil(np.maximum(waves, 1e-12)), 1.0)
    names = known["name"]
    lib = {n: is_library_kernel(n) for n in names.unique()}
    tri = {n: is_triton_kernel(n) for n in names.unique()}
    known["library"] = names.map(lib).astype(bool)
    known["triton"] = names.map(tri).astype(bool)
    return known[cols]

