"""PFT204 boolean-mask-assignment: `t[mask] = values` with a tensor of values, in a step.

## What it detects
Assignment of a tensor through a boolean mask, recorded as `aten::index_put_` whose indices
come from `aten::nonzero` — typically `t[mask] = other[mask]` or `t[mask] = values`.

## Why is it slow?
`index_put_` turns the mask into index lists with `nonzero`, whose size depends on the data:
the host copies the count back and waits until the device has finished everything queued
before (`cudaStreamSynchronize`). `t[mask] = other[mask]` pays twice (the read is a
boolean-mask index too).

## Example
```python
pred[invalid] = fallback[invalid]
scores[keep] = new_scores[keep]
```

## Use instead
```python
pred = torch.where(invalid, fallback, pred)      # elementwise select: no sync
scores = torch.where(keep, new_scores, scores)
```

## Options
`error_share` (default 0.05): error when the measured cost is at least this share of a step.

## Known problems
`t[mask] = 0` with a Python scalar takes PyTorch's `masked_fill_` fast path and does not sync;
it is not reported. `torch.where` returns a new tensor: other references to the old one keep
the old values, so the rewrite is marked unsafe.
"""

from __future__ import annotations

from perftune.engine.attribution import SiteMatcher
from perftune.engine.context import Context
from perftune.engine.hazards import HazardRule
from perftune.trace import sync_metrics as sm


class BooleanMaskAssignment(HazardRule):
    code = "PFT204"
    name = "boolean-mask-assignment"
    causes = frozenset({sm.SyncCause.BOOLEAN_MASK_ASSIGNMENT})
    # `t[m] = v[m]`: the index `v[m]` feeding the assignment is this finding's too (the
    # rewrite, torch.where, removes both syncs): one cause, one finding.
    supersedes = ("PFT202",)
    fix_title = "Assign through the mask without indexing: masked_fill_ / torch.where"
    after = ("t.masked_fill_(mask, value)        # scalar value, in place\n"
             "t = torch.where(mask, values, t)   # tensor values")

    def explains(self, ctx: Context, hazard: sm.Hazard) -> bool:
        return self.accepts(ctx, hazard) or hazard.row in sm.masked_copy_pairs(ctx.host)

    def site_matcher(self, hazard: sm.Hazard) -> SiteMatcher | None:
        return lambda s: s.kind == "index-store"
