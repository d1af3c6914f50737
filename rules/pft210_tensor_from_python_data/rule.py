"""PFT210 tensor-from-python-data: `torch.tensor(python_list, device=...)` in every step.

## What it detects
`torch.tensor` / `torch.as_tensor` / `torch.LongTensor(...)` built from Python data
(`aten::lift_fresh`) and copied host→device, inside a step.

## Why is it slow?
The data is first materialised in pageable host memory and then copied with a synchronous
host→device copy; the Python-to-tensor conversion itself walks the list element by element.
Doing it every step adds a blocking copy and CPU work to each step.

## Example
```python
weights = torch.tensor([0.2, 0.3, 0.5], device="cuda")
```

## Use instead
```python
WEIGHTS = torch.tensor([0.2, 0.3, 0.5], device="cuda")  # once, outside the loop
# or build it on the device: torch.full / torch.arange / torch.linspace
```

## Options
`error_share` (default 0.05): error when the measured cost is at least this share of a step.

## Known problems
On a CPU trace only calls with an explicit `device=` (or followed by `.to()` / `.cuda()`)
are reported.
"""

from __future__ import annotations

from perftune.engine.attribution import Group, SiteMatcher
from perftune.engine.context import Context
from perftune.engine.hazards import HazardRule, calls
from perftune.trace import sync_metrics as sm


class TensorFromPythonData(HazardRule):
    code = "PFT210"
    name = "tensor-from-python-data"
    causes = frozenset({sm.SyncCause.TENSOR_FROM_PYTHON})
    fix_title = "Build constant tensors once, outside the step (or directly on the device)"
    after = ("WEIGHTS = torch.tensor([...], device=device)   # module level / __init__\n"
             "# in the step: use WEIGHTS")

    def site_matcher(self, hazard: sm.Hazard) -> SiteMatcher | None:
        return calls(hazard.python_call or "tensor")

    def keep_group(self, ctx: Context, group: Group, latent: bool) -> bool:
        if not latent:
            return True
        site, source = group.site, group.location.source or ""
        return (site is not None and "device" in site.keywords) or ".to(" in source \
            or ".cuda(" in source
