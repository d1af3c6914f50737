"""PFT207 host-transfer-in-loop: `.cpu()`, `.numpy()`, `.tolist()` of a device tensor in every
step.

## What it detects
Device→host copies issued by the step (`Memcpy DtoH` under `aten::to`/`aten::copy_`, from
`.cpu()`, `.to("cpu")`, `.numpy()`, `.tolist()`); on a CPU trace, the same python calls made
from the user's step code.

## Why is it slow?
A copy to pageable host memory blocks the host until the device has produced the data and
the copy has finished: the whole queue drains. Metrics, logging or bookkeeping that pull
tensors to the host every step serialise the step.

## Example
```python
preds.extend(logits.argmax(1).cpu().tolist())
```

## Use instead
```python
preds.append(logits.argmax(1))            # keep on the device during the epoch
...
all_preds = torch.cat(preds).cpu()        # one copy after the loop
```

## Options
`error_share` (default 0.05): error when the measured cost is at least this share of a step.

## Known problems
A copy with `non_blocking=True` into pinned memory does not block, but the host must not
read the result before synchronising.
"""

from __future__ import annotations

from perftune.engine.attribution import SiteMatcher
from perftune.engine.hazards import HazardRule, calls
from perftune.trace import sync_metrics as sm


class HostTransferInLoop(HazardRule):
    code = "PFT207"
    name = "host-transfer-in-loop"
    causes = frozenset({sm.SyncCause.HOST_TRANSFER})
    fix_title = "Keep results on the device during the loop; copy to the host once, after it"
    after = ("outputs.append(t.detach())            # on the device\n"
             "# after the loop:\n"
             "host = torch.cat(outputs).cpu()")

    def site_matcher(self, hazard: sm.Hazard) -> SiteMatcher | None:
        if hazard.python_call in sm.HOST_TRANSFER_CALLS:
            return calls(hazard.python_call)
        return calls("cpu", "to", "tolist", "numpy")
