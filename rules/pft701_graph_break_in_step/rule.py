"""PFT701 graph-break-in-step: torch.compile stops its graph at a line of the training step.

## What it detects
A graph break dynamo recorded while the capture ran (`compilation.json`): the user's line where
tracing stopped and torch's reason — a data-dependent Python `if` on a tensor, `.item()`,
`print`, a call dynamo cannot trace. With the trace, its cost per step: the eager host time
between the graph before the break and the frame resumed after it, the guard checks of the
resumed frame, and the graph calls the step makes (forward and backward) where one graph each
way would do.

## Why is it slow?
Each break ends a graph: what follows runs as ordinary Python until dynamo resumes in a new
frame with its own guards and graph. The model runs as several smaller graphs, so inductor
cannot fuse across the break, every graph is a separate call forward and backward, and the
Python between them runs every step. On a GPU a break on a tensor value (`if t > 0`,
`.item()`) also makes the host wait for the device there.

## Example
```python
def forward(self, x):
    h = torch.relu(self.fc1(x))
    norm = h.norm()
    if norm > CLIP:              # graph break: data-dependent branching
        h = h * (CLIP / norm)
    return self.fc2(h)
```

## Use instead
```python
def forward(self, x):
    h = torch.relu(self.fc1(x))
    norm = h.norm()
    h = torch.where(norm > CLIP, h * (CLIP / norm), h)   # one graph, decided on the device
    return self.fc2(h)
```
`.item()`: keep the value a tensor, or `torch._dynamo.config.capture_scalar_outputs = True`;
`print`/logging: move it out of the compiled function (or list it in
`torch._dynamo.config.reorderable_logging_functions`); an untraceable call: move it out, or
wrap it in `torch.compiler.disable` when it must stay.

## Evidence
torch's reason, explanation and hints, the line where dynamo stopped (may be inside a library),
how often it was logged, the step it happened in; with a trace: compiled regions, graph calls
per step, eager µs between graphs per step, guard-check µs of the resumed frame.

## Known problems
A break is logged when dynamo traces the frame (warm-up), not at every step; its cost comes from
the profiled steps, which must run the compiled code (`perftune profile --skip` past the
compilation). Breaks inside library code are reported at the user's line that called it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from perftune.engine.compilation import location, resumed_compile_ids
from perftune.engine.context import Context
from perftune.engine.rewrite import suggestion
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity
from perftune.trace.compiled import compiled_regions


def _advice(reason: str, hints: list[str]) -> tuple[str, str | None]:
    """(title, after) for the break's kind."""
    text = reason.lower()
    if "data-dependent branching" in text:
        return ("Decide on the device: torch.where (or torch.cond) instead of a Python `if` "
                "on a tensor", "x = torch.where(cond, f(x), x)")
    if "item()" in text or "capture_scalar_outputs" in text:
        return ("Keep the value a tensor (no .item() in the compiled code), or set "
                "torch._dynamo.config.capture_scalar_outputs = True",
                "torch._dynamo.config.capture_scalar_outputs = True")
    if "print" in text or "logging" in text or any("reorderable_logging" in h for h in hints):
        return ("Move the print/logging out of the compiled function (or add it to "
                "torch._dynamo.config.reorderable_logging_functions)", None)
    first = hints[0] if hints else "move the call out of the compiled function"
    return (f"Remove the break: {first}", None)


class GraphBreakInStep(Rule):
    code: ClassVar[str] = "PFT701"
    name: ClassVar[str] = "graph-break-in-step"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {}

    def check(self, ctx: Context) -> Iterator[Finding]:
        doc = ctx.compilation
        if doc is None or not doc.graph_breaks:
            return
        regions = ctx.fact(compiled_regions)
        for brk in doc.graph_breaks:
            loc, path = location(ctx, brk.file or brk.traced_file, brk.line or brk.traced_line,
                                 brk.function)
            resumed = resumed_compile_ids(doc, brk)
            evidence: dict[str, Any] = {
                "reason": brk.reason, "explanation": brk.explanation, "hints": list(brk.hints),
                "stopped_at": (f"{brk.traced_file}:{brk.traced_line}"
                               if brk.traced_file else None),
                "logged": brk.count, "step": brk.step, "phase": brk.phase,
                "resumed_frames": sorted(resumed),
                "graphs": len(doc.graphs()),
            }
            saving_us = 0.0
            cost = ""
            if regions.present:
                eager = regions.eager_before_us_per_step(resumed)
                lookup = sum(regions.lookup_us.get(c, 0.0) for c in resumed)
                calls = regions.graph_calls_per_step()
                saving_us = eager + lookup
                evidence.update({"graph_calls_per_step": round(calls, 2),
                                 "eager_between_graphs_us_per_step": round(eager, 1),
                                 "resumed_guard_checks_us_per_step": round(lookup, 1)})
                if resumed and regions.of(next(iter(sorted(resumed)))):
                    cost = (f"; each step runs {calls:g} graph calls (forward and backward) with "
                            f"{eager:.0f} µs of eager code between graphs and {lookup:.0f} µs "
                            "of guard checks after the break")
            message = (f"torch.compile breaks the graph here ({brk.reason}): the compiled code "
                       f"runs as {len(doc.graphs())} graphs with eager Python between them"
                       f"{cost}")
            title, after = _advice(brk.reason, list(brk.hints))
            yield self.finding(
                message, location=loc, evidence=evidence,
                est_saving_ms_per_step=saving_us / 1000.0,
                suggestion=suggestion(self.code, title, loc, path, after=after))
