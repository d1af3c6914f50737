"""PFT211 explicit-synchronize: `torch.cuda.synchronize()` (or a stream/event wait) inside the
step.

## What it detects
`cudaDeviceSynchronize`, `cudaStreamSynchronize` and `cudaEventSynchronize` called directly
from Python — not from inside an ATen op — during a step: `torch.cuda.synchronize()`,
`stream.synchronize()`, `event.synchronize()`.

## Why is it slow?
The host stops until the device has finished everything, then the device idles until the
host has queued the next kernels. Usually left over from timing code; the step is correct
without it.

## Example
```python
loss.backward()
torch.cuda.synchronize()
t1 = time.perf_counter()
```

## Use instead
```python
start.record(); ...; end.record()   # CUDA events time the device without stopping the host
# read start.elapsed_time(end) after the loop (or every N steps)
```

## Options
`error_share` (default 0.05): error when the measured cost is at least this share of a step.

## Known problems
A synchronize that orders work on two streams, or precedes reading host-visible results, is
needed; the rewrite (deleting the line) is marked unsafe.
"""

from __future__ import annotations

from perftune.engine.attribution import Group, SiteMatcher
from perftune.engine.hazards import HazardRule, calls
from perftune.trace import sync_metrics as sm


class ExplicitSynchronize(HazardRule):
    code = "PFT211"
    name = "explicit-synchronize"
    causes = frozenset({sm.SyncCause.EXPLICIT_SYNCHRONIZE})
    gpu_only = True
    fix_title = "Remove the synchronize from the step; time with CUDA events instead"
    after = ("start = torch.cuda.Event(enable_timing=True); end = torch.cuda.Event(enable_timing=True)\n"
             "start.record(); ...; end.record()   # read start.elapsed_time(end) later")

    def site_matcher(self, hazard: sm.Hazard) -> SiteMatcher | None:
        return calls("synchronize")

    def describe(self, group: Group, hazards: list[sm.Hazard]) -> str:
        call = hazards[0].chain[-1] if hazards[0].chain else "a synchronize"
        return f"An explicit {call}"
