"""PFT201 sync-in-step: the host waits for the device inside a training step.

## What it detects
Measured host↔device synchronisations inside steps — `cudaStreamSynchronize`,
`cudaDeviceSynchronize`, `cudaEventSynchronize`, blocking copies (`cudaMemcpy`, copies to
pageable memory) — attributed to the op and source line that caused them, when no more
specific 2xx rule (nonzero, unique, `.item()`, copies, ...) already explains them.

## Why is it slow?
The CPU stops queueing kernels until the GPU has finished all earlier work; afterwards the GPU
idles until the host has launched the next kernels. A training step that never syncs lets the
host run ahead, keeping the device busy back to back.

## Example
```python
counts = torch.bincount(labels)      # syncs: needs max(labels) for the output size
```

## Use instead
```python
counts = torch.bincount(labels, minlength=NUM_CLASSES)   # still syncs for max(); better:
counts = torch.zeros(NUM_CLASSES, device=labels.device).scatter_add_(0, labels, ones)
```

## Evidence
The sync call, its duration, the op chain that led to it and the device idle time after it.
Only reported on traces with device activity: a CPU trace has no syncs to measure.

## Options
`error_share` (default 0.05): error when the measured cost is at least this share of a step.
"""

from __future__ import annotations

from perftune.engine.attribution import Group
from perftune.engine.context import Context
from perftune.engine.hazards import HazardRule
from perftune.trace import sync_metrics as sm


class SyncInStep(HazardRule):
    code = "PFT201"
    name = "sync-in-step"
    gpu_only = True
    fix_title = ("Find what needs the value on the host and compute it on the device "
                 "(fixed output sizes, no host reads in the step)")
    after = "# keep the value on the device; read results back every N steps or after the loop"

    def accepts(self, ctx: Context, hazard: sm.Hazard) -> bool:
        # Syncs the trace attributes to no specific cause (nonzero, unique, `.item()`, copies,
        # ... each have their own rule): an op that waited for the device for its own reasons.
        return hazard.cause is None and bool(hazard.sync_rows)

    def describe(self, group: Group, hazards: list[sm.Hazard]) -> str:
        op = hazards[0].chain[0] if hazards[0].chain else "an op"
        call = hazards[0].chain[-1] if hazards[0].chain else "a sync"
        return f"{op} (→ {call})"
