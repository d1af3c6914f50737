"""PFT210 tensor-from-python-data: `torch.tensor(python_list, device=...)` in every step.

## What it detects
`torch.tensor` / `torch.as_tensor` / `torch.LongTensor(...)` / `t.new_tensor(...)` built from Python data
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
are reported, and `t.new_tensor([...])` where the capture's device provenance saw `t` come
from the model or a `.to(device)` (it lands on `t`'s device).
"""

from __future__ import annotations

from perftune.engine.attribution import Group, SiteMatcher
from perftune.engine.context import Context
from perftune.engine.hazards import HazardRule, calls, same_file
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
        if site is not None and site.name == "new_tensor":
            return _tagged_receiver(ctx, group)
        return (site is not None and "device" in site.keywords) or ".to(" in source \
            or ".cuda(" in source


def _tagged_receiver(ctx: Context, group: Group) -> bool:
    """`t.new_tensor([...])` lands on t's device: on a CPU run a hazard where the capture's
    device provenance saw t come from the model or a `.to(device)` at that line; without
    provenance, kept."""
    doc = ctx.provenance
    if doc is None or not doc.enabled:
        return True
    loc = group.location
    return any(s.call == "new_tensor" and s.tagged and s.line == loc.line
               and same_file(s.file, loc.file or "") for s in doc.sites)
