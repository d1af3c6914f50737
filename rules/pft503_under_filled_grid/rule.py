"""PFT503 under-filled-grid: kernels launched with fewer blocks than the GPU has SMs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace import categories as C
from perftune.trace import groups as G
from perftune.trace.device_metrics import batch_size_values, guess_batch_size, step_count
from perftune.trace.kernel_metrics import grid_fill_columns, user_op_of_kernel
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
        fill = ctx.fact(grid_fill_columns)
        if not len(fill["row"]):
            return
        comm = G.flags_of(fill["name"], C.is_comm_kernel)
        # Vendor-tuned kernels (cuBLAS, cuDNN, CUTLASS, NCCL, flash attention) pick their grids
        # on purpose; collectives (NCCL, NVLS / multimem all-reduce) fill the SMs they need.
        keep = (~comm & ~fill["library"].astype(bool) & ~fill["triton"].astype(bool)
                & (fill["dur"] >= self.config["min_kernel_us"]))
        usable = {c: v[keep] for c, v in fill.items()}
        total_us = float(np.nansum(fill["dur"]))
        under = usable["fill"] <= self.config["max_fill"]
        waves = usable["waves"]
        tail = ((usable["fill"] >= 1.0) & (waves > 1.0) & (waves <= self.config["max_tail_waves"])
                & (usable["wave_efficiency"] < self.config["tail_efficiency"]))
        pick = under | tail
        if not pick.any():
            return
        sel = {c: v[pick] for c, v in usable.items()}
        efficiency = np.where(sel["fill"] < 1.0, sel["fill"], sel["wave_efficiency"])
        lost_us = sel["dur"] * (1.0 - efficiency)
        steps = max(1, step_count(trace))
        bad_us = float(np.nansum(sel["dur"]))
        ms = bad_us / 1000.0 / steps
        share = bad_us / total_us if total_us > 0 else 0.0
        if ms < self.config["min_ms_per_step"] or share < self.config["min_share"]:
            return
        # pandas' groupby("name").agg(...).sort_values("lost", ascending=False), bit for bit
        codes, names = G.group_codes([sel["name"]], sort=True)
        k = len(names)
        us = G.group_sum(codes, sel["dur"], k)
        lost = G.group_sum(codes, lost_us, k)
        calls = G.group_size(codes, k)
        blocks = G.group_median(codes, sel["blocks"], k)
        fills = G.group_median(codes, sel["fill"], k)
        waves_m = G.group_median(codes, sel["waves"], k)
        first_row = G.group_first(codes, sel["row"], k)
        order = G.sort_desc(lost).tolist()
        top = order[0]
        op = user_op_of_kernel(trace, int(first_row[top]), ctx.tables)
        sms = int(fill["sms"][0])
        saving = float(np.nansum(lost_us)) / 1000.0 / steps
        evidence: dict[str, Any] = {
            "sms": sms, "ms_per_step": round(ms, 3), "share_of_kernel_time": round(share, 4),
            "under_filled_kernels": int(np.count_nonzero(under)), "tail_kernels": int(np.count_nonzero(tail)),
            "top_kernels": [{"kernel": str(names[g])[:160], "ms_per_step": round(float(us[g]) / 1000.0 / steps, 3),
                             "calls_per_step": round(float(calls[g]) / steps, 1), "blocks": int(blocks[g]),
                             "fill": round(float(fills[g]), 3), "waves": round(float(waves_m[g]), 3)}
                            for g in order[:5]],
        }
        message = (f"{ms:.2f} ms per step ({share:.0%} of kernel time) runs in kernels that leave "
                   f"SMs idle: e.g. {str(names[top])[:60]} launches {int(blocks[top])} blocks on "
                   f"{sms} SMs")
        knobs: dict[str, list[Any]] = {}
        batch = batch_size_values(guess_batch_size(trace), "up")
        if batch:
            knobs["batch_size"] = batch
        yield self.finding(
            message, location=ctx.location_of(user_frame_row(ctx.host, op)) if op is not None else None,
            evidence=evidence, est_saving_ms_per_step=saving, count=int(np.count_nonzero(pick)),
            op_chain=tuple(trace.op_chain(op)) if op is not None else (),
            suggestion=Suggestion(
                title="Give every SM work: batch the work into fewer, larger launches, raise the "
                      "batch size, or let torch.compile(mode=\"max-autotune\") pick tiles",
                knobs=knobs))
