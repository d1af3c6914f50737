"""Savings that can be true: every estimate bounded by the time it comes from, one cause counted
once, and a headline that is the union of the findings' savings, never more than the step.

Rules estimate their own saving from what they measured. Several rules can describe the same
time: PFT208 and PFT209 report the same blocking copies; PFT101 and PFT102 the same wait for the
DataLoader; PFT301 reports all of the device's idle time, of which the DataLoader wait, the copies,
the syncs and the host's overhead are parts. The engine (`account`, run after the rules) keeps
each finding's own figure but

- bounds it by the median step (a saving per step is never more than the step);
- links findings of one cause (`evidence["same_cause_as"]`) so a reader sees that fixing one fixes
  the others' time, and `headline_ms` counts that time once;
- when a sync is followed by another sync in the same step, says that removing it alone moves the
  wait to the next one (`evidence["wait_moves_to"]`): its saving is the device idle after it,
  not the whole stall.

Which rules share a pool of time is metadata (`POOLS`; a finding may name its own pool in
`evidence["saving_pool"]`, as PFT301 does not need to): no rule checks another.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from perftune.engine.types import Finding

if TYPE_CHECKING:
    from perftune.engine.context import Context

# Pools of step time several rules report. "Whole" pools are one cause per step (the DataLoader
# wait is one wait, whichever rule names it); "per-site" pools are one cause per source line (the
# copies at one line), plus findings of the pool with no line that cover every site.
POOLS: dict[str, str] = {
    "PFT101": "input", "PFT102": "input",
    "PFT103": "copy", "PFT208": "copy", "PFT209": "copy", "PFT207": "copy",
    "PFT302": "host", "PFT304": "host",
    "PFT601": "communication", "PFT602": "communication",
    # fp32 matrix math: on the vector units (PFT501) or on TF32 / CPU fp32 units (PFT507); one
    # autocast fixes both.
    "PFT501": "precision", "PFT507": "precision",
}
_PER_SITE = frozenset({"copy", "sync"})
# Parts of the device's idle time: PFT301 reports their sum (and more) as one figure.
_IDLE_PARTS = frozenset({"input", "copy", "host", "sync"})
_IDLE = "idle"


def pool_of(f: Finding) -> str | None:
    """The pool of step time a finding's saving comes from (None: its own)."""
    named = f.evidence.get("saving_pool")
    if isinstance(named, str):
        return named
    if f.code == "PFT301":
        return _IDLE
    if f.code in POOLS:
        return POOLS[f.code]
    if f.code.startswith("PFT2"):
        return "sync"
    return None


def _site(f: Finding) -> tuple[str | None, int | None]:
    return (f.location.file, f.location.line)


def _cause_key(f: Finding) -> tuple[Any, ...] | None:
    pool = pool_of(f)
    if pool is None or pool == _IDLE:
        return None
    if pool in _PER_SITE:
        return (pool, *_site(f)) if f.location.file else (pool, None, None)
    return (pool,)


def _where(f: Finding) -> str:
    return f"{f.code} at {f.location}"


def step_ms_of(ctx: Context) -> float:
    """What one step takes: the mean host step, or, when the device runs behind the host, the
    mean span of the device work each step issued (whichever is longer). Savings are per-step
    means (a total over the steps / their count), so a mean bounds them (a median can be
    shorter than a mean wait)."""
    from perftune.trace.metrics import device_event_steps

    trace = ctx.trace
    steps = trace.steps
    if not steps:
        return 0.0
    host = float(np.mean([s.dur for s in steps]))
    if not trace.has_device_activity:
        return host / 1000.0
    which = device_event_steps(trace)
    rows = np.flatnonzero(which >= 0)
    if len(rows) == 0:
        return host / 1000.0
    order = which[rows]
    start = np.full(len(steps), np.inf)
    end = np.full(len(steps), -np.inf)
    np.minimum.at(start, order, trace.col("ts")[rows])
    np.maximum.at(end, order, trace.col("end")[rows])
    spans = np.where(np.isfinite(start), end - start, 0.0)
    return max(host, float(np.mean(spans))) / 1000.0


def account(ctx: Context, findings: Sequence[Finding]) -> list[Finding]:
    """The findings with savings bounded by the step, one-cause links, and moved waits."""
    step_ms = step_ms_of(ctx)
    extra: list[dict[str, Any]] = [{} for _ in findings]
    savings = [max(0.0, float(f.est_saving_ms_per_step)) for f in findings]
    notes = ["" for _ in findings]

    # One cause, one saving: link the findings that report it.
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, f in enumerate(findings):
        key = _cause_key(f)
        if key is not None:
            groups.setdefault(key, []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        for i in members:
            extra[i]["same_cause_as"] = [_where(findings[j]) for j in members if j != i]
    idle_parts = [i for i, f in enumerate(findings) if pool_of(f) in _IDLE_PARTS]
    for i, f in enumerate(findings):
        if pool_of(f) == _IDLE and idle_parts:
            extra[i]["includes"] = [_where(findings[j]) for j in idle_parts]

    # A sync followed by another sync in the same step: removing it moves the wait there.
    for i, j in _moved_waits(ctx, findings):
        f = findings[i]
        bubble = float(f.evidence.get("device_idle_after_ms_per_step") or 0.0)
        extra[i]["wait_moves_to"] = _where(findings[j])
        extra[i]["saving_if_removed_alone_ms_per_step"] = round(bubble, 4)
        savings[i] = min(savings[i], bubble)
        notes[i] = (f"; removing it alone moves the wait to the next sync ({_where(findings[j])}),"
                    " so the saving is the device idle after it")

    # On a GPU, host-side causes give back at most the device's measured idle time (PFT301).
    idle_ms = max((savings[i] for i, f in enumerate(findings) if pool_of(f) == _IDLE), default=0.0)
    out = []
    for i, f in enumerate(findings):
        saving = savings[i]
        if idle_ms > 0 and pool_of(f) in _IDLE_PARTS and saving > idle_ms:
            extra[i]["saving_bounded_by_device_idle_ms"] = round(idle_ms, 4)
            saving = idle_ms
        if step_ms > 0 and saving > step_ms:
            extra[i]["saving_bounded_by_step_ms"] = round(step_ms, 4)
            saving = step_ms
        if not extra[i] and saving == f.est_saving_ms_per_step:
            out.append(f)
            continue
        out.append(dataclasses.replace(
            f, evidence={**f.evidence, **extra[i]}, message=f.message + notes[i],
            est_saving_ms_per_step=round(saving, 4) if saving != f.est_saving_ms_per_step
            else f.est_saving_ms_per_step))
    return out


def _moved_waits(ctx: Context, findings: Sequence[Finding]) -> list[tuple[int, int]]:
    """(i, j): measured sync finding i is followed in the same step by sync finding j (another
    cause) in most of i's occurrences."""
    trace = ctx.trace
    if not trace.has_device_activity or not trace.steps:
        return []
    ts = trace.col("ts")
    ranks = trace.col("rank")
    n_rows = len(ts)
    occ: dict[int, list[tuple[int, float]]] = {}
    for i, f in enumerate(findings):
        rows = [int(r) for r in f.evidence.get("trace_rows") or [] if isinstance(r, int) and 0 <= r < n_rows]
        if f.latent or pool_of(f) != "sync" or not rows or "stall_ms_per_step" not in f.evidence:
            continue
        r = np.asarray(rows)
        steps = trace.step_of(ts[r], ranks[r])
        occ[i] = [(int(s), float(t)) for s, t in zip(steps.tolist(), ts[r].tolist(), strict=True) if s >= 0]
    pairs = []
    for i, mine in occ.items():
        if not mine:
            continue
        best: tuple[int, int] | None = None
        for j, theirs in occ.items():
            if j == i or set(theirs) == set(mine):
                continue  # the same occurrences: one cause, not a later sync
            later = sum(any(s2 == s and t2 > t for s2, t2 in theirs) for s, t in mine)
            if 2 * later >= len(mine) and (best is None or later > best[0]):
                best = (later, j)
        if best is not None:
            pairs.append((i, best[1]))
    return pairs


def headline_ms(findings: Iterable[Any], step_ms: float | None = None) -> float:
    """Per step, the time the findings together could give back: each cause once (the largest
    estimate of the findings that report it), the device's idle time once (PFT301's measured
    idle bounds its causes together), never more than the (mean) step. `findings` may be Finding objects or their documents."""
    independent = 0.0
    whole: dict[str, float] = {}
    per_site: dict[str, dict[tuple[Any, ...], float]] = {}
    pool_wide: dict[str, float] = {}
    idle = 0.0
    for f in findings:
        f = _as_finding(f)
        saving = max(0.0, float(f.est_saving_ms_per_step))
        pool = pool_of(f)
        if pool is None:
            independent += saving
        elif pool == _IDLE:
            idle = max(idle, saving)
        elif pool in _PER_SITE and f.location.file:
            sites = per_site.setdefault(pool, {})
            key = _site(f)
            sites[key] = max(sites.get(key, 0.0), saving)
        elif pool in _PER_SITE:
            pool_wide[pool] = max(pool_wide.get(pool, 0.0), saving)
        else:
            whole[pool] = max(whole.get(pool, 0.0), saving)
    pools: dict[str, float] = dict(whole)
    for pool in set(per_site) | set(pool_wide):
        pools[pool] = max(sum(per_site.get(pool, {}).values()), pool_wide.get(pool, 0.0))
    # The device's idle time, measured whole (PFT301), bounds what its causes give back together.
    idle_parts = sum(v for p, v in pools.items() if p in _IDLE_PARTS)
    idle_union = idle if idle > 0 else idle_parts
    total = independent + idle_union + sum(v for p, v in pools.items() if p not in _IDLE_PARTS)
    if step_ms is not None and step_ms > 0:
        total = min(total, step_ms)
    return total


def _as_finding(f: Any) -> Any:
    """A Finding, its findings.json document (msgspec Struct: same attributes) or its dict."""
    return Finding.from_dict(f) if isinstance(f, dict) else f
