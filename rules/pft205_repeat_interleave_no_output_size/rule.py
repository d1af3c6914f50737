"""PFT205 repeat-interleave-no-output-size: `repeat_interleave` with tensor repeats and no
`output_size`.

## What it detects
`aten::repeat_interleave` called with a tensor of repeat counts and without the
`output_size=` argument, inside a training step.

## Why is it slow?
The output length is `repeats.sum()`, a value that lives on the device. Without
`output_size`, PyTorch reads it back (`.item()` inside the op): a device→host copy and a
`cudaStreamSynchronize` every call.

## Example
```python
token_ids = torch.repeat_interleave(ids, lengths)
```

## Use instead
```python
# The total is usually known on the host already (e.g. the padded batch length).
token_ids = torch.repeat_interleave(ids, lengths, output_size=total_tokens)
```

## Options
`error_share` (default 0.05): error when the measured cost is at least this share of a step.

## Known problems
`output_size` must equal `repeats.sum()` exactly; pass it only when the host knows it.
"""

from __future__ import annotations

from perftune.engine.attribution import Group, SiteMatcher
from perftune.engine.context import Context
from perftune.engine.hazards import HazardRule, calls
from perftune.engine.rewrite import suggestion
from perftune.engine.types import Suggestion
from perftune.trace import sync_metrics as sm


class RepeatInterleaveNoOutputSize(HazardRule):
    code = "PFT205"
    name = "repeat-interleave-no-output-size"
    fix_title = "Pass output_size= (the known total) to repeat_interleave"
    after = "out = torch.repeat_interleave(x, repeats, output_size=total)"

    causes = frozenset({sm.SyncCause.REPEAT_INTERLEAVE})

    def accepts(self, ctx: Context, hazard: sm.Hazard) -> bool:
        if hazard.cause not in self.causes:
            return False
        trace = ctx.trace
        types = trace.input_types(hazard.row) or []
        concrete = trace.concrete_inputs(hazard.row) or []
        if len(types) > 1 and types[1] in ("Scalar", "int"):
            return False  # integer repeats: the size is known on the host
        # output_size is the last argument; a recorded value means it was given.
        return not (len(concrete) >= 4 and str(concrete[-1]) not in ("", "None"))

    def site_matcher(self, hazard: sm.Hazard) -> SiteMatcher | None:
        return calls("repeat_interleave")

    def make_suggestion(self, ctx: Context, group: Group, hazards: list[sm.Hazard],
                        latent: bool) -> Suggestion:
        after = self.after
        src = (group.location.source or "").strip()
        if src.endswith(")") and "repeat_interleave(" in src and "output_size" not in src:
            after = src[:-1] + ", output_size=total)  # total = repeats.sum(), known on the host"
        return suggestion(self.code, self.fix_title, group.location, group.resolved_path,
                          after=after)
