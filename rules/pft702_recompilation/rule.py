"""PFT702 recompilation: torch.compile compiles the same code again during training.

## What it detects
A compilation with a failed guard (`recompile_reason` in `compilation.json`): a frame compiled
before was entered with something its guards had pinned — a tensor of another shape (dynamic
shapes), a Python number that changed (a scalar guarded as a constant), another module type or
`requires_grad`. Reported at the user's line that was running when it recompiled (the call
into the compiled model), with the failed guards, the compile time they cost and the steps
they happened in.

## Why is it slow?
Every recompilation traces and compiles the frame again — seconds on a CPU with inductor, often
more than a hundred training steps — and each variant is kept: after
`torch._dynamo.config.recompile_limit` (8) of them dynamo gives up and runs the frame eagerly.
Shapes that change every batch (padding to the longest sequence, a last smaller batch) and
Python numbers that change every step (a learning-rate or temperature schedule passed as a
float) are the usual causes.

## Example
```python
for tokens, labels in loader:            # every batch padded to another length
    loss = loss_fn(model(tokens), labels)
```

## Use instead
```python
for tokens, labels in loader:
    torch._dynamo.mark_dynamic(tokens, 1)    # compile once for any length
    loss = loss_fn(model(tokens), labels)
# or: model = torch.compile(model, dynamic=True); pad to a few fixed lengths;
# a Python number that changes every step: pass it as a tensor (torch.tensor(value))
```

## Evidence
The failed guards, the recompilations and their compile seconds, the steps and phases they ran
in, the compiled frame.

## Known problems
A recompilation during warm-up of a shape dynamo then marks dynamic by itself
(`automatic_dynamic_shapes`) happens once; it is still reported (it costs a full compilation),
with no per-step saving.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from perftune.documents import CompileEvent
from perftune.engine.compilation import guard_kind, location, scalar_guard, size_guard
from perftune.engine.context import Context
from perftune.engine.rewrite import suggestion
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity


class Recompilation(Rule):
    code: ClassVar[str] = "PFT702"
    name: ClassVar[str] = "recompilation"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {}

    def check(self, ctx: Context) -> Iterator[Finding]:
        doc = ctx.compilation
        if doc is None:
            return
        groups: dict[tuple[str | None, int | None, str | None], list[CompileEvent]] = {}
        for event in doc.recompiles():
            site = event.call_site
            key = (site.file, site.line, site.function) if site else \
                (event.code_file, event.code_line, event.code)
            groups.setdefault(key, []).append(event)
        traced_steps = max(len(ctx.trace.steps), 1)
        for (file, line, function), events in groups.items():
            loc, path = location(ctx, file, line, function)
            seconds = sum(e.duration_s for e in events)
            in_window = [e for e in events if e.phase in ("profiled", "measured")]
            reasons = [(e.recompile_reason or "").splitlines()[0] for e in events]
            kinds = {guard_kind(e) for e in events}
            steps = sorted({e.step for e in events if e.step is not None})
            evidence: dict[str, Any] = {
                "recompilations": len(events), "compile_s": round(seconds, 3),
                "failed_guards": reasons, "steps": steps,
                "phases": sorted({e.phase for e in events if e.phase}),
                "frame": events[0].code, "kinds": sorted(kinds),
            }
            where = f"step {steps[0]}" if len(steps) == 1 else \
                f"steps {', '.join(map(str, steps))}" if steps else "outside the steps"
            message = (f"torch.compile recompiled {events[0].code or 'the model'} "
                       f"{len(events)} time(s) here ({where}, {seconds:.2f} s of compilation): "
                       f"{reasons[0]}")
            params: dict[str, Any] = {}
            shapes: list[tuple[str, int]] = []
            for e in events:
                found = size_guard(e.recompile_reason or "")
                if found is not None and found not in shapes:
                    shapes.append(found)
            scalar = next((scalar_guard(e.recompile_reason or "") for e in events
                           if guard_kind(e) == "scalar"), None)
            if shapes:
                params = {"marks": [list(m) for m in shapes]}
                marks = "; ".join(f"torch._dynamo.mark_dynamic({n}, {d})" for n, d in shapes)
                title = (f"Mark the varying dimension(s) dynamic before the call: {marks} (or "
                         "torch.compile(..., dynamic=True), or pad to a few fixed sizes)")
                after = "\n".join(f"torch._dynamo.mark_dynamic({n}, {d})" for n, d in shapes)
            elif scalar is not None:
                title = (f"Pass `{scalar[0]}` as a tensor (torch.tensor(value)): a Python number "
                         "is guarded as a constant and every new value recompiles")
                after = f"{scalar[0]} = torch.tensor({scalar[0]})"
            else:
                title = "Keep what the failed guard checks the same from call to call"
                after = None
            # one-off in warm-up; per step when the window itself recompiled
            saving_ms = sum(e.duration_s for e in in_window) * 1000.0 / traced_steps
            yield self.finding(
                message, location=loc, evidence=evidence, est_saving_ms_per_step=saving_ms,
                suggestion=suggestion(self.code, title, loc, path, after=after, params=params))
