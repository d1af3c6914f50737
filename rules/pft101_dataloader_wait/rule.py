"""PFT101 dataloader-wait: the training step waits for the next batch.

## What it detects
Time inside steps spent in the DataLoader's `__next__` (the
`enumerate(DataLoader)#..._DataLoaderIter.__next__` annotation), when its share of the step
time is above a threshold (option `threshold`, default 10%).

## Why is it slow?
While the loop waits for data, nothing else happens: on a GPU the device idles. Loading,
decoding and augmenting in the training process (or in too few workers) makes the step
input-bound.

## Example
```python
loader = DataLoader(dataset, batch_size=64)          # decodes in the training process
```

## Use instead
```python
loader = DataLoader(dataset, batch_size=64, num_workers=4, persistent_workers=True,
                    prefetch_factor=4)              # load ahead, in parallel
```

## Evidence
The wait per step and its share of the steps' time.

## Options
`threshold` (default 0.10): report when the wait is at least this share of the step time.
`error_share` (default 0.30): above this share the finding is an error.

## Known problems
Workers need a picklable dataset and per-worker random seeds; a slow `__getitem__` (e.g.
decoding full-size images) may need fixing itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from perftune.engine.context import Context
from perftune.engine.hazards import dataloader_location, loop_location
from perftune.engine.rewrite import suggestion
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity
from perftune.trace import sync_metrics as sm


class DataLoaderWait(Rule):
    code = "PFT101"
    name = "dataloader-wait"
    options: ClassVar[dict[str, Any]] = {"threshold": 0.10, "error_share": 0.30}

    def check(self, ctx: Context) -> Iterator[Finding]:
        wait = sm.dataloader_wait(ctx.host)
        if wait is None or wait.share < float(self.config["threshold"]):
            return
        # The wait happens where the loop asks for the next batch; the fix goes where the
        # DataLoader is built (the diff edits that line when it is in the same file).
        location = loop_location(ctx, wait.rows)
        site = dataloader_location(ctx, wait.rows)
        ms = wait.wait_us_per_step / 1000.0
        current = site.site.keyword("num_workers") if site is not None else None
        workers = 4
        if current is not None and current.strip().isdigit() and int(current) > 0:
            workers = min(32, 2 * int(current))
        knobs: dict[str, list[Any]] = {"num_workers": sorted({2, 4, 8, workers})}
        if not wait.single_process:
            knobs["prefetch_factor"] = [2, 4, 8]
        severity = Severity.ERROR if wait.share >= float(self.config["error_share"]) else Severity.WARNING
        yield self.finding(
            f"The step waits for the DataLoader {wait.share:.0%} of the time ({ms:.2f} ms/step"
            f" over {len(wait.rows)} batches, "
            f"{'in the training process' if wait.single_process else 'with worker processes'})",
            location=location, severity=severity,
            suggestion=suggestion(
                self.code, f"Load batches ahead and in parallel: num_workers={workers}, "
                "persistent_workers=True (and a cheaper __getitem__)",
                site.location if site is not None else location,
                site.path if site is not None else None,
                after=f"DataLoader(..., num_workers={workers}, persistent_workers=True, "
                      "prefetch_factor=4)",
                params={"num_workers": workers}, knobs=knobs),
            evidence={"wait_ms_per_step": round(ms, 4), "share": round(wait.share, 4),
                      "batches": len(wait.rows), "single_process": wait.single_process,
                      "steps": wait.steps},
            est_saving_ms_per_step=round(ms, 4), count=len(wait.rows))
