"""PFT509 under-filled-batch: a GPU busy with matrix kernels that reach a small part of its
peak, with memory to spare: a larger batch would fill it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.analysis.efficiency import matrix_columns
from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace.sync_metrics import user_frame_row


class UnderFilledBatch(Rule):
    """PFT509 under-filled-batch: small matrix kernels with memory to spare on a busy GPU.

    ## What it detects
    A compute-bound GPU step (analysis/efficiency.py: the device computes most of the step,
    matrix kernels take a large part of it) whose matrix kernels reach less than `max_efficiency`
    of the attainable roof on average, while the allocator's peak in the trace
    (`profile_memory`) leaves at least half of the device's memory free: the batch is too small
    to fill the GPU, and there is room for a larger one.

    On a CPU one trace shows one batch size: whether the per-sample cost falls with a larger
    batch is not in it, so the rule says nothing there (`perftune tune --knob batch_size=...`
    measures it). Traces without memory events are not judged either.

    ## Why is it slow?
    A small batch gives each GEMM or convolution too few tiles to occupy every SM; each kernel
    then takes almost as long as it would for a batch several times larger, and the cost per
    sample is high.

    ## Example
    ```python
    loader = DataLoader(dataset, batch_size=16)
    ```

    ## Use instead
    ```python
    loader = DataLoader(dataset, batch_size=64)   # scale the learning rate with it
    ```
    or `perftune tune --knob batch_size=16,32,64 train.py` (samples/s, with a memory budget).

    ## Evidence
    Mean efficiency of the matrix kernels, their time per step, the peak allocated memory
    against the device's, the batch size read from the first matrix operator's input.

    ## Options
    `max_efficiency` (0.3), `min_free_memory` (0.5), `assumed_speedup` (1.3: the per-sample
    speedup assumed for the estimate, saving expressed as time per step for the same samples).

    ## Known problems
    A larger batch changes the optimisation (learning rate, convergence); the tuner's accuracy
    guard checks the loss.
    """

    code: ClassVar[str] = "PFT509"
    name: ClassVar[str] = "under-filled-batch"
    severity: ClassVar[Severity] = Severity.INFO
    options: ClassVar[dict[str, Any]] = {"max_efficiency": 0.3, "min_free_memory": 0.5,
                                         "assumed_speedup": 1.3}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        if not trace.has_device_activity or not trace.device_properties:
            return
        sc = ctx.step_compute
        if not sc.compute_bound:
            return
        points = matrix_columns(trace, ctx.tables)
        n = len(points["row"])
        eff = points["efficiency"].astype(float) if n else np.empty(0)
        weights = points["dur_us"].astype(float) if n else np.empty(0)
        ok = np.isfinite(eff)
        if not ok.any() or weights[ok].sum() <= 0:
            return
        mean_eff = float(np.average(eff[ok], weights=weights[ok]))
        if mean_eff >= float(self.config["max_efficiency"]):
            return
        total = trace.device_properties[0].get("totalGlobalMem")
        allocated = trace.memory_columns.get("total_allocated")
        if not isinstance(total, int) or total <= 0 or allocated is None or not len(allocated):
            return
        peak = float(np.nanmax(allocated) if allocated.dtype.kind == "f" else allocated.max())
        free = 1.0 - peak / total
        if free < float(self.config["min_free_memory"]):
            return
        first = int(points["row"].astype(np.int64).min())
        dims = trace.input_dims(first)
        batch = dims[0][0] if dims and isinstance(dims[0], list) and dims[0] else None
        speedup = float(self.config["assumed_speedup"])
        saving = sc.matrix_ms * (1.0 - 1.0 / speedup)
        knobs: dict[str, list[Any]] = {}
        if isinstance(batch, int) and batch > 0:
            knobs["batch_size"] = [batch, 2 * batch, 4 * batch]
        location = ctx.location_of(user_frame_row(ctx.host, first))
        yield self.finding(
            f"The GPU is busy with matrix kernels that reach {mean_eff:.0%} of the attainable "
            f"peak on average ({sc.matrix_ms:.1f} ms per step) while {free:.0%} of its memory "
            f"stays free: a larger batch{f' than {batch}' if batch else ''} would fill it",
            location=location, est_saving_ms_per_step=round(saving, 4),
            evidence={"mean_matrix_efficiency": round(mean_eff, 4),
                      "matrix_ms_per_step": round(sc.matrix_ms, 3),
                      "peak_allocated_bytes": int(peak), "device_memory_bytes": total,
                      "free_memory_share": round(free, 4), "batch": batch,
                      "assumed_speedup": speedup,
                      "estimate_basis": "assumed per-sample speedup of the matrix time"},
            suggestion=Suggestion(
                title="Use a larger batch (scale the learning rate), e.g. "
                      + (f"perftune tune --knob batch_size={','.join(map(str, knobs['batch_size']))}"
                         if knobs else "perftune tune --knob batch_size=..."),
                after="loader = DataLoader(dataset, batch_size=64)", knobs=knobs))
