"""PFT902 no-step-markers: the trace does not say where training steps begin and end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace.steps import WHOLE_TRACE


class NoStepMarkers(Rule):
    """PFT902 no-step-markers: the trace does not say where training steps begin and end.

    ## What it detects
    A trace with neither `ProfilerStep#N` annotations nor optimizer steps
    (`Optimizer.step#...`), so the whole trace is analysed as one window.

    ## Why is it slow?
    Without step boundaries nothing can be reported per step: not step time, not device idle
    per step, not how often a sync happens per iteration. Warm-up and one-off work mix with
    the steady state.

    ## Example
    ```python
    with torch.profiler.profile() as prof:
        for x, y in loader:
            train_step(x, y)
    ```

    ## Use instead
    ```python
    with torch.profiler.profile(schedule=torch.profiler.schedule(wait=1, warmup=2, active=5),
                                on_trace_ready=torch.profiler.tensorboard_trace_handler("log")) as prof:
        for x, y in loader:
            train_step(x, y)
            prof.step()                       # marks ProfilerStep#N
    ```
    `perftune profile train.py` marks the steps for you, with the first of these it sees:
    `--step-marker module:function` or `perftune.step()`; the script's own `prof.step()`;
    optimizer steps (`optimizer.step()`, `scaler.step(optimizer)`; optimizers that take turns,
    a GAN's D and G, make one iteration; gradient accumulation is one step per optimizer step);
    the outermost `backward()` call (hand-written parameter updates); the top-level
    `nn.Module` call (inference under `torch.no_grad()`); time slices only when none shows.
    Its summary line says which (`steps  8 found by backward() calls`), and steps.json
    records it (`step_source`, `step_detail`).

    ## Evidence
    The trace's span and event count.
    """

    code: ClassVar[str] = "PFT902"
    name: ClassVar[str] = "no-step-markers"
    severity: ClassVar[Severity] = Severity.WARNING

    def check(self, ctx: Context) -> Iterator[Finding]:
        trace = ctx.trace
        if trace.step_source != WHOLE_TRACE:
            return
        span = trace.span_us() / 1000.0
        evidence = {"step_source": trace.step_source, "span_ms": round(span, 3),
                    "events": trace.n, "ranks": len(trace.rank_ids)}
        yield self.finding(
            f"no step markers (no ProfilerStep#N, no optimizer steps): the whole {span:.1f} ms "
            "trace is analysed as one step",
            evidence=evidence,
            suggestion=Suggestion(
                title="Mark steps: profile with perftune profile, or call prof.step() once per "
                      "iteration with a torch.profiler schedule",
                after="for batch in loader:\n    train_step(batch)\n    prof.step()"))
