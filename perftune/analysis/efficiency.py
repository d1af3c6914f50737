"""The heavy operators against the machine's peaks: achieved FLOP/s and bytes/s, % of the
attainable roof, and what bounds each one.

Per operator name and dtype (all calls together, per step): FLOPs and bytes from the recorded
shapes (`trace/roofline.py`), time from its kernels on a GPU or its wall time on a CPU. Labels:

- compute-bound: right of the ridge point (FLOP/byte ≥ peak FLOP/s ÷ peak bytes/s);
- bandwidth-bound: left of it;
- overhead-bound: calls so short (< `OVERHEAD_CALL_US` each) and so far below the roof
  (< `OVERHEAD_EFFICIENCY`) that launch and dispatch, not arithmetic or memory, set their time;
- unknown: no peaks for this device (a GPU missing from the table, or a CPU trace analysed on a
  machine whose peaks were never measured: `perftune machine`).

Peaks: the GPU table (`trace/device_specs.py`) on GPU traces; on CPU traces this machine's
measured peaks, measured once by `perftune profile` on first use and cached (`perftune machine`
re-measures them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from perftune.documents import Efficiency, OpEfficiency, Roofs
from perftune.trace import groups as G
from perftune.trace import roofline
from perftune.trace.model import Trace
from perftune.trace.roofline import Peaks
from perftune.trace.tables import Tables

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MAX_OVERHEAD_SHARE", "MIN_DEVICE_BUSY", "MIN_MATRIX_SHARE", "OVERHEAD_CALL_US",
           "OVERHEAD_EFFICIENCY", "TOP_OPS", "StepCompute", "efficiency_document", "host_facts", "label",
           "matrix_columns", "matrix_point_rows", "matrix_points", "step_compute"]

TOP_OPS = 15
OVERHEAD_CALL_US = 20.0
OVERHEAD_EFFICIENCY = 0.10


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def label(flops: float, nbytes: float, dur_us: float, calls: float, peak_flops: float,
          roofs: Peaks) -> tuple[float, float, float, str, float | None]:
    """(achieved FLOP/s, bytes/s, FLOP per byte, bound, % of the attainable roof) of work that
    did `flops` and moved `nbytes` in `dur_us` over `calls` calls, against `roofs` (the
    compute roof `peak_flops` for its dtype): the labels of the module docstring."""
    seconds = dur_us * 1e-6
    f_s = flops / seconds if seconds > 0 else 0.0
    b_s = nbytes / seconds if seconds > 0 else 0.0
    intensity = flops / nbytes if nbytes > 0 else math.inf
    per_call_us = dur_us / calls if calls > 0 else dur_us
    if not (roofs.known and math.isfinite(peak_flops)):
        return float(f_s), float(b_s), float(intensity), "unknown", None
    attainable = min(peak_flops, intensity * roofs.bytes_per_s) if flops > 0 else roofs.bytes_per_s
    achieved = f_s if flops > 0 else b_s
    eff = achieved / attainable if attainable > 0 else math.nan
    bound = "compute" if intensity >= peak_flops / roofs.bytes_per_s else "bandwidth"
    if per_call_us < OVERHEAD_CALL_US and eff < OVERHEAD_EFFICIENCY:
        bound = "overhead"
    return float(f_s), float(b_s), float(intensity), bound, (100.0 * eff if math.isfinite(eff) else None)


def efficiency_document(trace: Trace, tables: Tables | None = None, top: int = TOP_OPS) -> Efficiency:
    roofs = roofline.peaks(trace, measure=False)
    doc_roofs = Roofs(flops_per_s=_finite(roofs.flops_per_s), bytes_per_s=_finite(roofs.bytes_per_s),
                      source=roofs.source)
    points = roofline.roofline_columns(trace, tables)
    steps = trace.steps
    if not len(points) or not steps:
        return Efficiency(roofs=doc_roofs)
    in_step = np.flatnonzero(trace.step_of(trace.col("ts")[points.col("row").astype(np.int64)],
                                           points.col("rank")) >= 0)
    if not len(in_step):
        return Efficiency(roofs=doc_roofs)
    n_steps = len(steps)
    step_ms = float(np.mean([s.dur for s in steps])) / 1000.0
    # pandas' groupby(["name", "dtype", "kind"], sort=False) then sort_values("dur_us",
    # ascending=False), to the last bit (perftune.trace.groups): the document is unchanged.
    dtypes = np.asarray(["" if d is None else d for d in points.col("dtype")[in_step].tolist()],
                        dtype=object)
    codes, keys = G.group_codes([points.col("name")[in_step], dtypes, points.col("kind")[in_step]])
    n = len(keys)
    calls = G.group_size(codes, n)
    flops = G.group_sum(codes, points.col("flops")[in_step], n)
    nbytes = G.group_sum(codes, points.col("bytes")[in_step], n)
    dur_us = G.group_sum(codes, points.col("dur_us")[in_step], n)
    peak = G.group_first(codes, points.col("peak_flops_per_s")[in_step], n)
    ops = []
    for g in G.sort_desc(dur_us)[:top].tolist():
        name, dtype, kind = keys[g]
        f_s, b_s, intensity, bound, percent = label(
            float(flops[g]), float(nbytes[g]), float(dur_us[g]), float(calls[g]), float(peak[g]),
            roofs)
        ms = float(dur_us[g]) / 1000.0 / n_steps
        ops.append(OpEfficiency(
            name=str(name), kind=str(kind), dtype=str(dtype) or None,
            calls_per_step=float(calls[g]) / n_steps, ms_per_step=ms,
            share=ms / step_ms if step_ms > 0 else 0.0,
            flops_per_s=f_s, bytes_per_s=b_s, intensity=_finite(intensity),
            bound=bound, percent_of_peak=percent))  # type: ignore[arg-type]
    return Efficiency(roofs=doc_roofs, ops=ops)


# ---------------------------------------------------------------------------- compute-bound steps
# A step is compute-bound when the model's own work (forward, backward, optimizer) fills it and
# matrix operators (convolutions, matmuls, attention) take a large part of it; the advice for
# such steps (precision, channels_last, batch size, threads: rules PFT507-PFT510) is given only
# then. Host overhead (data wait, syncs, Python between ops, other host ops) above this share
# of the step, or matrix time below MIN_MATRIX_SHARE, and the step is something else.
MAX_OVERHEAD_SHARE = 0.35
MIN_MATRIX_SHARE = 0.30
MIN_DEVICE_BUSY = 0.60  # GPU traces: the device computes at least this share of the step
_MATRIX = ("gemm", "conv", "attention")
_LOW = ("bf16", "fp16")


@dataclass(frozen=True)
class StepCompute:
    """Where a step's arithmetic goes, per step (ms), and whether the step is compute-bound."""

    steps: int
    step_ms: float
    work_ms: float  # forward + backward + optimizer + zero_grad phases
    overhead_ms: float  # data wait, syncs, other host ops, Python between ops, profiler
    device_busy_ms: float | None  # GPU traces: device compute time
    matrix_ms: float  # conv / gemm / attention (kernel time on GPU, op wall time on CPU)
    conv_ms: float
    fp32_matrix_ms: float  # plain fp32 (on GPU: not on tensor cores)
    tf32_matrix_ms: float  # GPU: fp32 ops whose kernels ran on tensor cores (TF32)
    low_precision_matrix_ms: float  # bf16 / fp16
    memory_bound_matrix_ms: float  # left of the ridge point (needs peaks)
    short_call_matrix_ms: float  # calls shorter than OVERHEAD_CALL_US (launch/dispatch-bound)
    compute_bound: bool
    why: str

    @property
    def matrix_share(self) -> float:
        return self.matrix_ms / self.step_ms if self.step_ms > 0 else 0.0


def matrix_point_rows(trace: Trace, tables: Tables | None = None) -> np.ndarray:
    """Indices into `roofline.roofline_columns` of the matrix operators' points inside steps
    (one per counted call), in the points' order: `matrix_points` without pandas."""
    points = roofline.roofline_columns(trace, tables)
    if not len(points) or not trace.steps:
        return np.empty(0, dtype=np.int64)
    idx = np.flatnonzero(np.isin(points.col("kind"), _MATRIX))
    if not len(idx):
        return idx
    rows = points.col("row")[idx].astype(np.int64)
    return idx[trace.step_of(trace.col("ts")[rows], points.col("rank")[idx]) >= 0]


def matrix_columns(trace: Trace, tables: Tables | None = None) -> dict[str, np.ndarray]:
    """The columns of `matrix_points` (roofline point columns at `matrix_point_rows`)."""
    points = roofline.roofline_columns(trace, tables)
    idx = matrix_point_rows(trace, tables)
    return {c: points.col(c)[idx] if len(points) else np.empty(0, dtype=object)
            for c in roofline.POINT_COLUMNS}


def matrix_points(trace: Trace, tables: Tables | None = None) -> pd.DataFrame:
    """The roofline points of matrix operators inside steps (one row per counted call)."""
    points = roofline.roofline_points(trace, tables)
    return points.iloc[matrix_point_rows(trace, tables)]


def step_compute(trace: Trace, tables: Tables | None = None, roofs: Peaks | None = None) -> StepCompute:
    """The step's compute profile (see the constants above for when it is compute-bound)."""
    from perftune.analysis.phases import mean_device, mean_phases, phase_table

    # The phases are one table per analysis (the summary and PFT303 read it too).
    per_step = Tables.of(trace, tables)(phase_table)
    steps = len(trace.steps)
    step_ms = float(np.mean([s.dur_ms for s in per_step])) if per_step else 0.0
    mean = mean_phases(per_step)
    work = sum(mean[p] for p in ("forward", "backward", "optimizer", "zero_grad"))
    overhead = sum(mean[p] for p in ("data", "sync", "other_ops", "python", "profiler"))
    device = mean_device(per_step)
    busy = sum(d["compute"] for d in device.values()) if device else None
    points = matrix_columns(trace, tables)
    n = max(steps, 1)
    dur = points["dur_us"]

    def ms(mask: Any) -> float:
        return float(np.nansum(dur[mask])) / 1000.0 / n if len(dur) else 0.0

    if len(dur):
        dtype = np.asarray(["" if d is None else d for d in points["dtype"].tolist()], dtype=object)
        matrix = ms(np.ones(len(dur), dtype=bool))
        conv = ms(points["kind"] == "conv")
        fp32 = ms(dtype == "fp32")
        tf32 = ms(dtype == "tf32")
        low = ms(np.isin(dtype, _LOW))
        short = ms(dur < OVERHEAD_CALL_US)
        if roofs is not None and roofs.known:
            ridge = np.asarray([roofs.flops_for(d or None) for d in dtype]) / roofs.bytes_per_s
            memory = ms(points["intensity"] < ridge)
        else:
            memory = 0.0
    else:
        matrix = conv = fp32 = tf32 = low = short = memory = 0.0
    why = ""
    if step_ms <= 0:
        why = "no steps"
    elif busy is not None and busy < MIN_DEVICE_BUSY * step_ms:
        why = f"the device computes {busy / step_ms:.0%} of the step (under {MIN_DEVICE_BUSY:.0%})"
    elif busy is None and overhead > MAX_OVERHEAD_SHARE * step_ms:
        why = (f"host overhead (data wait, syncs, Python, other host ops) is {overhead / step_ms:.0%} "
               f"of the step (over {MAX_OVERHEAD_SHARE:.0%})")
    elif matrix < MIN_MATRIX_SHARE * step_ms:
        why = f"matrix operators take {matrix / step_ms:.0%} of the step (under {MIN_MATRIX_SHARE:.0%})"
    elif matrix > 0 and (memory + short) > 0.5 * matrix:
        why = "most matrix time is bandwidth- or overhead-bound (small or thin operators)"
    return StepCompute(
        steps=steps, step_ms=step_ms, work_ms=work, overhead_ms=overhead, device_busy_ms=busy,
        matrix_ms=matrix, conv_ms=conv, fp32_matrix_ms=fp32, tf32_matrix_ms=tf32,
        low_precision_matrix_ms=low, memory_bound_matrix_ms=memory, short_call_matrix_ms=short,
        compute_bound=not why, why=why or "compute-bound")


# Of the time the process's threads wanted a core during the profiled window, the part they
# waited for one above which the window was contended. A multi-threaded op waits at its barrier
# for its slowest thread, so a preempted thread stalls all of them. Measured on the 2-core dev
# machine (tests/field/imagenet_meters.py): alone at load 2.0, 6 % (5.9 ms steps); two profiles
# started together at load 2.0 — which the start load average cannot see — 41 % and 53 %
# (46 and 92 ms steps); next to other work at load 4-14, 26-91 %. A window above the line is
# called contended, which silences the compute-bound advice (PFT507/PFT508) and its markers
# alike.
CONTENDED_WAIT_SHARE = 0.15
CONTENDED_STEAL_SHARE = 0.1  # of the machine's cores taken by the hypervisor


def threads_oversubscribed(host: dict[str, Any] | None) -> bool:
    """Whether the profiled process's threads competed with other processes for the cores.

    From the window itself where the capture recorded it (`window`, read when the profiled
    steps ended): the process's threads waited for a core for more than CONTENDED_WAIT_SHARE
    of the time they were runnable, or the hypervisor stole more than CONTENDED_STEAL_SHARE
    of the cores. Else, or as well, from the load average (when profiling started, and when
    it ended): more than one intra-op thread, and the load less the process's own threads
    above the cores it may use. A load average lags by a minute (two profiles started
    together both record the load of before): the window's own figures decide first.

    Then an op's time is mostly its threads waiting (a preempted thread holds a multi-threaded
    op's barrier: steps 10-100x longer on a machine at load 7 on 2 cores), not arithmetic, and
    whether the step is compute-bound cannot be read from it."""
    if not host:
        return False
    window = host.get("window")
    if isinstance(window, dict) and "error" not in window:
        wait, steal = window.get("wait_share"), window.get("steal_share")
        if wait is not None and float(wait) > CONTENDED_WAIT_SHARE:
            return True
        if steal is not None and float(steal) > CONTENDED_STEAL_SHARE:
            return True
    threads = int(host.get("torch_threads") or 1)
    cores = host.get("usable_cores") or host.get("cpu_count")
    loads = [host.get("loadavg")]
    if isinstance(window, dict):
        loads.append(window.get("loadavg_end"))
    known = [float(x) for x in loads if x is not None]
    if threads <= 1 or not cores or not known:
        return False
    return max(known) - threads > float(cores)


def host_facts(trace: Trace) -> dict[str, Any] | None:
    """What `perftune profile` recorded about the process when profiling started (threads,
    usable cores, CPU bf16 flags, matmul precision): the trace header's `perftune.host`, with
    what the window saw of other processes when it ended (`perftune_window`) as `window`.
    None on foreign traces."""
    header = trace.ranks[0].header if trace.ranks else {}
    meta = header.get("perftune")
    host = meta.get("host") if isinstance(meta, dict) else None
    if not isinstance(host, dict) or "error" in host:
        return None
    window = header.get("perftune_window")
    return {**host, "window": window} if isinstance(window, dict) else host
