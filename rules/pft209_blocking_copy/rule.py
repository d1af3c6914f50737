"""PFT209 blocking-copy: a host→device copy without `non_blocking=True`.

## What it detects
On a GPU trace: a copy op whose `cudaMemcpyAsync` is followed by a `cudaStreamSynchronize`
inside the same op — what `.to(device)` does without `non_blocking=True`. On a CPU trace
(latent): `.to(device)` / `.cuda()` without `non_blocking=True` of a step's inputs, and of
tensors the step made on the host wherever they are copied in the step (a label matrix or mask
rebuilt every step), where the capture's device provenance saw the copy.

## Why is it slow?
With `non_blocking=False` PyTorch synchronises the stream after the copy, so the host waits
for every kernel queued before it, then for the copy. From pinned memory the copy could run
asynchronously while the host keeps queueing the step's kernels.

## Example
```python
loader = DataLoader(dataset, batch_size=64, pin_memory=True)
for x, y in loader:
    x, y = x.to(device), y.to(device)
```

## Use instead
```python
for x, y in loader:
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
```

## Options
`error_share` (default 0.05): error when the measured cost is at least this share of a step.

## Known problems
From pageable memory the copy stays synchronous even with `non_blocking=True`: pin the memory
too (PFT208 reports that). A device→host copy with `non_blocking=True` must be followed by a synchronisation before the
host reads it; the rewrite is marked safe only for host→device copies.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.attribution import Group, SiteMatcher
from perftune.engine.context import Context
from perftune.engine.hazards import (
    HazardRule,
    calls,
    is_device_move,
    latent_batch_moves,
    non_blocking_of,
)
from perftune.trace import categories as C
from perftune.trace import sync_metrics as sm


class BlockingCopy(HazardRule):
    code = "PFT209"
    name = "blocking-copy"
    what = "Copy without non_blocking=True"
    fix_title = "Pass non_blocking=True to the copy (with pinned memory it then overlaps compute)"
    after = "x = x.to(device, non_blocking=True)"

    # Pageable copies that also sync the stream are blocking copies as well: two problems,
    # two fixes (pin the memory — PFT208; pass non_blocking=True — this rule).
    causes = frozenset({sm.SyncCause.BLOCKING_COPY, sm.SyncCause.PAGEABLE_COPY})

    def accepts(self, ctx: Context, hazard: sm.Hazard) -> bool:
        if hazard.cause not in self.causes:
            return False
        return any(ctx.trace.name_of(r) in C.SYNC_CALLS for r in hazard.sync_rows)

    def hazards(self, ctx: Context) -> list[sm.Hazard]:
        if ctx.trace.has_device_activity:
            return super().hazards(ctx)
        return [h for h in latent_batch_moves(ctx, sm.SyncCause.BLOCKING_COPY)
                if not sm.to_non_blocking(ctx.trace.concrete_inputs(h.row))]

    def site_matcher(self, hazard: sm.Hazard) -> SiteMatcher | None:
        return calls("to", "cuda", "copy_")

    def keep_group(self, ctx: Context, group: Group, latent: bool) -> bool:
        if not latent:
            return True
        return is_device_move(group.site) and not any(
            non_blocking_of(ctx.trace, h, group.site) for h in self._by_rows(ctx, group))

    def _by_rows(self, ctx: Context, group: Group) -> list[sm.Hazard]:
        return [h for h in latent_batch_moves(ctx, sm.SyncCause.BLOCKING_COPY) if h.row in set(group.rows)]

    def rewrite_params(self, group: Group, hazards: list[sm.Hazard]) -> dict[str, Any]:
        # Device→host copies are PFT207's, so what is left here uploads or moves between
        # devices: non_blocking=True keeps the stream order and is safe.
        return {"direction": "HtoD"}
