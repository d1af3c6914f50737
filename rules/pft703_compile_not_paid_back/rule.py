"""PFT703 compile-not-paid-back: compiling takes longer than it can save over the run.

## What it detects
A run whose torch.compile time (`compilation.json`, every compilation of the warm-up and the
window) is larger than the time the compiled code takes over the run's expected length
(`expected_steps`): the compiled regions' host time per profiled step (forward regions and
backward graphs) is the most compiling can save per step — even compiled code that took no
time at all would not repay the compilation within that many steps.

## Why is it slow?
Compilation (dynamo tracing, AOTAutograd, inductor's code generation and the C++/Triton
compiler) runs before the first compiled step, often for tens of seconds, and again for every
recompilation. A short job — a fine-tuning run of a few hundred steps, a CI smoke test, a
notebook cell — can spend more time compiling than the compiled code will ever win back.

## Example
```python
model = torch.compile(model, mode="max-autotune")   # 90 s to compile
for step in range(200):                               # 200 steps of 40 ms
    train_step(model, next(batches))
```

## Use instead
```python
model = torch.compile(model) if args.steps > 5000 else model   # compile long runs only
# or keep the compile but pay it once: a warm cache across runs
# (TORCHINDUCTOR_FX_GRAPH_CACHE=1, torch.compiler.save_cache_artifacts / load_cache_artifacts),
# mode=None instead of "max-autotune", compile only the hot module
```
`perftune tune --knob compile=none,default` measures both on this script.

## Evidence
Compile seconds (total and in the window's steps), the compiled regions' ms per step, the
steps the compilation needs to pay back at best, the expected steps.

## Options
`expected_steps` (1000): the run's length in training steps; set it to your run's
(`[tool.perftune.rules.PFT703] expected_steps = 20000`).

## Known problems
The bound is generous (it assumes compiling saves all of the compiled code's time), so the
rule speaks only when compiling cannot pay back; whether it does pay back in a longer run is
for `perftune tune --knob compile=none,default` to measure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from perftune.engine.compilation import location
from perftune.engine.context import Context
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace.compiled import compiled_regions


class CompileNotPaidBack(Rule):
    code: ClassVar[str] = "PFT703"
    name: ClassVar[str] = "compile-not-paid-back"
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {"expected_steps": 1000}

    def check(self, ctx: Context) -> Iterator[Finding]:
        doc = ctx.compilation
        if doc is None or not doc.compiled or doc.total_compile_s <= 0:
            return
        regions = ctx.fact(compiled_regions)
        if not regions.present or regions.compiled_us_per_step <= 0:
            return  # no compiled code in the profiled steps: nothing to weigh it against
        expected = max(int(self.config["expected_steps"]), 1)
        per_step_s = regions.compiled_us_per_step / 1e6
        payback = doc.total_compile_s / per_step_s
        if payback <= expected:
            return
        site = doc.compile_calls[0] if doc.compile_calls else None
        if site is None and doc.compiles and doc.compiles[0].call_site is not None:
            site = doc.compiles[0].call_site
        loc, _ = location(ctx, site.file if site else None, site.line if site else None,
                          site.function if site else None)
        message = (f"compiling took {doc.total_compile_s:.1f} s, but the compiled code runs only "
                   f"{per_step_s * 1000:.2f} ms per step: even at no cost it would pay back "
                   f"after {payback:,.0f} steps, more than the {expected:,} expected "
                   "(expected_steps)")
        yield self.finding(
            message, location=loc,
            evidence={"compile_s": round(doc.total_compile_s, 3),
                      "compiling_steps": [s.index for s in doc.steps],
                      "compiled_ms_per_step": round(per_step_s * 1000, 3),
                      "payback_steps": round(payback), "expected_steps": expected},
            est_saving_ms_per_step=doc.total_compile_s * 1000.0 / expected,
            suggestion=Suggestion(
                title="Do not compile for a run this short, or make compiling cheaper: a warm "
                      "cache across runs, mode=None instead of max-autotune, compile only the "
                      "hot module; `perftune tune --knob compile=none,default` measures both",
                before=loc.source.strip() if loc.source else None,
                after="model = torch.compile(model) if expected_steps > PAYBACK else model",
                knobs={"compile": ["none", "default"]}))
