"""PFT507 no-reduced-precision: a compute-bound step doing its matrix math in fp32 where the
hardware has a faster lower precision."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.analysis.efficiency import host_facts, matrix_columns, threads_oversubscribed
from perftune.engine.attribution import model_call_location
from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace import device_specs
from perftune.trace import groups as G
from perftune.trace.sync_metrics import user_frame_row

CPU_AMX = "amx_bf16"
CPU_AVX512_BF16 = "avx512_bf16"


class NoReducedPrecision(Rule):
    """PFT507 no-reduced-precision: a compute-bound step doing its matrix math in fp32.

    ## What it detects
    A compute-bound step (analysis/efficiency.py: the model's forward, backward and optimizer
    fill the step and convolutions / matmuls take at least 30 % of it) whose matrix operators
    all run in fp32 — no autocast, no bf16/fp16 model — on hardware with a faster precision:

    - CPU (traces recorded by `perftune profile`, which records the CPU's flags): a CPU with
      AMX-BF16 tiles or AVX-512 BF16 instructions. Without them bf16 is emulated and slower,
      and the rule says nothing; on foreign CPU traces the flags are unknown and it says nothing.
      Nor when the process's threads competed with other processes for the cores during the
      profiled window (they waited for a core over 15 % of the time they were runnable, or the
      load average at the window's start or end, less its threads, was above its usable
      cores): the matrix ops' times are then threads waiting, and the step only looks
      compute-bound.
    - GPU: fp32 matrix work that already runs on TF32 tensor cores (bf16 autocast halves the
      bytes and doubles the tensor-core rate again). fp32 matrix kernels on the vector units
      are PFT501's finding; the two share one saving (one cause: fp32 matrix math).

    ## Why is it slow?
    bf16 matrix math runs on wider units: AMX tiles do 16× the multiply-adds per cycle of
    AVX-512 fp32 FMAs, AVX-512 BF16 twice; an A100 does 312 TFLOP/s in bf16, 156 in TF32.
    Activations also take half the memory and bandwidth.

    ## Example
    ```python
    loss = loss_fn(model(x), y)   # fp32 convolutions and matmuls
    ```

    ## Use instead
    ```python
    with torch.autocast("cpu", dtype=torch.bfloat16):    # "cuda" on a GPU
        loss = loss_fn(model(x), y)
    ```
    or let the tuner measure it: `perftune tune --knob precision=fp32,bf16 train.py`
    (`--from-findings RUN_DIR` takes the knob from this finding).

    ## Evidence
    Device, fp32 (and TF32) matrix time per step and its share of the step, the CPU flags or GPU
    peaks behind the estimate, the assumed speedup and its basis.

    ## Options
    `min_share` (0.2): fp32 matrix share of the step to report. `cpu_amx_speedup` (2.0),
    `cpu_avx512_bf16_speedup` (1.3), `gpu_max_speedup` (1.6): the speedup of the fp32 matrix
    time assumed for the estimate — conservative against the peak ratios (16×, 2×, 2×), which
    real training steps do not reach (conversions, non-matrix ops, fp32 master weights).

    ## Known problems
    The estimate covers the matrix operators only; elementwise ops may speed up too (less
    memory traffic) or slow down (casts). Accuracy is the tuner's accuracy guard's to check.
    """

    code: ClassVar[str] = "PFT507"
    name: ClassVar[str] = "no-reduced-precision"
    severity: ClassVar[Severity] = Severity.INFO  # an opportunity (numerics/layout change), not a defect
    options: ClassVar[dict[str, Any]] = {"min_share": 0.2, "cpu_amx_speedup": 2.0,
                                         "cpu_avx512_bf16_speedup": 1.3, "gpu_max_speedup": 1.6}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        sc = ctx.step_compute
        if not sc.compute_bound or sc.low_precision_matrix_ms > 0.1 * sc.matrix_ms:
            return
        gpu = trace.has_device_activity
        evidence: dict[str, Any] = {"step_ms": round(sc.step_ms, 3),
                                    "matrix_ms_per_step": round(sc.matrix_ms, 3)}
        if gpu:
            props = trace.device_properties[0] if trace.device_properties else None
            if props is None or not device_specs.has_tensor_cores(props):
                return
            spec = device_specs.lookup(props)
            fp32_ms, dtype = sc.tf32_matrix_ms, "tf32"
            target = "bf16" if device_specs.supports_tf32(props) else "fp16"
            speedup = float(self.config["gpu_max_speedup"])
            if spec is not None and spec.tf32_flops:
                low = spec.flops_for(target)
                speedup = min(speedup, low / spec.tf32_flops)
                evidence["peak_tf32_tflops"] = round(spec.tf32_flops / 1e12, 1)
                evidence[f"peak_{target}_tflops"] = round(low / 1e12, 1)
            evidence.update(device=props.get("name"), tf32_matrix_ms_per_step=round(fp32_ms, 3))
            basis = (f"{target} tensor-core peak over TF32's, capped at {self.config['gpu_max_speedup']}x")
            knobs: dict[str, list[Any]] = {"precision": ["tf32", target]}
            where = "cuda"
        else:
            host = host_facts(trace)
            if threads_oversubscribed(host):
                return  # op times of oversubscribed threads say nothing about the arithmetic
            flags = set(host.get("cpu_flags") or []) if host else set()
            if CPU_AMX in flags:
                speedup, basis = float(self.config["cpu_amx_speedup"]), \
                    "AMX-BF16 tiles (oneDNN bf16 convolutions and matmuls); assumed, not the 16x peak ratio"
            elif CPU_AVX512_BF16 in flags:
                speedup, basis = float(self.config["cpu_avx512_bf16_speedup"]), \
                    "AVX-512 BF16 dot products (2x fp32 FMA peak); assumed"
            else:
                return
            fp32_ms, dtype, target = sc.fp32_matrix_ms, "fp32", "bf16"
            evidence.update(device="cpu", cpu_flags=sorted(flags),
                            fp32_matrix_ms_per_step=round(fp32_ms, 3))
            knobs = {"precision": ["fp32", "bf16"]}
            where = "cpu"
        share = fp32_ms / sc.step_ms if sc.step_ms > 0 else 0.0
        if share < float(self.config["min_share"]) or speedup <= 1.0:
            return
        saving = fp32_ms * (1.0 - 1.0 / speedup)
        evidence.update(share_of_step=round(share, 4), assumed_speedup=round(speedup, 3),
                        estimate_basis=basis, saving_pool="precision")
        row = _costliest_forward_op(ctx, dtype)
        # The model's call in the training loop (where autocast goes), else the op's frame.
        location = None if row is None else (
            model_call_location(ctx.trace, ctx.source, ctx.host, row)
            or ctx.location_of(user_frame_row(ctx.host, row)))
        after = (f"with torch.autocast(\"{where}\", dtype=torch.{'bfloat16' if target == 'bf16' else 'float16'}):\n"
                 "    loss = loss_fn(model(x), y)")
        what = "fp32" if dtype == "fp32" else "fp32 (TF32 tensor cores)"
        yield self.finding(
            f"The step is compute-bound and its matrix math runs in {what}: {fp32_ms:.1f} ms per "
            f"step ({share:.0%} of the step) that {target} autocast could run about "
            f"{speedup:.1f}x faster on this {'GPU' if gpu else 'CPU'} ({basis})",
            location=location, evidence=evidence, est_saving_ms_per_step=round(saving, 4),
            op_chain=tuple(ctx.trace.op_chain(row)) if row is not None else (),
            suggestion=Suggestion(
                title=f"Run the model under torch.autocast(\"{where}\", dtype={target}) "
                      f"(perftune tune --knob precision={','.join(knobs['precision'])})",
                after=after, knobs=knobs))


def _costliest_forward_op(ctx: Context, dtype: str) -> int | None:
    """The row of the forward matrix op (not a backward node) with the most arithmetic, whose
    user line the finding points at. Arithmetic (FLOPs from the shapes), not time: with two
    models of like size (a GAN's generator and discriminator) the longest single call is a
    matter of the machine's load, the FLOPs are not. Among calls of equal arithmetic (the same
    model called on real and generated batches) the first one in the trace; time decides only
    where no FLOPs were computed."""
    points = matrix_columns(ctx.trace, ctx.tables)
    if not len(points["row"]):
        return None
    dtypes = np.asarray(["" if d is None else d for d in points["dtype"].tolist()], dtype=object)
    idx = np.flatnonzero(dtypes == dtype)
    names = points["name"]
    forward = idx[[("backward" not in str(names[k]).lower()) for k in idx.tolist()]] \
        if len(idx) else idx
    use = forward if len(forward) else idx
    if not len(use):
        return None
    flops = np.nan_to_num(points["flops"][use].astype(np.float64), nan=0.0)
    dur = points["dur_us"][use].astype(np.float64)
    rows = points["row"][use].astype(np.int64)
    # pandas' groupby("name").sum().sort_values(["_flops", "dur_us"], ascending=False): sums
    # bit for bit (perftune.trace.groups), ties in name order (a stable sort)
    codes, keys = G.group_codes([names[use]], sort=True)
    f_sum = G.group_sum(codes, flops, len(keys))
    d_sum = G.group_sum(codes, dur, len(keys))
    best = min(range(len(keys)), key=lambda g: (-f_sum[g], -d_sum[g]))  # first among ties
    top = np.flatnonzero(codes == best)
    key = flops if float(flops[top].max()) > 0.0 else dur
    pick = min(top.tolist(), key=lambda k: (-key[k], rows[k]))
    return int(rows[pick])
