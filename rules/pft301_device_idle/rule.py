"""PFT301 device-idle: the GPU waits for the host inside the training step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Location, Severity, Suggestion
from perftune.trace import categories as C
from perftune.trace.device_metrics import batch_size_values, guess_batch_size, op_ancestry
from perftune.trace.groups import distinct, running_sums, unique_codes
from perftune.trace.idle_metrics import (
    CAUSES,
    IdleGapColumns,
    StepIdle,
    gaps_overlapping,
    idle_gap_columns,
    step_idle,
)
from perftune.trace.model import NO_ID
from perftune.trace.sync_metrics import user_frame_row

_CAUSE_TEXT = {
    "input": "waiting for the next batch from the DataLoader",
    "sync": "the host blocked in a synchronising call, so nothing was queued when the GPU finished",
    "dependency": "queued work waiting on another stream or event (collectives, cross-stream waits)",
    "launch": "kernels launched more slowly than the GPU runs them (launch-bound)",
    "host": "the host busy with Python and CPU-side operator work between launches (host-bound)",
}
_FIX = {
    "input": ("Feed the GPU faster: DataLoader(num_workers>0, pin_memory=True, persistent_workers=True,"
              " prefetch_factor=...), and move decoding/augmentation off the training thread"),
    "sync": "Remove the host synchronisation from the step (see the PFT2xx findings for the line)",
    "dependency": "Overlap the waited-for work (bucket collectives, avoid cross-stream waits in the step)",
    "launch": "Launch fewer, larger kernels: torch.compile(mode=\"reduce-overhead\") / CUDA graphs, "
              "fused or foreach ops, a larger batch",
    "host": "Cut host work per step: torch.compile, CUDA graphs, move Python-side work out of the "
            "step, a larger batch",
}
_AFTER = {
    "input": ("loader = DataLoader(dataset, batch_size=..., num_workers=8, pin_memory=True,\n"
              "                    persistent_workers=True, prefetch_factor=4)\n"
              "for x, y in loader:\n"
              "    x, y = x.cuda(non_blocking=True), y.cuda(non_blocking=True)"),
    "launch": "model = torch.compile(model, mode=\"reduce-overhead\")  # CUDA graphs",
    "host": "model = torch.compile(model)",
}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


class DeviceIdle(Rule):
    """PFT301 device-idle: the GPU waits for the host inside the training step.

    ## What it detects
    Time inside each training step when no kernel, copy or memset runs on the GPU, measured on
    the device timeline, and what the host was doing meanwhile. Every gap gets one cause:
    `input` (the host waited for the DataLoader), `sync` (the host had blocked in a synchronising
    call until the GPU drained), `dependency` (queued work waited for another stream),
    `launch` (gaps shorter than a kernel launch between back-to-back kernels) or `host`
    (Python and CPU-side operator work delayed the next launch).

    ## Why is it slow?
    A GPU step can only be as fast as the GPU's busy time if the host keeps its queue full.
    Every idle microsecond inside the step is paid for in step time: a GPU that is idle 40% of
    the step could run the same step in 60% of the time.

    ## Example
    ```python
    loader = DataLoader(dataset, batch_size=256)   # decoding on the training thread
    for x, y in loader:                            # the GPU idles while the batch is built
        loss = model(x.cuda()).loss
    ```

    ## Use instead
    ```python
    loader = DataLoader(dataset, batch_size=256, num_workers=8, pin_memory=True,
                        persistent_workers=True)
    for x, y in loader:
        loss = model(x.cuda(non_blocking=True)).loss
    ```
    For host- and launch-bound steps: `torch.compile(model)` or CUDA graphs
    (`mode="reduce-overhead"`), and a larger batch.

    ## Evidence
    `idle_ms_per_step`, `idle_share`, `by_cause_ms_per_step` (input, sync, dependency, launch,
    host), the worst steps, and the host ops that ran during host-caused idle time.

    ## Options
    `min_idle_share` (0.1): report when the mean idle share of the step reaches this.
    `min_idle_ms` (0.2): and the mean idle time per step reaches this.
    `error_share` (0.4): severity error from this idle share up (warning at most when the
    trace holds a single step, which often includes one-off work).

    ## Known problems
    Steps taken from optimizer calls (no ProfilerStep markers) start at the end of one
    optimizer step, so the DataLoader wait of an iteration falls into the previous step window.
    Traces without GPU activity have no device timeline; the rule does not run on them.
    """

    code: ClassVar[str] = "PFT301"
    name: ClassVar[str] = "device-idle"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"min_idle_share": 0.1, "min_idle_ms": 0.2, "error_share": 0.4}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        if not trace.has_device_activity:
            return
        per_rank: dict[int, list[StepIdle]] = {}
        for s in ctx.fact(step_idle):
            per_rank.setdefault(s.rank, []).append(s)
        if not per_rank:
            return
        shares = {r: sum(s.idle_ms for s in ss) / max(sum(s.dur_ms for s in ss), 1e-9)
                  for r, ss in per_rank.items()}
        rank = max(shares, key=lambda r: (shares[r], -r))
        steps = per_rank[rank]
        share = shares[rank]
        idle = _mean([s.idle_ms for s in steps])
        if share < self.config["min_idle_share"] or idle < self.config["min_idle_ms"]:
            return
        by_cause = {c: round(_mean([s.by_cause.get(c, 0.0) for s in steps]), 4) for c in CAUSES}
        dominant = max(CAUSES, key=lambda c: by_cause[c])
        location, chain, blamed = self._blame(ctx, dominant,
                                              ctx.fact(idle_gap_columns).of_rank(rank, (dominant,)))
        step_ms = _mean([s.dur_ms for s in steps])
        worst = sorted(steps, key=lambda s: -s.idle_ms)[:10]
        evidence: dict[str, Any] = {
            "rank": rank, "steps": len(steps), "step_ms": round(step_ms, 3),
            "idle_ms_per_step": round(idle, 3), "idle_share": round(share, 4),
            "busy_ms_per_step": round(_mean([s.busy_ms for s in steps]), 3),
            "by_cause_ms_per_step": by_cause, "dominant_cause": dominant,
            "worst_steps": [{"step": trace.steps[s.step].index, "dur_ms": round(s.dur_ms, 3),
                             "idle_ms": round(s.idle_ms, 3),
                             **{c: round(v, 3) for c, v in s.by_cause.items() if v}} for s in worst],
            **blamed,
        }
        if len(per_rank) > 1:
            evidence["idle_share_by_rank"] = {str(r): round(v, 4) for r, v in sorted(shares.items())}
        share_text = f"{share:.0%}"
        message = (f"the GPU is idle {share_text} of each step ({idle:.2f} ms of {step_ms:.2f} ms); "
                   f"most of it ({by_cause[dominant]:.2f} ms) is {_CAUSE_TEXT[dominant]}")
        knobs: dict[str, list[Any]] = {}
        if dominant in ("launch", "host"):
            values = batch_size_values(guess_batch_size(trace), "up")
            if values:
                knobs["batch_size"] = values
        severity = Severity.ERROR if share >= self.config["error_share"] else Severity.WARNING
        if len(steps) < 2:
            # A single step often holds one-off work (compilation, warm-up): no error on it alone.
            severity = Severity.WARNING
            message += " (one step only: it may include one-off work such as compilation)"
        yield self.finding(
            message, location=location, severity=severity, evidence=evidence,
            est_saving_ms_per_step=idle, op_chain=chain, rank=rank,
            suggestion=Suggestion(title=_FIX[dominant], after=_AFTER.get(dominant), knobs=knobs))

    def _blame(self, ctx: Context, cause: str,
               gaps: IdleGapColumns) -> tuple[Location | None, tuple[str, ...], dict[str, Any]]:
        """The host event behind most of the dominant cause's idle time, and its location."""
        trace = ctx.trace
        if not len(gaps):
            return None, (), {}
        rank = int(gaps.rank[0])
        n_steps = max(1, len(distinct(gaps.step)))
        if cause == "input":
            dl = np.flatnonzero(trace.name_startswith(C.DATALOADER_PREFIX) & ~trace.is_device
                                & (trace.col("rank") == rank))
            if len(dl) == 0:
                return None, (), {}
            overlap = gaps_overlapping(trace, gaps, dl)
            row = int(dl[int(np.argmax(overlap))])
            return (ctx.location_of(user_frame_row(ctx.host, row)), (trace.name_of(row),),
                    {"dataloader": trace.name_of(row),
                     "dataloader_wait_ms_per_step": round(float(overlap.sum()) / 1000.0
                                                          / n_steps, 3)})
        if cause in ("sync", "dependency"):
            blamed = gaps.host_row != NO_ID
            if not blamed.any():
                return None, (), {}
            # Per host row, in order of first appearance: its gaps' time, added in gap order
            # (bincount adds in index order).
            rows, first_at, inverse = unique_codes(gaps.host_row[blamed], return_index=True)
            sums = np.bincount(inverse, weights=gaps.dur[blamed], minlength=len(rows))
            order = np.argsort(first_at, kind="stable")
            weights = dict(zip(rows[order].tolist(), sums[order].tolist(), strict=True))
            # The same call site recurs every step: group by the op chain that issued it.
            by_chain: dict[tuple[str, ...], float] = {}
            first: dict[tuple[str, ...], int] = {}
            for row, w in weights.items():
                chain = tuple(trace.op_chain(row))
                by_chain[chain] = by_chain.get(chain, 0.0) + w
                first.setdefault(chain, row)
            chain = max(by_chain, key=lambda c: by_chain[c])
            row = first[chain]
            return (ctx.location_of(user_frame_row(ctx.host, row)), chain,
                    {"blamed_call": trace.name_of(row)})
        # host / launch: the outermost ops running while the device waited
        host = np.flatnonzero(trace.cat_is(C.CPU_OP) & (trace.col("rank") == rank))
        if len(host) == 0:
            return None, (), {}
        overlap = gaps_overlapping(trace, gaps, host)
        tops: dict[str, float] = {}
        best_row: dict[str, int] = {}
        # Outermost ops only (each its own outermost op), the ones that overlap a gap.
        keep = ~(overlap <= 0) & (ctx.fact(op_ancestry)[1][host] == host)
        kept = host[keep]
        # Per op name (one interned code per distinct name): the overlaps added up in row order,
        # and the first row.
        strings = trace.strings("name")
        codes = trace.codes("name")[kept].astype(np.int64)
        codes[codes < 0] += len(strings)  # as the strings' list indexes them
        for code, at, us in zip(*running_sums(codes, overlap[keep]), strict=True):
            name = str(strings[code])
            tops[name] = us
            best_row[name] = int(kept[at])
        if not tops:
            return None, (), {}
        ranked = sorted(tops.items(), key=lambda kv: (-kv[1], kv[0]))
        name = ranked[0][0]
        row = best_row[name]
        return (ctx.location_of(user_frame_row(ctx.host, row)), (name,),
                {"host_ops_during_idle": [{"op": n, "ms_per_step": round(us / 1000.0 / n_steps, 3)}
                                          for n, us in ranked[:8]]})
