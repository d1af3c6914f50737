"""PFT404 allocator-churn: device memory allocated and freed with the driver inside steps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace.memory_metrics import allocator_calls
from perftune.trace.sync_metrics import user_frame_row


class AllocatorChurn(Rule):
    """PFT404 allocator-churn: device memory allocated and freed with the driver inside steps.

    ## What it detects
    `cudaMalloc` / `cudaFree` (`hipMalloc` / `hipFree`) runtime calls inside training steps
    after the first, and calls to `torch.cuda.empty_cache()` in the step.

    ## Why is it slow?
    PyTorch's caching allocator keeps freed blocks and hands them out again, so a steady-state
    step should never reach the driver. `cudaMalloc` is slow and `cudaFree` synchronises the
    whole device. Seeing them every step means the cache is being emptied
    (`torch.cuda.empty_cache()`), memory is fragmented near capacity, or shapes keep changing
    so cached blocks never fit.

    ## Example
    ```python
    for x, y in loader:
        loss = model(x).loss
        loss.backward()
        torch.cuda.empty_cache()     # returns the cache to the driver every step
    ```

    ## Use instead
    ```python
    for x, y in loader:
        loss = model(x).loss
        loss.backward()              # let the caching allocator reuse its blocks
    ```
    Near capacity, set `PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True` to curb
    fragmentation; pad variable shapes to a few bucket sizes.

    ## Evidence
    Allocator calls per steady-state step by name, their host time per step, `empty_cache`
    calls, and the op that triggered most of them.

    ## Options
    `min_calls_per_step` (1.0): allocator calls per steady-state step to report.
    """

    code: ClassVar[str] = "PFT404"
    name: ClassVar[str] = "allocator-churn"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"min_calls_per_step": 1.0}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        calls = ctx.fact(allocator_calls)
        if calls.steady_steps <= 0:
            return
        n = calls.steady_steps
        per_step = len(calls.rows) / n
        empties = len(calls.empty_cache_rows)
        if per_step < self.config["min_calls_per_step"] and empties == 0:
            return
        names = Counter(trace.name_of(r) for r in calls.rows.tolist())
        host_ms = float(trace.col("dur")[calls.rows].sum()) / 1000.0 / n if len(calls.rows) else 0.0
        # The op that triggers them: the outermost op above each call.
        by_chain: Counter[tuple[str, ...]] = Counter()
        first_row: dict[tuple[str, ...], int] = {}
        for r in calls.rows.tolist():
            source = tuple(trace.op_chain(r)[:-1]) or (trace.name_of(r),)
            by_chain[source] += 1
            first_row.setdefault(source, r)
        anchor: int | None = None
        chain: tuple[str, ...] = ()
        if empties:
            anchor = int(calls.empty_cache_rows[0])
            chain = ("torch.cuda.empty_cache",)
        elif by_chain:
            chain = by_chain.most_common(1)[0][0]
            anchor = first_row[chain]
        location = ctx.location_of(user_frame_row(ctx.host, anchor)) if anchor is not None else None
        if empties and location is not None and location.file is None:
            location = None
        evidence: dict[str, Any] = {
            "steady_steps": n, "calls_per_step": round(per_step, 2),
            "calls_by_name_per_step": {k: round(v / n, 2) for k, v in names.most_common()},
            "host_ms_per_step": round(host_ms, 4), "empty_cache_calls": empties,
            "top_sources": [{"op_chain": list(c), "calls_per_step": round(v / n, 2)}
                            for c, v in by_chain.most_common(5)],
        }
        what = f"{per_step:.1f} cudaMalloc/cudaFree calls per step" if len(calls.rows) else "no driver calls"
        message = (f"{what} after the first step ({host_ms:.3f} ms of host time per step"
                   + (f"; torch.cuda.empty_cache() called {empties}× in steps" if empties else "")
                   + "): the caching allocator goes back to the driver in steady state")
        yield self.finding(
            message, location=location, evidence=evidence,
            est_saving_ms_per_step=host_ms, count=max(1, len(calls.rows)), op_chain=chain,
            severity=Severity.WARNING if per_step >= self.config["min_calls_per_step"] or empties else Severity.INFO,
            suggestion=Suggestion(
                title="Let the caching allocator reuse memory: drop torch.cuda.empty_cache() from "
                      "the loop, keep shapes static (pad to buckets), and near capacity set "
                      "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True",
                after="# no torch.cuda.empty_cache() inside the training loop"))


