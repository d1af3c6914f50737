"""PFT212 masked-loss: boolean-mask indexing that only selects which elements a loss sees.

## What it detects
`aten::index` with a boolean mask (→ `aten::nonzero`) whose result goes straight into a loss
(`cross_entropy`, `nll_loss`, ...) in the same function a few ops later, e.g.
`F.cross_entropy(logits[valid], target[valid])`.

## Why is it slow?
Each masked index is a `nonzero`: the host copies the number of selected elements back and
waits for the device (`cudaStreamSynchronize`), twice per loss call (logits and target). The
loss functions already know how to skip elements: `ignore_index`.

## Example
```python
valid = target != IGNORE
loss = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], target[valid])
```

## Use instead
```python
loss = F.cross_entropy(logits, target, ignore_index=IGNORE)   # or CrossEntropyLoss(ignore_index=...)
```

## Options
`error_share` (default 0.05): error when the measured cost is at least this share of a step.

## Known problems
With `weight=` and mean reduction both forms divide by the summed weights of the kept
elements, so they agree; a mask that is not `target != value` needs the target set to the
ignore value first (`torch.where(mask, target, IGNORE)`).
"""

from __future__ import annotations

from typing import Any

from perftune.engine.attribution import Group, SiteMatcher
from perftune.engine.context import Context
from perftune.engine.hazards import HazardRule
from perftune.trace import sync_metrics as sm


class MaskedLoss(HazardRule):
    code = "PFT212"
    name = "masked-loss"
    what = "Boolean-mask indexing into a loss"
    fix_title = "Let the loss skip elements: ignore_index= instead of boolean-mask indexing"
    after = "loss = F.cross_entropy(logits, target, ignore_index=IGNORE)"

    # A masked loss is a boolean-mask index too: one cause, one finding (this one).
    supersedes = ("PFT202",)

    def accepts(self, ctx: Context, hazard: sm.Hazard) -> bool:
        return hazard.kind == "boolean-mask indexing" and hazard.row in sm.masked_loss_pairs(ctx.host)

    def site_matcher(self, hazard: sm.Hazard) -> SiteMatcher | None:
        return lambda s: s.kind == "call" and s.masked_args

    def rewrite_params(self, group: Group, hazards: list[sm.Hazard]) -> dict[str, Any]:
        return {}
