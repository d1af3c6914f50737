"""PFT103 dataloader-no-pin-memory: batches are copied to the GPU from pageable memory.

## What it detects
On a GPU trace, `Memcpy HtoD (Pageable -> Device)` copies among the first ops after a
DataLoader `__next__` — the batch being moved to the device — when the DataLoader does not
pin its memory.

## Why is it slow?
Pageable batches are staged through a pinned buffer synchronously: the host blocks for every
batch copy and the copy cannot overlap with the previous step's kernels.
`pin_memory=True` makes the DataLoader hand out page-locked batches (a background thread
pins them), so `.to(device, non_blocking=True)` becomes a real asynchronous copy.

## Example
```python
loader = DataLoader(dataset, batch_size=256, num_workers=8)
```

## Use instead
```python
loader = DataLoader(dataset, batch_size=256, num_workers=8, pin_memory=True)
# and in the loop: x = x.to(device, non_blocking=True)
```

## Evidence
The batch copies, their bytes and the time the host was blocked in them.

## Known problems
Only measurable on GPU traces (a CPU trace has no copies); the copy line itself is reported
by PFT208.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from perftune.engine.context import Context
from perftune.engine.frameworks import HF_TRAINER, config_site, frameworks, is_false, keyword_value
from perftune.engine.hazards import dataloader_location
from perftune.engine.rewrite import suggestion
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Location, Severity
from perftune.trace import sync_metrics as sm


class DataLoaderNoPinMemory(Rule):
    code = "PFT103"
    name = "dataloader-no-pin-memory"
    options: ClassVar[dict[str, Any]] = {"error_share": 0.05}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        if not trace.has_device_activity:
            return
        copies = [h for h in sm.host_hazards(ctx.host)
                  if h.cause == sm.SyncCause.PAGEABLE_COPY and h.step >= 0 and sm.follows_dataloader(ctx.host, h.row)]
        if not copies:
            return
        if HF_TRAINER in frameworks(ctx):
            # The Trainer builds its DataLoader with pin_memory=True unless told otherwise.
            trainer = config_site(ctx, HF_TRAINER)
            if not is_false(keyword_value(trainer, "dataloader_pin_memory")):
                return
        site = dataloader_location(ctx)
        if site is not None and (site.site.keyword("pin_memory") or "").strip() == "True":
            return
        location = site.location if site is not None else Location()
        windows = sm.step_windows(trace)
        blocked = sum(h.stall_us for h in copies) / 1000.0 / windows
        sizes = trace.col("nbytes")
        nbytes = sum(max(0, int(sizes[c])) for h in copies for c in h.copy_rows)
        step_ms = sm.median_step_us(trace) / 1000.0
        severity = (Severity.ERROR if step_ms > 0 and blocked / step_ms >= float(self.config["error_share"])
                    else Severity.WARNING)
        yield self.finding(
            f"Batches are copied to the GPU from pageable memory: {len(copies)} copies "
            f"({nbytes / 1e6:.1f} MB) blocked the host {blocked:.3f} ms/step",
            location=location, severity=severity,
            suggestion=suggestion(
                self.code, "Pin the batches: DataLoader(..., pin_memory=True), then "
                ".to(device, non_blocking=True)", location, site.path if site is not None else None,
                after="DataLoader(..., pin_memory=True)", knobs={"pin_memory": [True]}),
            evidence={"copies": len(copies), "bytes": nbytes,
                      "blocked_ms_per_step": round(blocked, 4), "steps": windows},
            est_saving_ms_per_step=round(blocked, 4), count=len(copies),
            op_chain=copies[0].chain)
