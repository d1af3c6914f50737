"""PFT508 conv-not-channels-last: a convolution-heavy, compute-bound step running its 2-D
convolutions in the NCHW memory format."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.analysis.efficiency import host_facts, matrix_columns, threads_oversubscribed
from perftune.engine.attribution import model_call_location
from perftune.engine.context import Context
from perftune.engine.rewrite import suggestion
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity
from perftune.trace.roofline import uses_tensor_cores
from perftune.trace.sync_metrics import user_frame_row


def _layout(dims: Any, strides: Any) -> str:
    """'nchw', 'nhwc' or 'unknown' from a 4-D input's sizes and strides."""
    if not (isinstance(dims, list) and len(dims) == 4 and isinstance(strides, list) and len(strides) == 4):
        return "unknown"
    _, c, h, w = dims
    if strides == [c * h * w, h * w, w, 1]:
        return "nchw" if c > 1 and h * w > 1 else "unknown"
    if strides == [h * w * c, 1, w * c, c]:
        return "nhwc"
    return "unknown"


class ConvNotChannelsLast(Rule):
    """PFT508 conv-not-channels-last: 2-D convolutions in NCHW on a convolution-heavy step.

    ## What it detects
    A compute-bound step (analysis/efficiency.py) where 2-D convolutions (forward and backward)
    take at least 25 % of the step and their inputs are NCHW-contiguous (the recorded strides;
    traces without strides are not judged). On a GPU only when the convolutions run on tensor
    cores (TF32, bf16, fp16): there cuDNN's kernels are NHWC-native and NCHW costs a transpose
    around each; fp32 convolutions on the vector units gain little. On a CPU when oneDNN
    (mkldnn) runs them (x86 builds of torch): its blocked/NHWC kernels avoid reordering NCHW
    tensors at every convolution.

    ## Why is it slow?
    Tensor cores and oneDNN's vectorised kernels read the channels of one pixel together. An
    NCHW tensor has them a plane apart, so each convolution first converts its input (and the
    backward its gradients) to the layout the kernel wants, then converts back.

    ## Example
    ```python
    model = Net()
    loss = F.cross_entropy(model(x), y)
    ```

    ## Use instead
    ```python
    model = Net().to(memory_format=torch.channels_last)
    loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
    ```

    ## Evidence
    Convolution time per step and its share of the step, the convolution calls seen in NCHW,
    the device, the assumed speedup and its basis.

    ## Options
    `min_share` (0.25): convolution share of the step to report; `cpu_speedup` (1.15),
    `gpu_speedup` (1.25): the speedup of the convolution time assumed for the estimate
    (published channels_last gains: 1.1-1.4x on oneDNN CPUs, 1.2-1.5x with tensor cores).

    ## Known problems
    Convolutions followed by ops without channels_last kernels convert back and forth; the
    tuner or `perftune gate` measures the real change. On a CPU whose cores other processes
    kept busy while the profiled window ran (its threads waited for a core over 15 % of the
    time they were runnable, or the load average at the window's start or end, less the
    process's threads, was above its usable cores) the rule says nothing: the convolutions'
    times are then threads waiting.
    """

    code: ClassVar[str] = "PFT508"
    name: ClassVar[str] = "conv-not-channels-last"
    severity: ClassVar[Severity] = Severity.INFO  # an opportunity (numerics/layout change), not a defect
    options: ClassVar[dict[str, Any]] = {"min_share": 0.25, "cpu_speedup": 1.15, "gpu_speedup": 1.25}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        sc = ctx.step_compute
        if not sc.compute_bound or sc.step_ms <= 0:
            return
        share = sc.conv_ms / sc.step_ms
        if share < float(self.config["min_share"]):
            return
        points = matrix_columns(trace, ctx.tables)
        conv_idx = np.flatnonzero(points["kind"] == "conv") if len(points["row"]) else \
            np.empty(0, dtype=np.int64)
        conv_idx = conv_idx[[("backward" not in str(points["name"][k])) for k in conv_idx.tolist()]] \
            if len(conv_idx) else conv_idx
        layouts: dict[str, list[int]] = {"nchw": [], "nhwc": [], "unknown": []}
        for row in points["row"][conv_idx].tolist():
            dims, strides = trace.input_dims(int(row)), trace.input_strides(int(row))
            layout = _layout(dims[0] if dims else None, strides[0] if strides else None)
            layouts[layout].append(int(row))
        if not layouts["nchw"] or len(layouts["nhwc"]) >= len(layouts["nchw"]):
            return
        gpu = trace.has_device_activity
        evidence: dict[str, Any] = {
            "conv_ms_per_step": round(sc.conv_ms, 3), "share_of_step": round(share, 4),
            "nchw_calls": len(layouts["nchw"]), "channels_last_calls": len(layouts["nhwc"])}
        if gpu:
            kernels = [k for k in _kernel_names(ctx, layouts["nchw"])]
            if not kernels or not any(uses_tensor_cores(k) for k in kernels):
                return
            speedup, basis = float(self.config["gpu_speedup"]), \
                "tensor-core convolutions are NHWC-native in cuDNN; assumed"
            evidence["device"] = (trace.device_properties[0] or {}).get("name") if trace.device_properties else None
        else:
            host = host_facts(trace)
            if host is not None and host.get("mkldnn") is False:
                return
            if threads_oversubscribed(host):
                return  # convolution times of oversubscribed threads: not the arithmetic
            speedup, basis = float(self.config["cpu_speedup"]), \
                "oneDNN (mkldnn) convolutions skip the NCHW reorders; assumed"
            evidence["device"] = "cpu"
        saving = sc.conv_ms * (1.0 - 1.0 / speedup)
        evidence.update(assumed_speedup=speedup, estimate_basis=basis)
        # The convolution with the most arithmetic (FLOPs are the shapes'; which single call
        # took longest is a matter of the machine's load); among equal ones the first in the
        # trace; time only where no FLOPs were computed.
        nchw = conv_idx[np.isin(points["row"][conv_idx], layouts["nchw"])]
        flops = np.nan_to_num(points["flops"][nchw].astype(np.float64), nan=0.0)
        key = flops if float(flops.max()) > 0.0 else points["dur_us"][nchw].astype(np.float64)
        nchw_rows = points["row"][nchw].astype(np.int64)
        row = int(nchw_rows[min(range(len(nchw)), key=lambda k: (-key[k], nchw_rows[k]))])
        # The model's call (its input and, through the name, its construction are what change).
        location = (model_call_location(trace, ctx.source, ctx.host, row)
                    or ctx.location_of(user_frame_row(ctx.host, row)))
        yield self.finding(
            f"Convolutions take {sc.conv_ms:.1f} ms per step ({share:.0%} of a compute-bound step) "
            f"in the NCHW layout; channels_last runs them about {speedup:.2f}x faster on "
            f"{'tensor cores' if gpu else 'oneDNN'}",
            location=location, evidence=evidence, est_saving_ms_per_step=round(saving, 4),
            count=len(layouts["nchw"]), op_chain=tuple(trace.op_chain(row)),
            suggestion=suggestion(
                self.code, "Use channels_last: model.to(memory_format=torch.channels_last) and "
                           "x.contiguous(memory_format=torch.channels_last)",
                location, ctx.source.resolve(location.file) if location.file else None,
                after="model = model.to(memory_format=torch.channels_last)\n"
                      "out = model(x.contiguous(memory_format=torch.channels_last))"))


def _kernel_names(ctx: Context, rows: list[int]) -> list[str]:
    from perftune.trace.kernel_metrics import kernel_columns

    table = ctx.fact(kernel_columns)
    if not len(table["row"]):
        return []
    wanted = set(rows)
    out = []
    trace = ctx.trace
    for kernel_row, name in zip(table["row"].tolist(), table["name"].tolist(), strict=True):
        op = next((a for a in trace.ancestors(int(kernel_row)) if a in wanted), None)
        if op is not None:
            out.append(str(name))
    return out
