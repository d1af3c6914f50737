"""PFT903 profiler-overhead: the profiler's own cost dominates the traced steps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace.quality_metrics import event_density


class ProfilerOverhead(Rule):
    """PFT903 profiler-overhead: the profiler's own cost dominates the traced steps.

    ## What it detects
    Traces distorted by the profiler itself: many `python_function` events per operator
    (`with_stack=True` records every Python call), or operators so densely packed that the
    per-event cost of recording them is a large share of the traced time. In a `perftune
    profile` run directory, the median profiled step is also compared with the median
    unprofiled step of the same run (`steps.json`).

    ## Why is it slow?
    Recording an operator costs about a microsecond or two, a Python call with stacks about a
    microsecond; `profile_memory` adds more per allocation. A model of many tiny ops can run
    twice as slowly under the profiler, which inflates host-side costs in every other finding.

    ## Example
    ```python
    torch.profiler.profile(with_stack=True, profile_memory=True, record_shapes=True)
    ```

    ## Use instead
    ```python
    # perftune profile train.py --detail light      (no stacks, no memory)
    torch.profiler.profile(record_shapes=True)       # stacks only when locating a line
    ```

    ## Evidence
    Operators and Python events, Python events per operator, operators per millisecond, the
    estimated profiler share of the traced time, and the measured profiled/unprofiled step
    ratio when the run directory has it.

    ## Options
    `max_overhead` (0.25): measured slowdown (profiled/unprofiled − 1) to report.
    `max_estimated_share` (0.3): estimated profiler share of host time to report.
    `op_cost_us` (1.5), `python_cost_us` (0.7): assumed cost per recorded event.
    """

    code: ClassVar[str] = "PFT903"
    name: ClassVar[str] = "profiler-overhead"
    severity: ClassVar[Severity] = Severity.INFO
    options: ClassVar[dict[str, Any]] = {"max_overhead": 0.25, "max_estimated_share": 0.3,
                                         "op_cost_us": 1.5, "python_cost_us": 0.7}

    def check(self, ctx: Context) -> Iterator[Finding]:
        density = ctx.fact(event_density)
        share = density.estimated_share(self.config["op_cost_us"], self.config["python_cost_us"])
        measured = ctx.phase_times  # steps.json of the run, read by the engine
        evidence: dict[str, Any] = {
            "cpu_ops": density.cpu_ops, "python_events": density.python_events,
            "python_events_per_op": round(density.python_per_op, 2),
            "ops_per_ms": round(density.ops_per_ms, 2),
            "estimated_profiler_share": round(share, 4),
        }
        if measured is not None:
            evidence.update({"profiled_step_ms": round(measured.profiled_ms, 3),
                             "unprofiled_step_ms": round(measured.unprofiled_ms, 3),
                             "measured_overhead": round(measured.overhead, 4),
                             "steps_json": str(measured.path)})
            if measured.overhead < self.config["max_overhead"]:
                return
            message = (f"profiled steps take {measured.profiled_ms:.2f} ms against "
                       f"{measured.unprofiled_ms:.2f} ms unprofiled (+{measured.overhead:.0%}): "
                       "host-side figures in this trace are inflated by the profiler")
            saving = 0.0
        else:
            if share < self.config["max_estimated_share"]:
                return
            message = (f"the profiler's own cost is an estimated {share:.0%} of the traced host "
                       f"time ({density.cpu_ops} ops, {density.python_events} Python events, "
                       f"{density.python_per_op:.1f} per op): host-side figures are inflated")
            saving = 0.0
        steps_ms = None
        if density.steps:
            steps_ms = density.host_span_us / density.steps / 1000.0
            evidence["traced_ms_per_step"] = round(steps_ms, 3)
        yield self.finding(
            message, evidence=evidence, est_saving_ms_per_step=saving,
            suggestion=Suggestion(
                title="Profile with less detail: perftune profile --detail light (no stacks, no "
                      "memory events), or with_stack/profile_memory off unless locating a line",
                after="torch.profiler.profile(record_shapes=True, with_stack=False, profile_memory=False)"))
