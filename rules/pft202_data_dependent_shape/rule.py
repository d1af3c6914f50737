"""PFT202 data-dependent-shape: an op whose output size depends on the values in a tensor.

## What it detects
`torch.nonzero`, `torch.argwhere`, one-argument `torch.where(cond)`, `torch.masked_select`
and boolean-mask indexing `x[mask]` (recorded as `aten::index` → `aten::nonzero`) inside a
training step.

## Why is it slow?
The size of the result is only known once the device has computed the mask. PyTorch must
allocate the output on the host side, so it copies the count back
(`cudaMemcpyAsync` + `cudaStreamSynchronize`): the host stops queueing kernels until the GPU
has finished *all* work queued before, and the GPU then idles while the host refills the
queue. One such op per step is enough to serialise host and device.

## Example
```python
void = torch.nonzero(target == VOID, as_tuple=True)
target[void] = IGNORE
loss = (per_pixel[valid]).mean()
```

## Use instead
```python
target = torch.where(target == VOID, IGNORE, target)      # or target.masked_fill_(...)
loss = (per_pixel * valid).sum() / valid.sum().clamp(min=1)  # keep shapes static
```

## Evidence
On a GPU trace: the sync calls under the op and their duration, and the device idle time that
follows. On a CPU trace the same ops are reported as latent hazards with their CPU cost.

## Options
`error_share` (default 0.05): report as an error when the measured cost is at least this share
of the median step.

## Known problems
A boolean index that feeds a loss is reported as PFT212 (masked-loss), and `t[m] = v[m]` as
PFT204 (boolean-mask-assignment), instead. Ops on CPU tensors inside a GPU trace are not
reported.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.attribution import Group, SiteMatcher
from perftune.engine.hazards import HazardRule, calls
from perftune.trace import sync_metrics as sm


class DataDependentShape(HazardRule):
    code = "PFT202"
    name = "data-dependent-shape"
    fix_title = ("Keep shapes static: torch.where / masked_fill instead of nonzero and "
                 "boolean-mask indexing")
    after = ("x = torch.where(mask, x, fill)          # instead of x[idx] = ... after nonzero\n"
             "total = (x * mask).sum()                # instead of x[mask].sum()")

    # A boolean index that feeds a loss (PFT212) or is assigned through the same kind of mask
    # (`t[m] = v[m]`, PFT204) is left to those rules: they declare `supersedes = ("PFT202",)`.
    causes = frozenset({sm.SyncCause.DATA_DEPENDENT_SHAPE})

    def site_matcher(self, hazard: sm.Hazard) -> SiteMatcher | None:
        if hazard.kind == "boolean-mask indexing":
            return lambda s: s.kind == "index"
        if hazard.kind == "where(condition)":
            return lambda s: s.kind == "call" and s.name == "where" and s.nargs == 1
        if hazard.kind in {"nonzero", "nonzero_numpy"}:
            return calls("nonzero", "where")
        return calls(hazard.kind)

    def rewrite_params(self, group: Group, hazards: list[sm.Hazard]) -> dict[str, Any]:
        return {}
