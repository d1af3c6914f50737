"""PFT403 memory-near-capacity: the allocator's peak is close to the device's memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace import device_specs
from perftune.trace.device_metrics import batch_size_values, fmt_bytes, guess_batch_size
from perftune.trace.memory_metrics import device_memory_peaks, op_at
from perftune.trace.sync_metrics import user_frame_row


class MemoryNearCapacity(Rule):
    """PFT403 memory-near-capacity: the allocator's peak is close to the device's memory.

    ## What it detects
    A training step whose peak device memory — the caching allocator's `Total Allocated` /
    `Total Reserved` from the `[memory]` events of a `profile_memory=True` trace — comes within
    `threshold` of the GPU's memory (`totalGlobalMem` in the trace's device properties).

    ## Why is it slow?
    Near capacity the caching allocator starts to fail allocations, frees its cache
    (`cudaFree` synchronises the device) and retries; fragmentation makes it worse. The next
    larger batch or sequence length runs out of memory, so the step cannot grow to use the GPU
    better. Activation memory is usually most of the peak, and it can be traded for compute.

    ## Example
    ```python
    logits = model(tokens)                  # all activations of all layers kept for backward
    loss = F.cross_entropy(logits, labels)  # fp32 activations everywhere
    ```

    ## Use instead
    ```python
    from torch.utils.checkpoint import checkpoint
    h = checkpoint(block, h, use_reentrant=False)          # recompute a block's activations
    with torch.autocast("cuda", dtype=torch.bfloat16):     # half the activation bytes
        logits = model(tokens)
    ```
    `perftune tune --from-findings` searches checkpoint placement, precision and batch size.

    ## Evidence
    Peak allocated and reserved bytes, device capacity and their shares, the op running at the
    peak, the number of memory events.

    ## Options
    `threshold` (0.9): share of device memory that counts as near capacity.
    """

    code: ClassVar[str] = "PFT403"
    name: ClassVar[str] = "memory-near-capacity"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"threshold": 0.9}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        for peak in ctx.fact(device_memory_peaks):
            if not peak.capacity:
                continue
            share = max(peak.peak_allocated, peak.peak_reserved) / peak.capacity
            if share < self.config["threshold"]:
                continue
            op = op_at(trace, peak.rank, peak.peak_ts)
            location = ctx.location_of(user_frame_row(ctx.host, op)) if op is not None else None
            props = trace.device_props(peak.rank, peak.device_id) or (
                trace.device_properties[0] if trace.device_properties else None)
            evidence: dict[str, Any] = {
                "rank": peak.rank, "device": peak.device_id, "device_name": peak.device_name,
                "capacity_bytes": peak.capacity, "peak_allocated_bytes": peak.peak_allocated,
                "peak_reserved_bytes": peak.peak_reserved,
                "allocated_share": round(peak.peak_allocated / peak.capacity, 4),
                "reserved_share": round(peak.peak_reserved / peak.capacity, 4),
                "memory_events": peak.events, "peak_at_ms": round(peak.peak_ts / 1000.0, 3),
                "op_at_peak": trace.op_chain(op) if op is not None else None,
            }
            precision = ["bf16"] if device_specs.supports_bf16(props) else ["fp16"]
            knobs: dict[str, list[Any]] = {"checkpoint": ["none", "every:2", "all"],
                                           "precision": ["fp32", *precision]}
            batch = batch_size_values(guess_batch_size(trace), "down")
            if batch:
                knobs["batch_size"] = batch
            message = (f"peak device memory {fmt_bytes(max(peak.peak_allocated, peak.peak_reserved))}"
                       f" is {share:.0%} of the {fmt_bytes(peak.capacity)} on "
                       f"{peak.device_name or 'the device'} (allocated "
                       f"{fmt_bytes(peak.peak_allocated)}, reserved {fmt_bytes(peak.peak_reserved)})")
            severity = Severity.ERROR if share >= 0.98 else Severity.WARNING
            yield self.finding(
                message, location=location, evidence=evidence, severity=severity, rank=peak.rank,
                op_chain=tuple(evidence["op_at_peak"] or ()),
                suggestion=Suggestion(
                    title="Free activation memory: activation checkpointing of repeated blocks, "
                          "bf16/fp16 autocast, or a smaller batch with gradient accumulation",
                    after=("h = torch.utils.checkpoint.checkpoint(block, h, use_reentrant=False)\n"
                           "with torch.autocast(\"cuda\", dtype=torch.bfloat16):\n"
                           "    loss = model(x)"),
                    knobs=knobs))
