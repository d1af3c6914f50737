"""PFT305 manual-parameter-update: the script updates its parameters one tensor at a time.

## What it detects
A training step that updates the model's parameters with its own loop — `for p in
model.parameters(): p.add_(p.grad, alpha=-lr)` or `p -= lr * p.grad`, as in several official
examples — with no optimizer: many in-place update ops (`aten::add_`, `aten::sub_`,
`aten::addcdiv_`, ...) issued one after another from the same line of the user's code, with no
multi-tensor (`_foreach_*`) update of the script's own and outside any `Optimizer.step`
(a library helper's multi-tensor ops, `clip_grad_norm_`'s `_foreach_norm`, do not count).

## Why is it slow?
Each update op pays the Python → dispatcher → kernel-launch overhead (5–20 µs) for one
parameter's worth of arithmetic. With N parameter tensors that is N launches per step where a
multi-tensor op takes one: on a GPU the device waits for the loop between tiny kernels.

## Example
```python
with torch.no_grad():
    for p in model.parameters():
        p.add_(p.grad, alpha=-lr)
```

## Use instead
```python
with torch.no_grad():
    params = [p for p in model.parameters() if p.grad is not None]
    torch._foreach_add_(params, [p.grad for p in params], alpha=-lr)
# or: optimizer = torch.optim.SGD(model.parameters(), lr=lr, foreach=True)
```

## Evidence
Update ops per step, their op names, host time of the loop per step, and the estimated saving:
the per-op overhead of all but one op per kind (a multi-tensor op keeps one call per kind).

## Options
`min_ops_per_step` (8): in-place update ops per step from one line to report (a two-layer
LSTM language model has 11 parameter tensors).
`warning_share` (0.01): on a GPU trace, a warning when the saving is at least this share of the
step; on a CPU-only trace the finding is advice (info).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.engine.attribution import Occurrence, Site
from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace import categories as C
from perftune.trace import sync_metrics as sm

# In-place arithmetic an update rule is made of (zero_ and copy_ are not updates).
UPDATE_OPS = frozenset({"aten::add_", "aten::sub_", "aten::mul_", "aten::addcdiv_",
                        "aten::addcmul_", "aten::lerp_", "aten::div_"})


_UPDATE_CALLS = frozenset({"add_", "sub_", "mul_", "addcdiv_", "addcmul_", "lerp_", "div_"})


def _update_call(site: Site) -> bool:
    """An in-place update call (`p.data.add_(p.grad, alpha=-lr)`): the line to change."""
    return site.kind == "call" and site.name in _UPDATE_CALLS


def _parameter_loop(site: Site) -> bool:
    """The loop over the parameters, when no update call can be read (`p -= lr * p.grad`)."""
    return site.kind == "for" and "param" in site.name.lower()


def _in_optimizer_step(ctx: Context, row: int) -> bool:
    """Inside `Optimizer.step` (a for-loop optimizer's own per-parameter ops: PFT303's)."""
    return any(ctx.host.names[a].startswith(C.OPTIMIZER_STEP_PREFIX)
               for a in ctx.trace.ancestors(row))


def _multi_tensor(ctx: Context, row: int) -> bool:
    """A multi-tensor op issued by the user's own code (not a library helper such as
    clip_grad_norm_, whose `_foreach_norm` says nothing about how parameters are updated)."""
    return not sm.library_frames(ctx.host, row)


def _in_forward(ctx: Context, row: int) -> bool:
    host = ctx.host
    for a in ctx.trace.ancestors(row):
        if host.cat[a] != C.PYTHON_FUNCTION:
            continue
        name = host.names[a]
        if name.startswith("nn.Module: ") or name.endswith((": forward", ": _call_impl")):
            return True
    return False


class ManualParameterUpdate(Rule):
    code = "PFT305"
    name = "manual-parameter-update"
    options: ClassVar[dict[str, Any]] = {"min_ops_per_step": 8, "warning_share": 0.01}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        host = ctx.host
        multi = np.flatnonzero((trace.name_startswith("aten::_foreach_")
                                | trace.name_startswith("aten::_fused_")) & host.is_op).tolist()
        if any(sm.user_op(host, r) == r and _multi_tensor(ctx, r)
               and not _in_optimizer_step(ctx, r) for r in multi):
            return  # the script updates with multi-tensor ops already
        rows = np.flatnonzero(np.isin(host.names, list(UPDATE_OPS)) & host.is_op).tolist()
        # issued by Python (not nested in another op), outside any module's forward (a
        # residual `out += identity` repeats per block too, but is not a parameter update)
        # and outside an optimizer's step (a for-loop optimizer is PFT303's)
        top = [r for r in rows if sm.user_op(host, r) == r and not _in_forward(ctx, r)
               and not _in_optimizer_step(ctx, r)]
        if not top:
            return
        steps = sm.in_scope_steps(trace, top)
        frames = [sm.user_frame_row(host, r) for r in top]
        by_frame: dict[str, list[tuple[int, int, int | None]]] = {}
        for row, step, frame in zip(top, steps.tolist(), frames, strict=True):
            if step < 0 or frame is None:
                continue
            by_frame.setdefault(trace.name_of(frame), []).append((row, step, frame))
        windows = sm.step_windows(trace)
        step_ms = sm.median_step_us(trace) / 1000.0
        for items in by_frame.values():
            per_step = len(items) / windows
            if per_step < float(self.config["min_ops_per_step"]):
                continue
            names = Counter(host.names[r] for r, _, _ in items)
            durs = np.array([float(host.dur[r]) for r, _, _ in items])
            median_us = float(np.median(durs))
            loop_ms = float(durs.sum()) / 1000.0 / windows
            saving_ms = min(loop_ms, max(0.0, per_step - len(names)) * median_us / 1000.0)
            if step_ms > 0:
                saving_ms = min(saving_ms, step_ms)
            occs = [Occurrence(row=r, step=s, cost_us=float(host.dur[r]), frame_row=f, key="update")
                    for r, s, f in items]
            groups = ctx.attribute(occs, lambda o: _update_call, windows=windows)
            if not groups or groups[0].site is None:
                groups = ctx.attribute(occs, lambda o: _parameter_loop, windows=windows)
            location = groups[0].location if groups else ctx.location_of(items[0][2])
            top_name, top_count = names.most_common(1)[0]
            gpu = trace.has_device_activity
            severity = (Severity.WARNING if gpu and (step_ms <= 0 or saving_ms / step_ms
                                                      >= float(self.config["warning_share"]))
                        else Severity.INFO)
            yield self.finding(
                f"The parameters are updated one tensor at a time: {per_step:.0f} in-place "
                f"update ops per step (~{round(top_count / windows)} × {top_name}) from this "
                f"loop, {loop_ms:.3f} ms of host time per step; a multi-tensor op does each "
                "kind of update in one call",
                location=location, severity=severity,
                evidence={"update_ops_per_step": round(per_step, 1),
                          "op_counts_per_step": {k: round(v / windows, 1)
                                                 for k, v in names.most_common(6)},
                          "median_op_us": round(median_us, 3),
                          "loop_host_ms_per_step": round(loop_ms, 4), "steps": windows},
                est_saving_ms_per_step=round(saving_ms, 4), count=len(items),
                op_chain=(top_name,),
                suggestion=Suggestion(
                    title="Update every parameter in one multi-tensor call: "
                          "torch._foreach_add_(params, grads, alpha=-lr), or "
                          "torch.optim.SGD(model.parameters(), lr=lr, foreach=True)",
                    before="for p in model.parameters():\n    p.add_(p.grad, alpha=-lr)",
                    after="params = [p for p in model.parameters() if p.grad is not None]\n"
                          "torch._foreach_add_(params, [p.grad for p in params], alpha=-lr)"))
