"""PFT208 pageable-copy: host→device copies from pageable (not pinned) memory.

## What it detects
On a GPU trace: `Memcpy HtoD (Pageable -> Device)` issued by `.to(device)` / `.cuda()` /
`copy_` in a step. On a CPU trace (latent): `.to(device)` / `.cuda()` of a step's inputs (the first
ops of the step, or right after a DataLoader `__next__`) when the source is not pinned: a
DataLoader without `pin_memory=True`, or tensors the program never pins; and, where the
capture's device provenance saw the copy, of tensors the step made on the host, wherever
they are copied in the step (`labels = torch.eye(n).to(device)` every step).

## Why is it slow?
The GPU's copy engine can only read page-locked memory. From pageable memory the driver first
copies through a pinned staging buffer on the CPU, synchronously: the host blocks for the
whole copy, and the copy cannot overlap with compute. `non_blocking=True` has no effect on
pageable memory.

## Example
```python
loader = DataLoader(dataset, batch_size=64)
for images, labels in loader:
    images = images.to(device)
```

## Use instead
```python
loader = DataLoader(dataset, batch_size=64, pin_memory=True)
for images, labels in loader:
    images = images.to(device, non_blocking=True)   # async, overlaps with compute
```

## Evidence
The copies, their bytes and the time the host was blocked in the copy calls and the syncs
that follow them.

## Options
`error_share` (default 0.05): error when the measured cost is at least this share of a step.

## Known problems
Pinned memory is a limited resource: pin batches (DataLoader `pin_memory=True`), not whole
datasets. On a CPU trace the source memory cannot be seen; the capture's device provenance
records what each `.to(device)` copied: a batch from a DataLoader that asks for pinned memory
(whatever expression asks: `pin_memory=args.pin_mem`) is pinned; a tensor the step made on
the host — a label matrix or mask rebuilt every step, a `torch.cat` of the loader's views — is
pageable wherever it is copied in the step. Without provenance the rule reads the DataLoader's
arguments from the source. Tensors count as pinned when the program pins them in this run or
calls `.pin_memory()` under a test of the device (`if device.type == "cuda":`), the branch a
CPU run never takes.
"""

from __future__ import annotations

from typing import Any

from perftune.documents.capture import BATCH_COPY, PINNED_BATCH_COPY
from perftune.engine.attribution import Group, SiteMatcher
from perftune.engine.context import Context
from perftune.engine.hazards import (
    HazardRule,
    calls,
    dataloader_pinned,
    is_device_move,
    latent_batch_moves,
    move_assignment,
    non_blocking_of,
)
from perftune.engine.types import Severity
from perftune.trace import sync_metrics as sm


class PageableCopy(HazardRule):
    code = "PFT208"
    name = "pageable-copy"
    what = "Host→device copy from pageable memory"
    fix_title = ("Copy from pinned memory with non_blocking=True "
                 "(DataLoader(pin_memory=True) or tensor.pin_memory())")
    after = ("loader = DataLoader(dataset, ..., pin_memory=True)\n"
             "x = x.to(device, non_blocking=True)")

    causes = frozenset({sm.SyncCause.PAGEABLE_COPY})

    def hazards(self, ctx: Context) -> list[sm.Hazard]:
        if ctx.trace.has_device_activity:
            return super().hazards(ctx)
        moves = latent_batch_moves(ctx, sm.SyncCause.PAGEABLE_COPY)
        copied = move_assignment(ctx, sm.device_moves(ctx.host))
        kinds = {h.row: copied[h.row][1] if h.row in copied else None for h in moves}
        # Device provenance says what each move copied where it saw it: a tensor the step made
        # on the host (`torch.cat` of the loader's views) is pageable whatever the loader pins.
        from_loader = [h for h in moves if kinds[h.row] in (BATCH_COPY, PINNED_BATCH_COPY)
                       or (kinds[h.row] is None and sm.follows_dataloader(ctx.host, h.row))]
        others = [h for h in moves if h not in from_loader]
        out = [] if dataloader_pinned(ctx) else from_loader
        # Tensors not from a DataLoader are pageable unless the program pins them itself: in
        # this run (the trace), or on the accelerator only (`if device.type == "cuda": x =
        # x.pin_memory()` — a `.pin_memory()` call in the user's source, not run on a CPU).
        pins = sm.uses_pinned_memory(ctx.host) or _pins_on_the_accelerator(ctx)
        return out + ([] if pins else others)

    def site_matcher(self, hazard: sm.Hazard) -> SiteMatcher | None:
        return calls("to", "cuda", "copy_")

    def keep_group(self, ctx: Context, group: Group, latent: bool) -> bool:
        return not latent or is_device_move(group.site)

    def latent_severity(self, ctx: Context, group: Group, hazards: list[sm.Hazard]) -> Severity:
        # Already non_blocking: the remaining problem (the memory is not pinned) is inferred
        # from the source, not seen in the trace.
        if all(non_blocking_of(ctx.trace, h, group.site) for h in hazards):
            return Severity.INFO
        return Severity.WARNING

    def rewrite_params(self, group: Group, hazards: list[sm.Hazard]) -> dict[str, Any]:
        return {"direction": "HtoD"}


def _pins_on_the_accelerator(ctx: Context) -> bool:
    """Whether the user's code calls `.pin_memory()` under a test of the device
    (`if device.type == "cuda":` / `... if torch.cuda.is_available() else ...`): the branch
    a CPU run never takes, and the batches it copies are pinned on the GPU."""
    import ast

    from perftune.engine.attribution import user_files

    for file in user_files(ctx.trace):
        tree = ctx.source.tree(file)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.If, ast.IfExp)) or "cuda" not in ast.unparse(node.test):
                continue
            body = [node.body] if isinstance(node, ast.IfExp) else node.body
            for part in body:
                for sub in ast.walk(part):
                    if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) \
                            and sub.func.attr == "pin_memory":
                        return True
    return False
