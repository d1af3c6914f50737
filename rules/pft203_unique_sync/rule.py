"""PFT203 unique-sync: `torch.unique` / `unique_consecutive` inside a training step.

## What it detects
`aten::_unique2`, `aten::unique_dim`, `aten::unique_consecutive` (from `torch.unique`,
`Tensor.unique`, `torch.unique_consecutive`) called during a step.

## Why is it slow?
How many distinct values there are is data: the output size is only known after the device
has sorted the input, so the host copies the count back and waits for the device to drain.
The op also runs a full sort, which is expensive on its own.

## Example
```python
labels, counts = torch.unique(target, return_counts=True)
per_label = torch.zeros(NUM_CLASSES, dtype=torch.long, device=target.device)
per_label[labels] = counts
```

## Use instead
```python
# Counts of a known, fixed number of classes: a fixed-size scatter, no sync.
flat = target.flatten()
per_label = torch.zeros(NUM_CLASSES, dtype=torch.long, device=target.device)
per_label.scatter_add_(0, flat, torch.ones_like(flat))
# (torch.bincount(flat, minlength=NUM_CLASSES) also works but syncs to find the max label.)
present = per_label > 0  # "which classes occur" as a fixed-size mask
```

## Options
`error_share` (default 0.05): error when the measured cost is at least this share of a step.

## Known problems
When the set of values is genuinely unbounded there is no fixed-size replacement; then move
the call out of the step (compute it once per epoch, or on the CPU copy of the labels).
"""

from __future__ import annotations

from perftune.engine.attribution import SiteMatcher
from perftune.engine.hazards import HazardRule, calls
from perftune.trace import sync_metrics as sm


class UniqueSync(HazardRule):
    code = "PFT203"
    name = "unique-sync"
    causes = frozenset({sm.SyncCause.UNIQUE})
    fix_title = ("Count a known set of values with a fixed-size scatter_add_/bincount(minlength=) "
                 "instead of torch.unique")
    after = ("per_label = torch.zeros(NUM_CLASSES, dtype=torch.long, device=x.device)\n"
             "per_label.scatter_add_(0, x.flatten(), torch.ones_like(x.flatten()))")

    def site_matcher(self, hazard: sm.Hazard) -> SiteMatcher | None:
        return calls("unique", "unique_consecutive")
