"""PFT302 launch-bound-tiny-kernels: kernels that finish before the next one can be launched."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace.device_metrics import (
    batch_size_values,
    guess_batch_size,
    op_ancestry,
    step_count,
)
from perftune.trace.groups import median, unique_codes
from perftune.trace.idle_metrics import tiny_kernels
from perftune.trace.model import NO_ID
from perftune.trace.sync_metrics import user_frame_row


class LaunchBoundTinyKernels(Rule):
    """PFT302 launch-bound-tiny-kernels: kernels that finish before the next one can be launched.

    ## What it detects
    Steps made of many kernels that run for less time than the host needs to launch them:
    each kernel is shorter than its own `cudaLaunchKernel` call, so the GPU finishes it and
    then waits for the next launch.

    ## Why is it slow?
    A kernel launch costs the host about 3–10 µs (more with the profiler on). A kernel that
    computes for 2 µs leaves the GPU idle for the rest: the step runs at the host's launch rate,
    not the GPU's speed. Small tensors, per-parameter loops and unfused elementwise chains all
    produce such kernels.

    ## Example
    ```python
    for p in model.parameters():          # one tiny kernel per parameter and op
        p.data.add_(p.grad, alpha=-lr)
    h = torch.relu(x * w + b)             # three tiny kernels on a small tensor
    ```

    ## Use instead
    ```python
    torch._foreach_add_(params, grads, alpha=-lr)          # one launch for all parameters
    model = torch.compile(model, mode="reduce-overhead")   # fusion + CUDA graphs
    ```
    A larger batch makes each kernel longer for the same launch cost.

    ## Evidence
    Tiny kernels per step and their share of all kernels, the median kernel and launch
    durations, the device time spent waiting for launches, and the ops and kernels issuing most
    of them.

    ## Options
    `min_tiny_per_step` (50), `min_tiny_share` (0.3): how many of the step's kernels must be
    tiny. `min_wait_ms` (0.05) and `min_wait_share` (0.02): the launch wait per step worth
    reporting, in milliseconds and as a share of the step.
    """

    code: ClassVar[str] = "PFT302"
    name: ClassVar[str] = "launch-bound-tiny-kernels"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"min_tiny_per_step": 50, "min_tiny_share": 0.3,
                                         "min_wait_ms": 0.05, "min_wait_share": 0.02}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        if not trace.has_device_activity:
            return
        tk = ctx.fact(tiny_kernels)
        steps = max(1, len({(trace.steps[s].rank, trace.steps[s].index) for s in tk.steps.tolist()}))
        steps = max(steps, step_count(trace))
        n = len(tk.rows)
        if n == 0 or tk.kernel_count == 0:
            return
        per_step = n / steps
        share = n / tk.kernel_count
        wait_ms = float(tk.wait_us.sum()) / 1000.0 / steps
        step_ms = float(np.mean([s.dur for s in trace.steps])) / 1000.0 if trace.steps else 0.0
        if (per_step < self.config["min_tiny_per_step"] or share < self.config["min_tiny_share"]
                or wait_ms < self.config["min_wait_ms"]
                or (step_ms > 0 and wait_ms / step_ms < self.config["min_wait_share"])):
            return
        # Which user-level op issues them: group by the outermost op above each launch.
        # The innermost op above each launch, then the outermost op above that (NO_ID: none),
        # over whole columns; names through the interned strings.
        inner_above, outer = ctx.fact(op_ancestry)
        launch = trace.launch_of_device_event[tk.rows]
        inner = np.where(launch != NO_ID, inner_above[np.maximum(launch, 0)], NO_ID)
        tops = np.where(inner != NO_ID, outer[np.maximum(inner, 0)], NO_ID)
        strings, codes = trace._interned("name")
        # Per op name (first seen first): kernels and their waits, added in row order
        # (bincount adds in index order, as a running sum does).
        top_code = np.where(tops != NO_ID, codes[np.maximum(tops, 0)], -1)
        op_codes, first, inverse = unique_codes(top_code, return_index=True)
        counts = np.bincount(inverse, minlength=len(op_codes)).astype(np.float64)
        waits = np.bincount(inverse, weights=tk.wait_us, minlength=len(op_codes))
        by_op: dict[str, list[float]] = {}
        op_row: dict[str, int] = {}
        for g in np.argsort(first, kind="stable").tolist():
            code = int(op_codes[g])
            op = strings[code] if code != -1 else "(no op)"
            by_op[op] = [float(counts[g]), float(waits[g])]
            if code != -1:
                op_row[op] = int(tops[first[g]])
        kernel_codes, kernel_counts = np.unique(codes[tk.rows], return_counts=True)
        names = {strings[c]: n for c, n in zip(kernel_codes.tolist(), kernel_counts.tolist(),
                                                strict=True)}
        ranked = sorted(by_op.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))
        top_op = ranked[0][0]
        location = ctx.location_of(user_frame_row(ctx.host, op_row[top_op])) if top_op in op_row else None
        evidence: dict[str, Any] = {
            "steps": steps, "tiny_kernels_per_step": round(per_step, 2),
            "kernels_per_step": round(tk.kernel_count / steps, 2), "tiny_share": round(share, 4),
            "median_kernel_us": round(float(median(tk.dur_us)), 3),
            "median_launch_us": round(float(median(tk.launch_us)), 3),
            "launch_wait_ms_per_step": round(wait_ms, 4), "step_ms": round(step_ms, 3),
            "top_ops": [{"op": op, "tiny_kernels_per_step": round(v[0] / steps, 2),
                         "launch_wait_ms_per_step": round(v[1] / 1000.0 / steps, 4)}
                        for op, v in ranked[:6]],
            "top_kernels": [{"kernel": k[:160], "count": c}
                            for k, c in sorted(names.items(), key=lambda kv: (-kv[1], kv[0]))[:5]],
        }
        message = (f"{per_step:.0f} kernels per step ({share:.0%} of all) run shorter than their "
                   f"launch (median {evidence['median_kernel_us']:.1f} µs vs "
                   f"{evidence['median_launch_us']:.1f} µs); the GPU waits {wait_ms:.2f} ms per "
                   f"step for launches, most under {top_op}")
        knobs: dict[str, list[Any]] = {}
        batch = batch_size_values(guess_batch_size(trace), "up")
        if batch:
            knobs["batch_size"] = batch
        yield self.finding(
            message, location=location, evidence=evidence, est_saving_ms_per_step=wait_ms,
            op_chain=(top_op,) if top_op != "(no op)" else (), count=n,
            suggestion=Suggestion(
                title="Launch fewer, larger kernels: torch.compile(mode=\"reduce-overhead\") or "
                      "CUDA graphs, foreach/fused ops, a larger batch",
                after='model = torch.compile(model, mode="reduce-overhead")', knobs=knobs))
