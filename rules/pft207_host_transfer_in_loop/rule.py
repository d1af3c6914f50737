"""PFT207 host-transfer-in-loop: `.cpu()`, `.numpy()`, `.tolist()` of a device tensor in every
step.

## What it detects
Device→host copies issued by the step (`Memcpy DtoH` under `aten::to`/`aten::copy_`, from
`.cpu()`, `.to("cpu")`, `.numpy()`, `.tolist()`); on a CPU trace, the same python calls made
from the user's step code. `.cpu()` and `.numpy()` of a CPU tensor are no-ops that leave no
event in a CPU trace: there the capture's device provenance (which tensors would be on the
accelerator) says where the step moves device data to the host — `.cpu()`, `.numpy()`, and
`.to("cpu")` where the source names the host (one finding per line: `.cpu().numpy()` is one
copy) — where a library op copies device arguments to the host before it starts
(`F.ctc_loss` given device length tensors), and where a library function copies device data
to the host itself (`pad_packed_sequence` of a batch packed with `enforce_sorted=False` reads
its `unsorted_indices` back).

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

from collections.abc import Iterator
from typing import Any

from perftune.engine.attribution import SiteMatcher
from perftune.engine.context import Context
from perftune.engine.hazards import LATENT_NOTE, HazardRule, calls
from perftune.engine.rewrite import suggestion
from perftune.engine.types import Finding, Location, Severity
from perftune.trace import sync_metrics as sm

# Calls that are no-ops on a CPU tensor (no op in a CPU trace), recorded by provenance
# (`.to("cpu")` is recorded as `cpu`).
_NO_OP_ON_CPU = frozenset({"cpu", "numpy"})
# Library ops that copy some of their tensor arguments to the host before they start (the
# capture's provenance records which ran on device data): what they read, and the fix.
_READS_ARGUMENTS = {
    "ctc_loss": ("its length tensors (the tensor-lengths form of `ctc_loss` copies them to the "
                 "host with `.to('cpu')` before it starts)",
                 "Keep the CTC lengths on the host: pass the DataLoader's CPU length tensors (or "
                 "Python lists) as input_lengths/target_lengths instead of device tensors",
                 "loss = F.ctc_loss(log_probs, targets, input_lengths.cpu(), target_lengths.cpu())"
                 "  # lengths computed on the host"),
}

# Library functions whose own `.cpu()` reads device data back (recorded by provenance with the
# function as `via`): what they copy, and the fix at the user's call.
_LIBRARY_READS = {
    "torch.nn.utils.rnn.pad_packed_sequence": (
        "the PackedSequence's `unsorted_indices` (with `enforce_sorted=False` they live on the "
        "data's device; `pad_packed_sequence` copies them to the host with `.cpu()` to reorder "
        "the lengths)",
        "Sort the batch by length in the collate function (descending) and pack with "
        "enforce_sorted=True: the PackedSequence then has no indices to read back",
        "# collate: order = lengths.argsort(descending=True); batch = batch[order] ...\n"
        "packed = pack_padded_sequence(embedded, lengths, enforce_sorted=True)"),
}


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

    def check(self, ctx: Context) -> Iterator[Finding]:
        found = list(super().check(ctx))
        yield from found
        yield from self._recorded_only(ctx, {(f.location.file, f.location.line) for f in found})

    def _recorded_only(self, ctx: Context, known: set[tuple[str | None, int | None]]) -> Iterator[Finding]:
        """On a CPU run: `.cpu()` / `.numpy()` of device-bound tensors that provenance saw in
        the user's step code (the trace has no event for them on a CPU tensor)."""
        doc = ctx.provenance
        if doc is None or not doc.enabled or ctx.trace.has_device_activity or not ctx.trace.steps:
            return
        steps = max(1, doc.steps)
        # one finding per line: `.cpu().numpy()` is one copy to the host, recorded twice
        lines: dict[tuple[str, int], list[Any]] = {}
        for site in doc.sites:
            reads = site.call in _READS_ARGUMENTS
            library = site.call in _NO_OP_ON_CPU and site.via in _LIBRARY_READS
            if not (site.call in _NO_OP_ON_CPU or reads) or site.tagged <= 0 \
                    or (site.via and not reads and not library):
                continue
            if site.tagged / steps < 0.5:
                continue  # not every step (a log line every N iterations)
            lines.setdefault((site.file, site.line), []).append(site)
        for (file, line), sites in lines.items():
            if any(f is not None and (f == file or file.endswith("/" + f.lstrip("./")))
                   and at == line for f, at in known):
                continue
            site = next((x for x in sites if x.call in _READS_ARGUMENTS or x.via in _LIBRARY_READS),
                        sites[0])
            tagged = max(x.tagged for x in sites)
            per_step = tagged / steps
            source = ctx.source.line(file, line)
            location = Location(file=file, line=line, function=site.function,
                                source=source.rstrip() if source is not None else None)
            if site.call in _READS_ARGUMENTS:
                what, title, after = _READS_ARGUMENTS[site.call]
                message = (f"`{site.call}` reads {what}: device tensors there are copied to the host "
                           f"{LATENT_NOTE} ({per_step:.0f}× per step; recorded by device provenance)")
                kind = site.call
            elif site.via in _LIBRARY_READS:
                what, title, after = _LIBRARY_READS[site.via]
                short = site.via.rsplit(".", 1)[-1]
                message = (f"`{short}` copies {what} to the host: the copy {LATENT_NOTE} ({per_step:.0f}× per "
                           "step; recorded by device provenance)")
                kind = short
            else:
                calls_ = ".".join(f"{x.call}()" for x in sorted(sites, key=lambda x: x.order))
                message = (f"`.{calls_}` of a device tensor {LATENT_NOTE} ({per_step:.0f}× per step; "
                           "recorded by device provenance: on a CPU tensor it is a no-op this trace "
                           "cannot show)")
                title, after, kind = self.fix_title, self.after, f".{calls_}"
            yield self.finding(
                message, location=location, severity=Severity.WARNING,
                suggestion=suggestion(self.code, title, location, ctx.source.resolve(file), after=after),
                evidence={"kind": kind, "per_step": round(per_step, 3),
                          "steps": steps, "source": "provenance"},
                est_saving_ms_per_step=0.0, count=tagged, latent=True)

