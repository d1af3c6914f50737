"""PFT305 manual-parameter-update: the script updates its parameters one tensor at a time.

## What it detects
A training step that updates the model's parameters with its own loop — `for p in
model.parameters(): p.add_(p.grad, alpha=-lr)` or `p -= lr * p.grad`, as in several official
examples — with no optimizer: many in-place update ops (`aten::add_`, `aten::sub_`,
`aten::addcdiv_`, ...) issued one after another from the same line of the user's code, with no
multi-tensor (`_foreach_*`) update of the script's own and outside any `Optimizer.step`
(a library helper's multi-tensor ops, `clip_grad_norm_`'s `_foreach_norm`, do not count).

The same loop over the parameters that reduces instead of updating is reported too: a
gradient norm computed one tensor at a time (`[torch.norm(p.grad, 2) for p in parameters]`
stacked and normed again, as masked-autoencoder and BEiT-style engines do), many norm ops
(`aten::linalg_vector_norm`, `aten::norm`) from one line outside any module's forward, with no
`_foreach_norm` of the script's own (`clip_grad_norm_`'s per-tensor fallback is the library's).

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

For a per-tensor gradient norm:
```python
grads = [p.grad for p in parameters if p.grad is not None]
total = torch.nn.utils.get_total_norm(grads, 2.0, foreach=True)
# or the norms themselves: torch._foreach_norm(grads, 2.0)
# or, when the norm is for clipping: torch.nn.utils.clip_grad_norm_(parameters, max_norm, foreach=True)
```

## Evidence
Update ops per step, their op names, host time of the loop per step, and the estimated saving:
the per-op overhead of all but one op per kind (a multi-tensor op keeps one call per kind).

## Options
`min_ops_per_step` (8): in-place update (or norm) ops per step from one line to report (a
two-layer LSTM language model has 11 parameter tensors).
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
from perftune.trace.groups import median
from perftune.trace.model import has_ancestor

# In-place arithmetic an update rule is made of (zero_ and copy_ are not updates).
UPDATE_OPS = frozenset({"aten::add_", "aten::sub_", "aten::mul_", "aten::addcdiv_",
                        "aten::addcmul_", "aten::lerp_", "aten::div_"})


_UPDATE_CALLS = frozenset({"add_", "sub_", "mul_", "addcdiv_", "addcmul_", "lerp_", "div_"})
# Per-tensor norms (a gradient norm over the parameters, one tensor at a time).
REDUCE_OPS = frozenset({"aten::linalg_vector_norm", "aten::norm", "aten::frobenius_norm"})
_REDUCE_CALLS = frozenset({"norm", "vector_norm", "frobenius_norm"})
_MULTI_REDUCE = frozenset({"aten::_foreach_norm"})


def _update_call(site: Site) -> bool:
    """An in-place update call (`p.data.add_(p.grad, alpha=-lr)`): the line to change."""
    return site.kind == "call" and site.name in _UPDATE_CALLS


def _reduce_call(site: Site) -> bool:
    """A per-tensor norm call (`torch.norm(p.grad, 2)`, `p.grad.norm()`): the line to change."""
    return site.kind == "call" and site.name in _REDUCE_CALLS


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


def _library_call(ctx: Context, row: int) -> int | None:
    """The library function the user's line called to issue op `row` (its outermost python
    frame below the user's), or None when the user's line issued it directly. Norms that share
    one library call (`clip_grad_norm_`'s per-tensor fallback) are the library's loop; a
    `torch.norm` per tensor is one library call each."""
    host = ctx.host
    call = None
    for a in ctx.trace.ancestors(row):
        if host.cat[a] != C.PYTHON_FUNCTION:
            continue
        if host.is_user_frame_row(a):
            return call
        call = a
    return None


def _forward_frame(name: str) -> bool:
    return name.startswith("nn.Module: ") or name.endswith((": forward", ": _call_impl"))


def _top_level_updates(ctx: Context, rows: np.ndarray) -> list[int]:
    """The `rows` issued by Python (each its own outermost op), outside any module's forward
    (a python frame of a module call above them) and outside an optimizer's step."""
    trace, host = ctx.trace, ctx.host
    rows = rows[host.outer_op[rows] == rows]
    forward = trace.cat_mask({C.PYTHON_FUNCTION}) & trace.name_mask(_forward_frame)
    optimizer = trace.name_startswith(C.OPTIMIZER_STEP_PREFIX)
    inside = has_ancestor(trace.parent, rows, forward) | has_ancestor(trace.parent, rows, optimizer)
    top: list[int] = rows[~inside].tolist()
    return top


class ManualParameterUpdate(Rule):
    code = "PFT305"
    name = "manual-parameter-update"
    options: ClassVar[dict[str, Any]] = {"min_ops_per_step": 8, "warning_share": 0.01}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        host = ctx.host
        multi = np.flatnonzero((trace.name_startswith("aten::_foreach_")
                                | trace.name_startswith("aten::_fused_")) & host.is_op).tolist()
        own = [r for r in multi if sm.user_op(host, r) == r and _multi_tensor(ctx, r)
               and not _in_optimizer_step(ctx, r)]
        if not any(host.names[r] not in _MULTI_REDUCE for r in own):
            # (else the script updates with multi-tensor ops already)
            yield from self._loops(ctx, UPDATE_OPS, _update_call, reduce=False)
        if not any(host.names[r] in _MULTI_REDUCE for r in own):
            yield from self._loops(ctx, REDUCE_OPS, _reduce_call, reduce=True)

    def _loops(self, ctx: Context, ops: frozenset[str], call: Any, *, reduce: bool) -> Iterator[Finding]:
        trace = ctx.trace
        host = ctx.host
        # issued by Python (not nested in another op), outside any module's forward (a
        # residual `out += identity` repeats per block too, but is not a parameter update)
        # and outside an optimizer's step (a for-loop optimizer is PFT303's); a norm issued
        # by a library helper (clip_grad_norm_'s per-tensor fallback) is the library's
        top = _top_level_updates(ctx, np.flatnonzero(trace.name_isin(ops) & host.is_op))
        if reduce:  # the loop is the user's: each norm its own call (a library's loop is not)
            calls = {r: _library_call(ctx, r) for r in top}
            shared = Counter(c for c in calls.values() if c is not None)
            top = [r for r in top if (c := calls[r]) is None or shared[c] == 1]
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
        minimum = float(self.config["min_ops_per_step"])
        for items in by_frame.values():
            if len(items) / windows < minimum:
                continue
            occs = [Occurrence(row=r, step=s, cost_us=float(host.dur[r]), frame_row=f, key="update")
                    for r, s, f in items]
            groups = ctx.attribute(occs, lambda o: call, windows=windows)
            if not groups or groups[0].site is None:
                groups = ctx.attribute(occs, lambda o: _parameter_loop, windows=windows)
            if groups:
                # the loop's ops alone (the function's other norms are not part of it); the
                # lines of one loop (`p.mul_(d)` then `p.add_(q)` on the next line) are one
                # loop, reported at its costliest line
                group = groups[0]
                around = group.site.loop if group.site is not None else None
                rows = [o.row for g in groups
                        if g is group or (around is not None and g.site is not None
                                          and g.site.loop == around)
                        for o in g.occurrences]
                location = group.location
            else:
                rows = [r for r, _, _ in items]
                location = ctx.location_of(items[0][2])
            per_step = len(rows) / windows
            if per_step < minimum:
                continue
            names = Counter(host.names[r] for r in rows)
            durs = np.array([float(host.dur[r]) for r in rows])
            median_us = float(median(durs))
            loop_ms = float(durs.sum()) / 1000.0 / windows
            saving_ms = min(loop_ms, max(0.0, per_step - len(names)) * median_us / 1000.0)
            if step_ms > 0:
                saving_ms = min(saving_ms, step_ms)
            top_name, top_count = names.most_common(1)[0]
            gpu = trace.has_device_activity
            severity = (Severity.WARNING if gpu and (step_ms <= 0 or saving_ms / step_ms
                                                      >= float(self.config["warning_share"]))
                        else Severity.INFO)
            if reduce:
                message = (f"Norms are computed one tensor at a time: {per_step:.0f} norm ops per "
                           f"step (~{round(top_count / windows)} × {top_name}) from this loop, "
                           f"{loop_ms:.3f} ms of host time per step; torch._foreach_norm computes "
                           "them all in one call")
                suggestion = Suggestion(
                    title="Compute the norms in one multi-tensor call: "
                          "torch.nn.utils.get_total_norm(grads, foreach=True) for the total, "
                          "torch._foreach_norm(grads) for each tensor's, or "
                          "clip_grad_norm_(parameters, max_norm, foreach=True) when it is for clipping",
                    before="norms = [torch.norm(p.grad, 2.0) for p in parameters]\n"
                           "total = torch.norm(torch.stack(norms), 2.0)",
                    after="grads = [p.grad for p in parameters if p.grad is not None]\n"
                          "total = torch.nn.utils.get_total_norm(grads, 2.0, foreach=True)")
            else:
                message = (f"The parameters are updated one tensor at a time: {per_step:.0f} in-place "
                           f"update ops per step (~{round(top_count / windows)} × {top_name}) from this "
                           f"loop, {loop_ms:.3f} ms of host time per step; a multi-tensor op does each "
                           "kind of update in one call")
                suggestion = Suggestion(
                    title="Update every parameter in one multi-tensor call: "
                          "torch._foreach_add_(params, grads, alpha=-lr), or "
                          "torch.optim.SGD(model.parameters(), lr=lr, foreach=True)",
                    before="for p in model.parameters():\n    p.add_(p.grad, alpha=-lr)",
                    after="params = [p for p in model.parameters() if p.grad is not None]\n"
                          "torch._foreach_add_(params, [p.grad for p in params], alpha=-lr)")
            evidence_key = "norm_ops_per_step" if reduce else "update_ops_per_step"
            yield self.finding(
                message, location=location, severity=severity,
                evidence={evidence_key: round(per_step, 1),
                          "op_counts_per_step": {k: round(v / windows, 1)
                                                 for k, v in names.most_common(6)},
                          "median_op_us": round(median_us, 3),
                          "loop_host_ms_per_step": round(loop_ms, 4), "steps": windows},
                est_saving_ms_per_step=round(saving_ms, 4), count=len(rows),
                op_chain=(top_name,), suggestion=suggestion)
