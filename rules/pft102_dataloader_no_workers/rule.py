"""PFT102 dataloader-no-workers: batches are loaded in the training process (`num_workers=0`).

## What it detects
`enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__` annotations — a DataLoader
without worker processes — with a wait inside the steps of at least 10% of the step time (option `min_share`, the
threshold of PFT101's input-bound finding), in the median step: each step loads its own
batches, so a real wait is in every step (a preemption on a contended machine lands in one).

## Why is it slow?
With `num_workers=0` every batch is fetched, decoded, augmented and collated by the training
loop itself, between steps, with nothing overlapping it. Worker processes prepare the next
batches while the current step runs.

## Example
```python
loader = DataLoader(dataset, batch_size=64, shuffle=True)
```

## Use instead
```python
loader = DataLoader(dataset, batch_size=64, shuffle=True,
                    num_workers=4, persistent_workers=True)
```

## Evidence
The wait per step in the single-process iterator and its share of the steps' time.

## Options
`min_share` (default 0.10): report when the wait is at least this share of the step time; a
smaller wait does not pay for worker processes (every batch then crosses a process boundary).

## Known problems
The dataset must be picklable; with random augmentation seed each worker
(`worker_init_fn`). `perftune tune` can search `num_workers` (see the knobs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from perftune.engine.context import Context
from perftune.engine.frameworks import HF_TRAINER, config_site, frameworks
from perftune.engine.hazards import loader_location
from perftune.engine.rewrite import suggestion
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace import sync_metrics as sm


class DataLoaderNoWorkers(Rule):
    code = "PFT102"
    name = "dataloader-no-workers"
    options: ClassVar[dict[str, Any]] = {"min_share": 0.10, "error_share": 0.30}

    def check(self, ctx: Context) -> Iterator[Finding]:
        wait = sm.dataloader_wait(ctx.host)
        if wait is None or not wait.single_process or wait.share < float(self.config["min_share"]):
            return
        location, site = loader_location(ctx, wait.rows)
        ms = wait.wait_us_per_step / 1000.0
        severity = Severity.ERROR if wait.share >= float(self.config["error_share"]) else Severity.WARNING
        trainer = config_site(ctx, HF_TRAINER) if HF_TRAINER in frameworks(ctx) else None
        if trainer is not None:
            # The Trainer builds the DataLoader: its lever, at the TrainingArguments(...) line.
            yield self.finding(
                f"The Hugging Face Trainer's DataLoader has no worker processes: the step "
                f"itself builds every batch ({ms:.2f} ms/step, {wait.share:.0%} of the step)",
                location=trainer.location, severity=severity,
                suggestion=Suggestion(
                    title="Use worker processes: TrainingArguments(dataloader_num_workers=4, "
                          "dataloader_persistent_workers=True)",
                    before=trainer.location.source,
                    after=f"{trainer.site.name}(..., dataloader_num_workers=4, "
                          "dataloader_persistent_workers=True)",
                    knobs={"num_workers": [2, 4, 8]}),
                evidence={"wait_ms_per_step": round(ms, 4), "share": round(wait.share, 4),
                          "batches": len(wait.rows), "steps": wait.steps,
                          "framework": HF_TRAINER.name},
                est_saving_ms_per_step=round(ms, 4), count=len(wait.rows))
            return
        yield self.finding(
            f"The DataLoader has no worker processes: the step itself builds every batch "
            f"({ms:.2f} ms/step, {wait.share:.0%} of the step)",
            location=location, severity=severity,
            suggestion=suggestion(
                self.code, "Use worker processes: num_workers=4, persistent_workers=True",
                location, site.path if site is not None else None,
                after="DataLoader(..., num_workers=4, persistent_workers=True)",
                params={"num_workers": 4}, knobs={"num_workers": [2, 4, 8]}),
            evidence={"wait_ms_per_step": round(ms, 4), "share": round(wait.share, 4),
                      "batches": len(wait.rows), "steps": wait.steps},
            est_saving_ms_per_step=round(ms, 4), count=len(wait.rows))
