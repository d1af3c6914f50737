"""PFT501 fp32-no-tensor-cores: matrix math in plain FP32 on a GPU that has tensor cores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace import device_specs
from perftune.trace.device_metrics import step_count
from perftune.trace.kernel_metrics import kernel_columns, matrix_kernel_use, user_op_of_kernel
from perftune.trace.sync_metrics import user_frame_row


class Fp32NoTensorCores(Rule):
    """PFT501 fp32-no-tensor-cores: matrix math in plain FP32 on a GPU that has tensor cores.

    ## What it detects
    GEMM and convolution kernels running in plain FP32 on the vector units — cuBLAS `sgemm`,
    cuDNN `scudnn`, `implicit_convolve_sgemm`, winograd and similar kernels without a
    tensor-core marker (`h884`, `s1688`, `tf32`, `xmma`, `wgmma`, `hmma`, `cutlass_80_tensorop`,
    `bf16` …) — on a GPU with tensor cores (NVIDIA compute capability 7.0 or later).

    ## Why is it slow?
    Tensor cores run matrix math 8–16× faster than the FP32 vector units (an A100: 19.5 TFLOP/s
    FP32, 156 TF32, 312 BF16). FP32 matmuls stay on the vector units unless TF32 is allowed
    (off by default for matmuls since PyTorch 1.12) or the model runs under autocast.

    ## Example
    ```python
    logits = model(x)      # fp32 weights and activations: sgemm / scudnn kernels
    ```

    ## Use instead
    ```python
    torch.set_float32_matmul_precision("high")   # TF32 on Ampere and later
    torch.backends.cudnn.allow_tf32 = True
    with torch.autocast("cuda", dtype=torch.bfloat16):   # fp16 + GradScaler on Volta/Turing
        logits = model(x)
    ```

    ## Evidence
    Device and compute capability, FP32 matrix-kernel time per step and its share of kernel
    time, matrix time already on tensor cores, the top FP32 kernels, peak FP32 vs tensor FLOP/s.

    ## Options
    `min_ms_per_step` (0.5) and `min_share` (0.1): FP32 matrix time per step and share of all
    kernel time to report. `max_speedup` (3.0): the speedup assumed for the estimate (the peak
    ratio is an upper bound real models do not reach).

    ## Known problems
    Kernels launched by fp16/bf16 ops are not counted, but without `record_shapes` every
    non-tensor-core matrix kernel counts as FP32.
    """

    code: ClassVar[str] = "PFT501"
    name: ClassVar[str] = "fp32-no-tensor-cores"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"min_ms_per_step": 0.5, "min_share": 0.1, "max_speedup": 3.0}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        if not trace.has_device_activity or not trace.device_properties:
            return
        props = trace.device_properties[0]
        if not device_specs.has_tensor_cores(props):
            return
        use = ctx.fact(matrix_kernel_use)
        if use.fp32_simt_us <= 0:
            return
        steps = max(1, step_count(trace) if trace.steps else 1)
        table = ctx.fact(kernel_columns)
        kernel_us = float(np.nansum(table["dur"]))
        fp32_ms = use.fp32_simt_us / 1000.0 / steps
        share = use.fp32_simt_us / kernel_us if kernel_us > 0 else 0.0
        if fp32_ms < self.config["min_ms_per_step"] or share < self.config["min_share"]:
            return
        spec = device_specs.lookup(props)
        cc = device_specs.compute_capability(props)
        ampere = device_specs.supports_tf32(props)
        target = "tf32" if ampere else ("fp16" if not device_specs.is_amd(props) else "bf16")
        speedup = self.config["max_speedup"]
        evidence: dict[str, Any] = {
            "device": props.get("name"), "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
            "fp32_matrix_ms_per_step": round(fp32_ms, 3), "share_of_kernel_time": round(share, 4),
            "tensor_core_matrix_ms_per_step": round(use.tensor_core_us / 1000.0 / steps, 3),
            "top_fp32_kernels": [{"kernel": n[:160], "ms_per_step": round(us / 1000.0 / steps, 3),
                                  "calls_per_step": round(c / steps, 1)} for n, us, c in use.top_simt[:5]],
        }
        if spec is not None:
            tensor = spec.flops_for(target)
            evidence["peak_fp32_tflops"] = round(spec.fp32_flops / 1e12, 1)
            evidence[f"peak_{target}_tflops"] = round(tensor / 1e12, 1)
            speedup = min(speedup, tensor / spec.fp32_flops)
        evidence["assumed_speedup"] = round(speedup, 2)
        saving = fp32_ms * (1.0 - 1.0 / speedup) if speedup > 1 else 0.0
        top_row = int(use.simt_rows[0]) if len(use.simt_rows) else None
        if top_row is not None and use.top_simt:
            # anchor on the costliest kernel's launching op
            names = dict(zip(table["row"].tolist(), table["name"].tolist(), strict=True))
            best = [int(r) for r in use.simt_rows.tolist() if names.get(int(r)) == use.top_simt[0][0]]
            top_row = best[0] if best else top_row
        op = user_op_of_kernel(trace, top_row, ctx.tables) if top_row is not None else None
        location = ctx.location_of(user_frame_row(ctx.host, op)) if op is not None else None
        if ampere:
            title = ("Use tensor cores: torch.set_float32_matmul_precision(\"high\") (TF32) and "
                     "cudnn.allow_tf32, or bf16 autocast")
            after = ("torch.set_float32_matmul_precision(\"high\")\n"
                     "torch.backends.cudnn.allow_tf32 = True\n"
                     "with torch.autocast(\"cuda\", dtype=torch.bfloat16):\n"
                     "    loss = model(x)")
            knobs: dict[str, list[Any]] = {"precision": ["tf32", "bf16"]}
        else:
            title = "Use tensor cores: fp16 autocast with a GradScaler (this GPU has no TF32/bf16)"
            after = ("scaler = torch.cuda.amp.GradScaler()\n"
                     "with torch.autocast(\"cuda\", dtype=torch.float16):\n"
                     "    loss = model(x)\n"
                     "scaler.scale(loss).backward()")
            knobs = {"precision": ["fp16"]}
        message = (f"{fp32_ms:.2f} ms per step ({share:.0%} of kernel time) goes to FP32 matrix "
                   f"kernels that do not use the tensor cores of this {props.get('name')} "
                   f"(compute capability {evidence['compute_capability']})")
        yield self.finding(
            message, location=location, evidence=evidence, est_saving_ms_per_step=saving,
            count=len(use.simt_rows), op_chain=tuple(trace.op_chain(op)) if op is not None else (),
            suggestion=Suggestion(title=title, after=after, knobs=knobs))
