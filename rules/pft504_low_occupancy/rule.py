"""PFT504 low-occupancy: hand-written or generated kernels that keep few warps per SM."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace import categories as C
from perftune.trace import groups as G
from perftune.trace.device_metrics import step_count
from perftune.trace.kernel_metrics import grid_fill_columns, user_op_of_kernel
from perftune.trace.sync_metrics import user_frame_row

_ADVICE = {
    "registers": "use fewer registers per thread (`__launch_bounds__`, `-maxrregcount`, smaller "
                 "tiles / fewer accumulators per thread, fewer num_warps·BLOCK in Triton)",
    "shared memory": "use less shared memory per block (smaller tiles, fewer pipeline stages)",
    "block size": "launch larger blocks (at least 128 threads; 64-thread blocks hit the "
                  "blocks-per-SM limit first)",
    "blocks per SM": "launch larger blocks: the SM's limit on resident blocks is reached first",
}


class LowOccupancy(Rule):
    """PFT504 low-occupancy: hand-written or generated kernels that keep few warps per SM.

    ## What it detects
    Kernels — custom CUDA extensions, Triton, elementwise and reduction kernels; not the vendor
    GEMM/convolution libraries, which trade occupancy for tiling on purpose — whose theoretical
    occupancy (resident warps per SM over the maximum) is low, computed from the trace's
    block size, registers per thread and shared memory per block against the device's limits,
    with the resource that limits it.

    ## Why is it slow?
    A GPU hides memory latency by switching between resident warps. With few warps per SM,
    every load stalls the SM: memory-bound kernels in particular reach only a fraction of the
    bandwidth. Occupancy is capped by whichever of registers, shared memory or block count runs
    out first.

    ## Example
    ```python
    @triton.jit
    def kernel(...):          # BLOCK=4096, num_warps=16: 255 registers per thread
        ...
    ```

    ## Use instead
    ```python
    # smaller tiles / fewer warps, or let the autotuner choose
    @triton.autotune(configs=[triton.Config({"BLOCK": b}, num_warps=w) for b in (512, 1024)
                              for w in (4, 8)], key=["n"])
    ```

    ## Evidence
    Per kernel: time per step, block size, registers per thread, shared memory per block,
    theoretical occupancy and its limiter, the profiler's achieved-occupancy estimate.

    ## Options
    `max_occupancy` (0.25): theoretical occupancy at or below this is low. `min_kernel_us`
    (10), `min_ms_per_step` (0.2). `target_occupancy` (0.5): used for the rough estimate of
    what raising occupancy could save.

    ## Known problems
    Occupancy is a means, not a goal: some kernels are fastest at low occupancy with
    instruction-level parallelism. Treat the estimate as an upper bound.
    """

    code: ClassVar[str] = "PFT504"
    name: ClassVar[str] = "low-occupancy"
    severity: ClassVar[Severity] = Severity.INFO
    options: ClassVar[dict[str, Any]] = {"max_occupancy": 0.25, "min_kernel_us": 10.0,
                                         "min_ms_per_step": 0.2, "target_occupancy": 0.5}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        fill = ctx.fact(grid_fill_columns)
        if not len(fill["row"]):
            return
        comm = G.flags_of(fill["name"], C.is_comm_kernel)
        occ = fill["theoretical_occupancy"].astype(np.float64)
        keep = (~comm & ~fill["library"].astype(bool) & (fill["fill"] >= 1.0)
                & (fill["dur"] >= self.config["min_kernel_us"])
                & (occ <= self.config["max_occupancy"]))
        if not keep.any():
            return
        sel = {c: v[keep] for c, v in fill.items()}
        steps = max(1, step_count(trace))
        target = self.config["target_occupancy"]
        groups = [(name, {c: v[idx] for c, v in sel.items()}) for name, idx in G.split_by(sel["name"])]
        for name, g in sorted(groups, key=lambda kv: -float(np.nansum(kv[1]["dur"]))):
            us = float(np.nansum(g["dur"]))
            ms = us / 1000.0 / steps
            if ms < self.config["min_ms_per_step"]:
                continue
            first = {c: v[0] for c, v in g.items()}
            theo = float(first["theoretical_occupancy"])
            limiter = str(first["limiter"])
            saving = ms * max(0.0, 1.0 - theo / target) * 0.5
            op = user_op_of_kernel(trace, int(first["row"]), ctx.tables)
            occupancy = g["occupancy"].astype(np.float64)
            achieved = float(np.nanmedian(occupancy)) if (~np.isnan(occupancy)).any() else None
            evidence: dict[str, Any] = {
                "kernel": str(name)[:200], "calls": len(g["row"]), "ms_per_step": round(ms, 3),
                "threads_per_block": int(first["threads"]), "registers_per_thread": float(first["registers"]),
                "shared_memory_per_block": float(first["shared_memory"]),
                "resident_blocks_per_sm": int(first["resident_blocks_per_sm"]),
                "theoretical_occupancy": round(theo, 4), "limiter": limiter,
                "achieved_occupancy_pct": round(achieved, 1) if achieved is not None and np.isfinite(achieved) else None,
            }
            message = (f"{str(name)[:80]} runs at {theo:.0%} theoretical occupancy, limited by "
                       f"{limiter} ({int(first['threads'])} threads/block, "
                       f"{first['registers']:.0f} registers/thread, {first['shared_memory']:.0f} B "
                       f"shared/block); {ms:.3f} ms per step")
            yield self.finding(
                message, location=ctx.location_of(user_frame_row(ctx.host, op)) if op is not None else None,
                evidence=evidence, est_saving_ms_per_step=saving, count=len(g["row"]),
                op_chain=tuple(trace.op_chain(op)) if op is not None else (),
                suggestion=Suggestion(title=f"Raise occupancy: {_ADVICE.get(limiter, 'rebalance the launch configuration')}"))
