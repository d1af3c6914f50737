"""PFT503 under-filled-grid: kernels launched with fewer blocks than the GPU has SMs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace import categories as C
from perftune.trace.device_metrics import batch_size_values, guess_batch_size, step_count
from perftune.trace.kernel_metrics import grid_fill, user_op_of_kernel
from perftune.trace.sync_metrics import user_frame_row


class UnderFilledGrid(Rule):
    """PFT503 under-filled-grid: kernels launched with fewer blocks than the GPU has SMs.

    ## What it detects
    Kernels whose grid has fewer thread blocks than the GPU has streaming multiprocessors
    (SMs), and kernels that end with a thin last wave (say 1.1 waves: the second wave keeps a
    tenth of the SMs busy), weighted by the time they take. Launch dimensions come from the
    trace (`grid`, `block`); SM count and limits from `deviceProperties`.

    ## Why is it slow?
    A block runs on one SM. With 24 blocks on an 80-SM GPU, 56 SMs idle for the kernel's whole
    duration; the kernel takes as long as one SM needs for its share. Small batches, small
    hidden sizes and per-sample loops produce such kernels.

    ## Example
    ```python
    for sample in batch:                 # batch of 1 per kernel: a handful of blocks each
        out.append(layer(sample[None]))
    ```

    ## Use instead
    ```python
    out = layer(batch)                   # one launch with enough blocks for every SM
    ```
    Otherwise a larger batch, fused or compiled kernels (`torch.compile(mode="max-autotune")`),
    or running independent work concurrently on another stream.

    ## Evidence
    SM count, time per step in under-filled and tail-heavy kernels, the top kernels with
    their blocks, fill (blocks / SMs) and waves.

    ## Options
    `min_kernel_us` (5): shorter kernels are left to PFT302. `max_fill` (0.75): blocks / SMs
    at or below this is under-filled. `min_share` (0.1): share of kernel time.
    `min_ms_per_step` (0.2). `tail_efficiency` (0.6): a wave efficiency below
    this counts as a thin tail (for kernels of at most `max_tail_waves`, 4, waves).
    """

    code: ClassVar[str] = "PFT503"
    name: ClassVar[str] = "under-filled-grid"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"min_kernel_us": 5.0, "min_share": 0.1,
                                         "min_ms_per_step": 0.2, "tail_efficiency": 0.6,
                                         "max_tail_waves": 4.0, "max_fill": 0.75}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        fill = ctx.fact(grid_fill)
        if fill.empty:
            return
        names = fill["name"]
        comm = names.map(C.is_comm_kernel).to_numpy(dtype=bool)
        # Vendor-tuned kernels (cuBLAS, cuDNN, CUTLASS, NCCL, flash attention) pick their grids
        # on purpose; collectives (NCCL, NVLS / multimem all-reduce) fill the SMs they need.
        usable = fill[~comm & ~fill["library"].to_numpy(dtype=bool)
                      & ~fill["triton"].to_numpy(dtype=bool)
                      & (fill["dur"].to_numpy() >= self.config["min_kernel_us"])]
        total_us = float(fill["dur"].sum())
        under = usable["fill"].to_numpy() <= self.config["max_fill"]
        waves = usable["waves"].to_numpy()
        tail = ((usable["fill"].to_numpy() >= 1.0) & (waves > 1.0) & (waves <= self.config["max_tail_waves"])
                & (usable["wave_efficiency"].to_numpy() < self.config["tail_efficiency"]))
        sel = usable[under | tail].copy()
        if sel.empty:
            return
        sel["efficiency"] = np.where(sel["fill"].to_numpy() < 1.0, sel["fill"].to_numpy(),
                                     sel["wave_efficiency"].to_numpy())
        sel["lost_us"] = sel["dur"].to_numpy() * (1.0 - sel["efficiency"].to_numpy())
        steps = max(1, step_count(trace))
        bad_us = float(sel["dur"].sum())
        ms = bad_us / 1000.0 / steps
        share = bad_us / total_us if total_us > 0 else 0.0
        if ms < self.config["min_ms_per_step"] or share < self.config["min_share"]:
            return
        agg = (sel.groupby("name").agg(us=("dur", "sum"), lost=("lost_us", "sum"), calls=("row", "size"),
                                       blocks=("blocks", "median"), fill=("fill", "median"),
                                       waves=("waves", "median"), row=("row", "first"))
               .sort_values("lost", ascending=False))
        top = agg.iloc[0]
        op = user_op_of_kernel(trace, int(top["row"]), ctx.tables)
        sms = int(fill["sms"].iloc[0])
        saving = float(sel["lost_us"].sum()) / 1000.0 / steps
        evidence: dict[str, Any] = {
            "sms": sms, "ms_per_step": round(ms, 3), "share_of_kernel_time": round(share, 4),
            "under_filled_kernels": int(np.count_nonzero(under)), "tail_kernels": int(np.count_nonzero(tail)),
            "top_kernels": [{"kernel": str(n)[:160], "ms_per_step": round(float(r["us"]) / 1000.0 / steps, 3),
                             "calls_per_step": round(float(r["calls"]) / steps, 1), "blocks": int(r["blocks"]),
                             "fill": round(float(r["fill"]), 3), "waves": round(float(r["waves"]), 3)}
                            for n, r in agg.head(5).iterrows()],
        }
        message = (f"{ms:.2f} ms per step ({share:.0%} of kernel time) runs in kernels that leave "
                   f"SMs idle: e.g. {str(agg.index[0])[:60]} launches {int(top['blocks'])} blocks on "
                   f"{sms} SMs")
        knobs: dict[str, list[Any]] = {}
        batch = batch_size_values(guess_batch_size(trace), "up")
        if batch:
            knobs["batch_size"] = batch
        yield self.finding(
            message, location=ctx.location_of(user_frame_row(ctx.host, op)) if op is not None else None,
            evidence=evidence, est_saving_ms_per_step=saving, count=len(sel),
            op_chain=tuple(trace.op_chain(op)) if op is not None else (),
            suggestion=Suggestion(
                title="Give every SM work: batch the work into fewer, larger launches, raise the "
                      "batch size, or let torch.compile(mode=\"max-autotune\") pick tiles",
                knobs=knobs))
