"""PFT901 too-few-steps: too few training steps in the trace for stable figures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace.steps import WHOLE_TRACE


class TooFewSteps(Rule):
    """PFT901 too-few-steps: too few training steps in the trace for stable figures.

    ## What it detects
    A trace with step markers but fewer than `min_steps` steps on a rank.

    ## Why is it slow?
    It is not slow — it is uncertain. Per-step figures (idle time, syncs per step, estimated
    savings) from one or two steps include one-off work (first-iteration allocations, cuDNN
    autotuning, lazy initialisation) and the noise of a single sample.

    ## Example
    ```python
    with torch.profiler.profile(schedule=torch.profiler.schedule(wait=1, warmup=1, active=1)) as p:
        ...
    ```

    ## Use instead
    ```python
    # perftune profile train.py --active 5
    schedule = torch.profiler.schedule(wait=1, warmup=2, active=5)
    ```
    `perftune profile` finds the steps itself (optimizer steps, else `backward()` calls, else
    top-level module calls; `perftune rule PFT902` lists the order) and profiles `--active`
    of them after `--skip` warm-up steps. A script that ends before that window (fewer steps
    than `--skip`, a run under a second) is profiled once more with a window that fits: then
    the trace has fewer steps than asked for, and this finding says so. Run such a script for
    more iterations when the figures matter.

    ## Evidence
    Steps per rank, where they came from, their durations.

    ## Options
    `min_steps` (3).
    """

    code: ClassVar[str] = "PFT901"
    name: ClassVar[str] = "too-few-steps"
    severity: ClassVar[Severity] = Severity.INFO
    options: ClassVar[dict[str, Any]] = {"min_steps": 3}

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        if trace.step_source == WHOLE_TRACE or not trace.steps:
            return  # PFT902 covers traces without step markers
        counts = {r: len(trace.steps_of(r)) for r in trace.rank_ids}
        fewest = min(counts.values()) if counts else 0
        if fewest >= self.config["min_steps"]:
            return
        rank = min(counts, key=lambda r: (counts[r], r))
        durations = [round(s.dur / 1000.0, 3) for s in trace.steps_of(rank)]
        evidence = {"steps": fewest, "step_source": trace.step_source, "rank": rank,
                    "step_ms": durations, "min_steps": self.config["min_steps"],
                    "steps_by_rank": {str(r): c for r, c in sorted(counts.items())}}
        noun = "step" if fewest == 1 else "steps"
        message = (f"the trace holds {fewest} {noun} ({trace.step_source}); per-step figures from "
                   f"fewer than {self.config['min_steps']} steps include one-off work and noise")
        yield self.finding(
            message, evidence=evidence, rank=rank,
            suggestion=Suggestion(
                title="Profile more steps: perftune profile --active 5, or "
                      "torch.profiler.schedule(wait=1, warmup=2, active=5)",
                after="schedule=torch.profiler.schedule(wait=1, warmup=2, active=5)"))
