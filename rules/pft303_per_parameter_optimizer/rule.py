"""PFT303 per-parameter-optimizer: the optimizer updates one parameter tensor at a time."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.analysis.phases import optimizer_ms_per_step, phase_table
from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace import categories as C
from perftune.trace.device_metrics import inclusive_device_us, kernels_under
from perftune.trace.groups import median
from perftune.trace.model import NO_ID, has_ancestor
from perftune.trace.roofline import op_kind
from perftune.trace.sync_metrics import user_frame_row

_MULTI_TENSOR = ("aten::_foreach_", "aten::_fused_")
# Optimizers with a fused implementation (CUDA; CPU for Adam, AdamW, SGD and Adagrad since 2.4).
_FUSED = frozenset({"Adam", "AdamW", "SGD", "Adagrad"})
# torch.optim's optimizers that take `foreach=` (and pick it by default when every parameter is
# on a CUDA device). Advice naming torch.optim.X is only given for these: there is no
# torch.optim.FusedAdam.
_TORCH_FOREACH = frozenset({"Adam", "AdamW", "SGD", "Adagrad", "Adadelta", "Adamax", "ASGD",
                            "NAdam", "RAdam", "RMSprop", "Rprop", "Adafactor"})
# torch.optim's optimizers with no multi-tensor implementation to switch to. L-BFGS also runs
# the closure (forward and backward) inside its step: those ops are the model's, not updates.
_TORCH_NO_MULTI_TENSOR = frozenset({"LBFGS", "SparseAdam"})
# Kernels of multi-tensor implementations outside torch.optim (apex / DeepSpeed / TE FusedAdam,
# FusedLAMB, ...): one launch updates many parameters.
_MULTI_TENSOR_KERNEL = re.compile(r"multi_tensor|MultiTensor|fused_adam|FusedAdam|fused_lamb", re.IGNORECASE)


class PerParameterOptimizer(Rule):
    """PFT303 per-parameter-optimizer: the optimizer updates one parameter tensor at a time.

    ## What it detects
    An optimizer step that runs its update as separate small ops for every parameter tensor —
    hundreds of `aten::add_` / `aten::mul_` / `aten::addcdiv_` calls (and on a GPU as many tiny
    kernels) under `Optimizer.step#...` — instead of the multi-tensor (`foreach`) or `fused`
    implementations.

    ## Why is it slow?
    Every op pays the Python → dispatcher → kernel-launch overhead (5–20 µs) while moving only
    one parameter's worth of data. With N parameters and k ops per update that is N·k launches
    per step; `foreach=True` turns them into k launches over lists of tensors, `fused=True`
    into one kernel.

    ## Example
    ```python
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=False)
    ```

    ## Use instead
    ```python
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)   # or foreach=True
    ```
    PyTorch picks `foreach` by default only when every parameter is on a CUDA device; pass it
    explicitly elsewhere, and check custom optimizers that loop over parameters.

    ## Evidence
    Optimizer class, per-parameter ops and kernels per step, the most repeated op (about one per
    parameter), the optimizer's host and device time per step.

    ## Options
    `min_ops_per_step` (16): per-parameter ops per optimizer step to report.
    `warning_share` (0.01): on a GPU trace, a warning when the estimated saving is at least this
    share of the step, info below. On a CPU-only trace always info (CPU optimizers are mostly
    arithmetic, not launch overhead, and the estimate is within the machine's noise).

    ## Known problems
    Not reported: optimizers that launch multi-tensor kernels (`multi_tensor_apply`, apex /
    DeepSpeed `FusedAdam`), and torch.optim optimizers on a CPU-only trace (on a GPU PyTorch
    picks `foreach` by default, so the CPU run's per-parameter ops say nothing about the script),
    nor torch.optim's `LBFGS` and `SparseAdam`, which have no multi-tensor implementation to
    switch to (and L-BFGS runs the closure's forward and backward inside its step).
    Advice names `torch.optim.X(..., foreach/fused=True)` only for torch.optim's own classes;
    for other optimizers it is generic and says so. The saving is the measured time of the
    per-parameter ops, less the share a multi-tensor call keeps (one call per op kind).
    """

    code: ClassVar[str] = "PFT303"
    name: ClassVar[str] = "per-parameter-optimizer"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"min_ops_per_step": 16, "warning_share": 0.01}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        steps_rows = np.flatnonzero(trace.name_startswith(C.OPTIMIZER_STEP_PREFIX) & ~trace.is_device)
        if len(steps_rows) == 0:
            return
        ops = np.flatnonzero(trace.cat_is(C.CPU_OP))
        ops = ops[np.argsort(trace.col("ts")[ops], kind="stable")]
        op_ts = trace.col("ts")[ops]
        key_cols = (trace.col("rank"), trace.col("pid"), trace.col("tid"))
        by_class: dict[str, list[dict[str, Any]]] = {}
        parent = trace.parent
        dev = ctx.fact(inclusive_device_us)
        kern = ctx.fact(kernels_under)
        ts_a, end_a, dur_a = trace.col("ts"), trace.col("end"), trace.col("dur")
        multi_tensor_op = trace.name_startswith(_MULTI_TENSOR)
        # Per-parameter update kinds, decided once per distinct name (not per op and step).
        update_kind = trace.name_mask(lambda s: op_kind(s) in ("elementwise", "norm", "reduction"))
        row_names = trace.names
        in_step = np.zeros(trace.n, dtype=bool)  # the current step's ops, set and cleared per step
        for row in steps_rows.tolist():
            name = trace.name_of(row)
            cls = name[len(C.OPTIMIZER_STEP_PREFIX):].split(".", 1)[0] or "Optimizer"
            lo, hi = float(ts_a[row]), float(end_a[row])
            a, b = np.searchsorted(op_ts, lo, side="left"), np.searchsorted(op_ts, hi, side="right")
            window = ops[a:b]
            same = end_a[window] <= hi + 0.01
            for col in key_cols:
                same &= col[window] == col[row]
            inside = window[same].tolist()
            if multi_tensor_op[window[same]].any():
                continue  # foreach / fused already
            if cls in _TORCH_NO_MULTI_TENSOR:
                continue  # nothing to switch to (and L-BFGS's step holds the closure's ops)
            if cls.startswith("Fused") or _launches_multi_tensor_kernels(ctx, lo, hi):
                continue  # apex / DeepSpeed style fused optimizers: multi-tensor kernels
            if cls in _TORCH_FOREACH and not trace.has_device_activity:
                # On a CPU run torch.optim runs one tensor at a time by default; on a GPU the
                # same code picks foreach: nothing to change in the script.
                continue
            # Per-parameter update ops: elementwise ops not nested in another op of the step.
            in_step[inside] = True
            updates = window[same][update_kind[window[same]]]
            top = updates[~has_ancestor(parent, updates, in_step)]
            in_step[inside] = False
            if not len(top):
                continue
            names = Counter(row_names[top].tolist())
            durs: list[float] = dur_a[top].tolist()
            by_class.setdefault(cls, []).append({
                "row": row, "ops": len(top), "names": names, "median_op_us": float(median(durs)),
                "ops_us": float(sum(durs)),
                "host_us": hi - lo, "device_us": float(dev[row]), "kernels": int(kern[row])})
        # The optimizer's time per step is the summary's (phases: inside the step window, the
        # profiler's own stop left out); each class gets its share of it.
        raw_total = sum(c["host_us"] for calls in by_class.values() for c in calls)
        summary_ms = optimizer_ms_per_step(ctx.fact(phase_table))
        for cls, calls in sorted(by_class.items()):
            n = len(calls)
            ops_per = sum(c["ops"] for c in calls) / n
            if ops_per < self.config["min_ops_per_step"]:
                continue
            names = sum((c["names"] for c in calls), Counter())
            distinct = len(names)
            median_op = float(median([c["median_op_us"] for c in calls]))
            # foreach runs one call per op kind: of the measured time of the per-parameter ops,
            # the share of the calls that go away (never a count times a typical op time).
            ops_ms = sum(c["ops_us"] for c in calls) / n / 1000.0
            saving_ms = ops_ms * max(0.0, ops_per - distinct) / ops_per if ops_per else 0.0
            host_ms = (summary_ms * sum(c["host_us"] for c in calls) / raw_total if raw_total > 0
                       and trace.steps else sum(c["host_us"] for c in calls) / n / 1000.0)
            saving_ms = round(min(saving_ms, host_ms), 4)
            top_name, top_count = names.most_common(1)[0]
            params = round(top_count / n)
            evidence: dict[str, Any] = {
                "optimizer": cls, "calls": n, "per_parameter_ops_per_step": round(ops_per, 1),
                "estimated_parameters": params, "op_counts_per_step": {k: round(v / n, 1) for k, v in names.most_common(8)},
                "median_op_us": round(median_op, 3), "optimizer_host_ms_per_step": round(host_ms, 3),
            }
            if trace.has_device_activity:
                evidence["kernels_per_step"] = round(sum(c["kernels"] for c in calls) / n, 1)
                evidence["optimizer_device_ms_per_step"] = round(sum(c["device_us"] for c in calls) / n / 1000.0, 3)
            impl = "fused=True" if cls in _FUSED else "foreach=True"
            if cls in _TORCH_FOREACH:
                title = (f"Use the multi-tensor optimizer: torch.optim.{cls}(..., {impl})"
                         + (" (or foreach=True)" if impl != "foreach=True" else ""))
                after = f"optimizer = torch.optim.{cls}(model.parameters(), lr=lr, {impl})"
            else:
                # Not a torch.optim class: generic advice, and it says so.
                title = (f"{cls} is not a torch.optim optimizer: use its multi-tensor or fused "
                         "implementation if it has one, or write its update with torch._foreach_* "
                         "ops over the parameter list (generic advice)")
                after = "torch._foreach_add_(params, grads, alpha=-lr)  # one call for every parameter"
            message = (f"{cls}.step runs {ops_per:.0f} per-parameter ops per step "
                       f"(~{params} parameters × {top_name} ...) instead of multi-tensor kernels; "
                       f"the optimizer takes {host_ms:.2f} ms of host time per step")
            first = calls[0]["row"]
            step_ms = float(median([s.dur for s in trace.steps])) / 1000.0 if trace.steps else 0.0
            evidence["estimated_saving_share"] = round(saving_ms / step_ms, 4) if step_ms > 0 else None
            # On a CPU-only trace the estimate rests on a few microseconds of per-op overhead
            # measured under whatever else the machine is doing: advice, never a warning.
            severity = (Severity.WARNING if trace.has_device_activity and (
                step_ms <= 0 or saving_ms / step_ms >= self.config["warning_share"])
                else Severity.INFO)
            yield self.finding(
                message, severity=severity, location=ctx.location_of(user_frame_row(ctx.host, first)),
                evidence=evidence, est_saving_ms_per_step=saving_ms, count=n,
                op_chain=(trace.name_of(first), top_name),
                suggestion=Suggestion(
                    title=title, after=after,
                    knobs={"optimizer_impl": ["foreach", "fused"] if cls in _FUSED else ["foreach"]}
                    if cls in _TORCH_FOREACH else {}))


def multi_tensor_launch_times(trace: Any, tables: Any = None) -> np.ndarray:
    """When each multi-tensor kernel was launched (its runtime call, else the kernel itself),
    sorted: one table per trace, names matched once per distinct name."""
    if not trace.has_device_activity:
        return np.empty(0)
    kernels = np.flatnonzero(trace.is_device & trace.cat_is(C.KERNEL)
                             & trace.name_mask(lambda s: _MULTI_TENSOR_KERNEL.search(s) is not None))
    launch = trace.launch_of_device_event[kernels]
    ts = trace.col("ts")
    return np.sort(np.where(launch != NO_ID, ts[np.maximum(launch, 0)], ts[kernels]))


def _launches_multi_tensor_kernels(ctx: Context, lo: float, hi: float) -> bool:
    """Whether a multi-tensor kernel was launched inside the optimizer step [lo, hi]."""
    when = ctx.fact(multi_tensor_launch_times)
    return bool(np.searchsorted(when, hi, side="right") > np.searchsorted(when, lo, side="left"))


