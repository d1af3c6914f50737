"""PFT304 host-bound-python-overhead: the host, not the device, sets the step time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from perftune.engine.context import Context
from perftune.engine.rewrite import suggestion
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Location, Severity, Suggestion
from perftune.trace import categories as C
from perftune.trace.device_metrics import batch_size_values, guess_batch_size, main_rank
from perftune.trace.groups import median
from perftune.trace.idle_metrics import host_overhead, idle_gap_columns, module_loops, step_idle
from perftune.trace.model import Trace

# torch.optim's optimizers: where the model the rewrite compiles is handed to its optimizer.
OPTIMIZERS = ("SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "ASGD", "LBFGS", "NAdam",
              "RAdam", "RMSprop", "Rprop", "SparseAdam", "Adafactor", "Muon")


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def _compiled(trace: Trace) -> bool:
    """torch.compile at work: its regions, or a compiled graph's autograd function (traces
    whose region annotations were not recorded)."""
    from perftune.trace.compiled import FORWARD_GRAPH, has_compiled_regions

    return has_compiled_regions(trace) or bool(np.any(trace.name_startswith(FORWARD_GRAPH)))


def _work_ms_per_step(ctx: Context) -> tuple[float, int] | None:
    """What the steps' ops need at this machine's roofs (ms per step: each counted op's
    FLOPs over the peak or bytes over the bandwidth, whichever is longer), and how many ops
    were counted; None without the machine's peaks."""
    from perftune.trace import roofline

    trace = ctx.trace
    peaks = ctx.peaks
    if not (peaks.flops_per_s and peaks.bytes_per_s and np.isfinite(peaks.flops_per_s)
            and np.isfinite(peaks.bytes_per_s)) or not trace.steps:
        return None
    points = ctx.fact(roofline.roofline_columns)
    if not len(points):
        return 0.0, 0
    steps = trace.step_of(trace.col("ts")[points.col("row")], points.col("rank"))
    keep = steps >= 0
    seconds = np.maximum(points.col("flops")[keep] / peaks.flops_per_s,
                         points.col("bytes")[keep] / peaks.bytes_per_s).sum()
    return float(seconds) * 1000.0 / len(trace.steps), int(np.count_nonzero(keep))


class HostBoundPythonOverhead(Rule):
    """PFT304 host-bound-python-overhead: the host, not the device, sets the step time.

    ## What it detects
    Steps whose length is set by host-side work — Python code, the operator dispatcher, kernel
    launches — rather than by the computation. On a GPU trace: the device sits idle for a
    large share of the step while the host is busy between launches (not waiting for data or
    a sync). On a CPU trace: the model is tiny — the arithmetic its ops need at this machine's
    measured peaks is under 0.05 µs per op, so the step is overhead whatever the profiled ops
    took; or a Python loop steps one small module (an RNN cell over time steps) at least 8
    times per step while the ops need under 1 µs of arithmetic each (8 calls: a decoder stepped
    over the target tokens of a short sequence). The verdict rests on that count, not on wall-clock shares: on a CPU the time between
    ops grows with the machine's load (the process waits for a core), and holds sleeps and
    data loading. Only when the arithmetic cannot be counted (no machine peaks, no recorded
    shapes) does the share decide: most of the step in Python between operators and in
    operators so short that dispatch is all they do. Not reported when the trace shows
    torch.compile at work (`Torch-Compiled Region`, `CompiledFunction`).

    ## Why is it slow?
    Each PyTorch op costs a few microseconds of Python and dispatcher work before any math
    happens. A model made of many small ops (small layers, a small batch, Python loops over
    tensors) spends its step in that overhead: a faster GPU would not help at all.

    ## Example
    ```python
    for t in range(seq_len):                      # a Python loop of tiny ops
        h = torch.tanh(x[:, t] @ w_x + h @ w_h + b)
    ```

    ## Use instead
    ```python
    step = torch.compile(step)                    # traces the loop once, fuses the ops
    # on a GPU: torch.compile(model, mode="reduce-overhead") replays CUDA graphs
    ```
    Or give each op more work: a larger batch, vectorised code instead of Python loops.
    `perftune fix` applies and verifies `model = torch.compile(model)` for the model the
    optimizer trains (faster, same losses), and `perftune tune --knob compile=none,default
    --run-steps N` measures compiling without a code change, compile time included.

    ## Evidence
    GPU: host-caused device idle per step, device busy time, ops and launches per step, the
    host ops that ran while the device waited. CPU: Python time between ops, time in tiny ops
    (shorter than 20 µs), op count per step, the ops' arithmetic at the machine's peaks
    (`work_ms_per_step`); the overhead share is the step less that work.

    ## Options
    `min_host_idle_share` (0.25): GPU — share of the step the device waits on host work.
    `min_overhead_share` (0.5), `min_ops_per_step` (200): CPU — overhead share of the step
    (used only when the arithmetic cannot be counted) and how many ops a step must run. `tiny_work_us` (0.05): CPU — arithmetic per op (at the
    machine's peaks, `perftune machine`) below which the model counts as tiny.
    `min_module_calls_per_step` (8) and `loop_work_us` (1.0): CPU — calls of one module
    instance per step, and arithmetic per op below which, together, the step is a Python loop
    of small ops.
    """

    code: ClassVar[str] = "PFT304"
    name: ClassVar[str] = "host-bound-python-overhead"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"min_host_idle_share": 0.25, "min_overhead_share": 0.5,
                                         "min_ops_per_step": 200, "tiny_work_us": 0.05,
                                         "min_module_calls_per_step": 8, "loop_work_us": 1.0}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        if _compiled(trace):
            return  # torch.compile already runs here: the advice would be what the script does
        if trace.has_device_activity:
            yield from self._gpu(ctx)
        else:
            yield from self._cpu(ctx)

    def _knobs(self, trace: Trace) -> dict[str, list[Any]]:
        values = batch_size_values(guess_batch_size(trace), "up")
        knobs: dict[str, list[Any]] = {"batch_size": values} if values else {}
        # The tuner's compile knob: the model the optimizer trains, compiled without a code change.
        knobs["compile"] = (["none", "default", "reduce-overhead"] if trace.has_device_activity
                            else ["none", "default"])
        return knobs

    def _suggestion(self, ctx: Context, title: str, after: str, mode: str) -> tuple[Location | None, Suggestion]:
        """The rewrite that wraps the model in torch.compile (fix.py), at the line creating the
        optimizer that trains it, when the user's files show one; else advice only."""
        knobs = self._knobs(ctx.trace)
        sites = ctx.find_calls(OPTIMIZERS)
        if not sites:
            return None, Suggestion(title=title, after=after, knobs=knobs)
        site = sites[0]
        return site.location, suggestion(self.code, title, site.location, site.path, after=after,
                                         params={"mode": mode}, knobs=knobs)

    def _gpu(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        rank = main_rank(trace)
        steps = [s for s in ctx.fact(step_idle) if s.rank == rank]
        if not steps:
            return
        host_idle = _mean([s.by_cause.get("host", 0.0) + s.by_cause.get("launch", 0.0) for s in steps])
        dur = _mean([s.dur_ms for s in steps])
        share = host_idle / dur if dur > 0 else 0.0
        if share < self.config["min_host_idle_share"]:
            return
        over = [o for o in ctx.fact(host_overhead) if o.rank == rank]
        launches = int(np.count_nonzero(trace.name_isin(C.LAUNCH_CALLS) & (trace.col("rank") == rank)))
        n = max(1, len(steps))
        gap_us = ctx.fact(idle_gap_columns).of_rank(rank, ("host", "launch")).dur
        # The most common gap length in whole µs (ties: the one seen first), as
        # Counter(round(d)).most_common(1) gives it; round and rint both round half to even.
        common, first, counts = np.unique(np.rint(gap_us), return_index=True, return_counts=True)
        most_common = int(common[np.lexsort((first, -counts))[0]]) if len(gap_us) else 0
        evidence: dict[str, Any] = {
            "rank": rank, "steps": len(steps), "step_ms": round(dur, 3),
            "host_caused_idle_ms_per_step": round(host_idle, 3), "host_caused_idle_share": round(share, 4),
            "device_busy_ms_per_step": round(_mean([s.busy_ms for s in steps]), 3),
            "ops_per_step": round(_mean([o.op_count for o in over]), 1),
            "launches_per_step": round(launches / n, 1),
            "python_ms_per_step": round(_mean([o.python_ms for o in over]), 3),
            "idle_gaps_per_step": round(len(gap_us) / n, 1),
            "median_gap_us": round(float(median(gap_us)), 3) if len(gap_us) else 0.0,
            "most_common_gap_us": most_common,
        }
        message = (f"the host sets the pace: the GPU waits {host_idle:.2f} ms per step "
                   f"({share:.0%} of {dur:.2f} ms) for Python and operator work between launches; "
                   f"{evidence['ops_per_step']:.0f} ops and {evidence['launches_per_step']:.0f} "
                   f"launches per step")
        location, advice = self._suggestion(
            ctx, "Take Python and dispatch off the critical path: torch.compile (CUDA graphs "
                 "with mode=\"reduce-overhead\"), fewer and larger ops, a larger batch",
            'model = torch.compile(model, mode="reduce-overhead")', "reduce-overhead")
        yield self.finding(
            message, evidence=evidence, est_saving_ms_per_step=host_idle, rank=rank,
            severity=Severity.WARNING, location=location, suggestion=advice)

    def _cpu(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        rank = main_rank(trace)
        over = [o for o in ctx.fact(host_overhead) if o.rank == rank]
        if not over:
            return
        dur = _mean([o.dur_ms for o in over])
        python = _mean([o.python_ms for o in over])
        tiny = _mean([o.tiny_op_ms for o in over])
        ops = _mean([float(o.op_count) for o in over])
        share = (python + tiny) / dur if dur > 0 else 0.0
        if ops < self.config["min_ops_per_step"]:
            return
        # A tiny model: the arithmetic of its ops at this machine's roofs is a sliver of the
        # step (under `tiny_work_us` per op), however long the profiled ops themselves took —
        # on a CPU an op's own time is mostly dispatch too.
        work = _work_ms_per_step(ctx)
        if work is not None and work[1] == 0:
            work = None  # no op shapes recorded: the arithmetic cannot be counted
        work_us_per_op = work[0] * 1000.0 / ops if work is not None else None
        tiny_model = work_us_per_op is not None and dur > 0 and \
            work_us_per_op < float(self.config["tiny_work_us"])
        # A Python loop over one small module (an RNN cell stepped over time, a policy over
        # environment steps): tens of calls of one instance per step, each too small to pay
        # for its dispatch. The corpus: 106 calls per step at 0.41 µs of arithmetic per op
        # (lbfgs_sequence.py), 8 decoder calls per step at 0.8 µs (seq2seq_packed.py: one
        # per target token); every script not called overhead-bound calls a module at most
        # 5 times per step (gradient accumulation, a GAN's discriminator, evaluation batches).
        loop = next((m for m in ctx.fact(module_loops) if m.rank == rank), None)
        python_loop = (not tiny_model and work_us_per_op is not None and dur > 0
                       and loop is not None
                       and loop.calls_per_step >= float(self.config["min_module_calls_per_step"])
                       and work_us_per_op < float(self.config["loop_work_us"]))
        if (tiny_model or python_loop) and work is not None:
            share = max(share, 1.0 - work[0] / dur)
        elif work is not None:
            # The arithmetic was counted and is not a tiny model's: no verdict from wall-clock
            # shares. On a CPU the time between ops grows with the machine's load (the process
            # waits for a core between ops: samples/segmentation.py read 0.37 quiet, > 0.5
            # under `pytest -n 2` on 2 cores) and holds sleeps and data loading too; none of
            # that is dispatch overhead torch.compile would remove.
            return
        elif share < self.config["min_overhead_share"]:
            return
        evidence = {
            "rank": rank, "steps": len(over), "step_ms": round(dur, 3),
            "python_ms_per_step": round(python, 3), "tiny_op_ms_per_step": round(tiny, 3),
            "work_ms_per_step": round(work[0], 4) if work is not None else None,
            "tiny_model": tiny_model,
            "work_us_per_op": round(work_us_per_op, 4) if work_us_per_op is not None else None,
            "module_loop": ({"module": loop.module, "calls_per_step": round(loop.calls_per_step, 1)}
                            if loop is not None else None),
            "python_loop": python_loop,
            "op_ms_per_step": round(_mean([o.op_ms for o in over]), 3),
            "overhead_share": round(share, 4), "ops_per_step": round(ops, 1),
            "top_level_ops_per_step": round(_mean([float(o.top_level_ops) for o in over]), 1),
        }
        if tiny_model and work is not None:
            message = (f"{share:.0%} of each {dur:.2f} ms step is host overhead: its {ops:.0f} ops "
                       f"need {work[0]:.3f} ms of arithmetic at this machine's peaks (a tiny "
                       "model); Python and operator dispatch, not computation, set the pace")
            saving = max(tiny, python)
        elif python_loop and work is not None and loop is not None:
            message = (f"{share:.0%} of each {dur:.2f} ms step is host overhead: a Python loop "
                       f"calls {loop.module} {loop.calls_per_step:.0f} times per step, and the "
                       f"step's {ops:.0f} ops need {work_us_per_op:.2f} µs of arithmetic each at "
                       "this machine's peaks; Python and operator dispatch, not computation, set "
                       "the pace")
            saving = max(tiny, python)
        else:
            message = (f"{share:.0%} of each {dur:.2f} ms step is Python between ops and tiny ops "
                       f"({ops:.0f} ops per step): dispatch overhead, not computation, sets the pace")
            saving = tiny
        location, advice = self._suggestion(
            ctx, "Cut per-op overhead: torch.compile the step, vectorise Python loops over "
                 "tensors, a larger batch",
            "train_step = torch.compile(train_step)", "default")
        yield self.finding(
            message, evidence=evidence, est_saving_ms_per_step=saving, rank=rank,
            severity=Severity.INFO, location=location, suggestion=advice)
