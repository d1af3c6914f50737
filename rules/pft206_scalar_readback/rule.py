"""PFT206 scalar-readback: `.item()`, `float(t)`, `int(t)` or `if t:` on a device tensor
inside a training step.

## What it detects
`aten::item`, `aten::_local_scalar_dense` and `aten::is_nonzero` (truth tests such as
`if t.sum() > 0:`) called from the step, i.e. a tensor value read by Python — also
`torch.tensor([loss, acc])` of device tensors, which reads each element back.

## Why is it slow?
Python can only see the number after the device has computed it: the read is a
device→host copy plus a `cudaStreamSynchronize`, so the host stops queueing work and the
GPU idles while the queue refills. Logging `loss.item()` every step costs one such stall per
step; a data-dependent `if` costs one each time it is evaluated.

## Example
```python
running += loss.item()
if grad_norm > max_norm:
    ...
```

## Use instead
```python
running += loss.detach()              # accumulate on the device
if step % log_every == 0:
    print(float(running) / log_every)  # read back once every N steps
grad = torch.where(grad_norm > max_norm, grad * scale, grad)  # decide on the device
```

## Evidence
On a GPU trace: the chain (e.g. aten::is_nonzero → aten::item → aten::_local_scalar_dense →
cudaMemcpyAsync → cudaStreamSynchronize), the measured wait and the device idle after it.

## Options
`error_share` (default 0.05): error when the measured cost is at least this share of a step.

## Known problems
Scalar reads inside the DataLoader, the optimizer's step counters and the profiler run on CPU
tensors even in GPU jobs and are not reported on CPU traces.
"""

from __future__ import annotations

from perftune.engine.attribution import SiteMatcher
from perftune.engine.hazards import HazardRule, calls
from perftune.trace import sync_metrics as sm


class ScalarReadback(HazardRule):
    code = "PFT206"
    name = "scalar-readback"
    causes = frozenset({sm.SyncCause.SCALAR_READBACK})
    fix_title = "Keep the value on the device; read it back every N steps, not every step"
    after = ("running += loss.detach()                 # no sync\n"
             "if step % 100 == 0:\n"
             "    print(float(running) / 100)         # one sync every 100 steps")

    def site_matcher(self, hazard: sm.Hazard) -> SiteMatcher | None:
        if hazard.python_call == "item" or hazard.kind == ".item()":
            return calls("item")
        if hazard.kind == "bool(tensor)":
            return lambda s: s.kind == "test" or (s.kind == "call" and s.name == "bool")
        return lambda s: (s.kind == "call" and s.name in {"float", "int", "item", "bool"}) \
            or s.kind == "test"
