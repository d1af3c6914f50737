"""PFT505 cudnn-benchmark-off: static-shape convolutions without cuDNN autotuning."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace.device_metrics import step_count
from perftune.trace.kernel_metrics import kernel_columns, user_op_of_kernel
from perftune.trace.model import NO_ID
from perftune.trace.sync_metrics import user_frame_row

_CONV_OPS = frozenset({"aten::cudnn_convolution", "aten::miopen_convolution",
                       "aten::cudnn_convolution_relu", "aten::cudnn_convolution_add_relu",
                       "aten::convolution_backward", "aten::cudnn_convolution_transpose"})


class CudnnBenchmarkOff(Rule):
    """PFT505 cudnn-benchmark-off: static-shape convolutions without cuDNN autotuning.

    ## What it detects
    A convolutional network on a GPU whose convolutions run with the same shapes every step
    while cuDNN shows no sign of autotuning: the same conv calls (and conv kernels) repeat
    step after step, and no convolution call ever tries several algorithms
    (`torch.backends.cudnn.benchmark = True` benchmarks each new shape once, launching many
    candidate kernels for it).

    ## Why is it slow?
    Without benchmarking cuDNN picks an algorithm from heuristics; for many layer shapes a
    benchmarked choice is 10–30% faster (winograd, FFT or implicit-GEMM variants). With static
    shapes the one-off benchmark cost is repaid within a few steps.

    ## Example
    ```python
    model = torchvision.models.resnet50().cuda()
    for x, y in loader:                          # fixed 224×224 crops
        loss = F.cross_entropy(model(x), y)
    ```

    ## Use instead
    ```python
    torch.backends.cudnn.benchmark = True        # static shapes: autotune each conv once
    ```

    ## Evidence
    Convolution calls and conv-kernel time per step, distinct conv shapes, whether every step
    ran the same conv shapes, the largest number of conv kernels any single conv call launched.

    ## Options
    `min_convs_per_step` (4), `min_share` (0.1): convolution kernels' share of kernel time.
    `assumed_gain` (0.1): the share of conv time assumed saved, for ranking.

    ## Known problems
    A trace window recorded after warm-up cannot see the benchmark itself; the rule infers its
    absence from the kernels chosen, so treat it as a hint (preview).
    """

    code: ClassVar[str] = "PFT505"
    name: ClassVar[str] = "cudnn-benchmark-off"
    severity: ClassVar[Severity] = Severity.INFO
    status: ClassVar[str] = "preview"
    options: ClassVar[dict[str, Any]] = {"min_convs_per_step": 4, "min_share": 0.1, "assumed_gain": 0.1}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        if not trace.has_device_activity or len(trace.steps) < 2:
            return
        table = ctx.fact(kernel_columns)
        if not len(table["row"]):
            return
        from perftune.trace.kernel_metrics import is_conv_kernel

        flags = {n: is_conv_kernel(n) for n in set(table["name"].tolist())}
        is_conv = np.fromiter((flags[n] for n in table["name"].tolist()), dtype=bool,
                              count=len(table["name"]))
        conv_rows, conv_dur = table["row"][is_conv], table["dur"][is_conv]
        if not len(conv_rows):
            return
        total = float(np.nansum(table["dur"]))
        share = float(np.nansum(conv_dur)) / total if total > 0 else 0.0
        if share < self.config["min_share"]:
            return
        ops = np.flatnonzero(trace.name_isin(_CONV_OPS) & ~trace.is_device)
        steps_of_ops = trace.step_of(trace.col("ts")[ops], trace.col("rank")[ops])
        per_step: dict[int, Counter[str]] = {}
        for row, k in zip(ops.tolist(), steps_of_ops.tolist(), strict=True):
            if k == NO_ID:
                continue
            dims = trace.input_dims(row)
            key = f"{trace.name_of(row)}{dims}" if dims else trace.name_of(row)
            per_step.setdefault(k, Counter())[key] += 1
        n = max(1, step_count(trace))
        calls = sum(sum(c.values()) for c in per_step.values()) / n
        if calls < self.config["min_convs_per_step"]:
            return
        signatures = [frozenset(c.items()) for _, c in sorted(per_step.items())]
        static = len(set(signatures)) == 1 if signatures else False
        if not static:
            return
        # Benchmarking launches several conv kernels for one conv call.
        launches_per_op: Counter[int] = Counter()
        for row in conv_rows.tolist():
            op = user_op_of_kernel(trace, int(row), ctx.tables)
            if op is not None:
                launches_per_op[op] += 1
        most = max(launches_per_op.values(), default=0)
        if most >= 8:
            return
        conv_ms = float(np.nansum(conv_dur)) / 1000.0 / n
        first_op = int(ops[0]) if len(ops) else None
        location = ctx.location_of(user_frame_row(ctx.host, first_op)) if first_op is not None else None
        shapes = len({k for c in per_step.values() for k in c})
        has_shapes = any("[" in k for c in per_step.values() for k in c)
        evidence: dict[str, Any] = {
            "conv_calls_per_step": round(calls, 1), "distinct_conv_shapes": shapes,
            "static_shapes": static, "conv_kernel_ms_per_step": round(conv_ms, 3),
            "share_of_kernel_time": round(share, 4), "max_conv_kernels_per_call": most,
            "steps": n, "shapes_recorded": has_shapes,
        }
        what = (f"repeat the same {shapes} shapes every step" if has_shapes
                else "repeat identically every step (no shapes recorded)")
        message = (f"{calls:.0f} convolution calls per step {what} "
                   f"({conv_ms:.2f} ms, {share:.0%} of kernel time) with no sign of cuDNN "
                   f"autotuning: torch.backends.cudnn.benchmark looks off")
        yield self.finding(
            message, location=location, evidence=evidence,
            est_saving_ms_per_step=conv_ms * self.config["assumed_gain"],
            count=sum(sum(c.values()) for c in per_step.values()),
            suggestion=Suggestion(title="Set torch.backends.cudnn.benchmark = True (shapes are static)",
                                  after="torch.backends.cudnn.benchmark = True",
                                  knobs={"cudnn_benchmark": [False, True]}))


