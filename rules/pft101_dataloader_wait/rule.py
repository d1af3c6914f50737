"""PFT101 dataloader-wait: the training step waits for the next batch.

## What it detects
Time inside steps spent in the DataLoader's `__next__` (the
`enumerate(DataLoader)#..._DataLoaderIter.__next__` annotation), when its share of the step
time is above a threshold (option `threshold`, default 10%). With a single-process loader
(`num_workers=0`) every step loads its own batches, so the share is the median step's: a
preemption on a contended machine that lands in one step's loading is no input-bound loop.
With workers (which deliver in bursts) it is the total wait over the steps' time.

## Why is it slow?
While the loop waits for data, nothing else happens: on a GPU the device idles. Loading,
decoding and augmenting in the training process (or in too few workers) makes the step
input-bound.

## Example
```python
loader = DataLoader(dataset, batch_size=64)          # decodes in the training process
```

## Use instead
```python
loader = DataLoader(dataset, batch_size=64, num_workers=4, persistent_workers=True,
                    prefetch_factor=4)              # load ahead, in parallel
```

## Evidence
The wait per step and its share of the steps' time. When the batches are loaded in the
training process (`num_workers=0`), the host function that fills the wait, from the recorded
stack: the innermost function (the user's `__getitem__`, or a library's — an image
processor's resize) holding at least half of it, with its time per batch; and the `.item()`
calls per batch inside the loader: the Dataset reading its own CPU tensors, host overhead in
the loader, never a device sync. With worker processes their functions are not in the
training process's trace, and the finding says so.

When the loading runs in worker processes that already take every spare core of the machine
the run recorded (`num_workers` at the DataLoader's line ≥ usable cores − 1, from the trace's
`perftune.host`), more workers would compete with the training process for the same cores: a
wait under `error_share` is then the machine's limit, not a setting, and is not reported; a
larger one is, with advice to make each sample cheaper instead of adding workers.

## Options
`threshold` (default 0.10): report when the wait is at least this share of the step time.
`error_share` (default 0.30): above this share the finding is an error.

## Known problems
Workers need a picklable dataset and per-worker random seeds; a slow `__getitem__` (e.g.
decoding full-size images) may need fixing itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from perftune.analysis.efficiency import host_facts
from perftune.engine.context import Context
from perftune.engine.hazards import dataloader_location, loop_location
from perftune.engine.rewrite import suggestion
from perftune.engine.rule import Rule
from perftune.engine.types import Finding, Severity, Suggestion
from perftune.trace import categories as C
from perftune.trace import sync_metrics as sm
from perftune.trace.frames import is_user_frame, parse_python_function
from perftune.trace.groups import distinct, running_sums

# The DataLoader's own machinery around the Dataset's code: never "the function behind the wait".
_LOADER_INTERNALS = ("torch/utils/data/", "torch/multiprocessing/", "perftune/")


def _dataset_function(name: str) -> bool:
    """A python function event of code outside the DataLoader's machinery."""
    frame = parse_python_function(name)
    if frame is None:
        return False
    file = frame.file.replace("\\", "/")
    return not file.startswith("<") and not any(part in file for part in _LOADER_INTERNALS)


def loader_hot_spot(ctx: Context, rows: tuple[int, ...]) -> dict[str, Any] | None:
    """What fills a single-process DataLoader wait (`rows`: its `__next__` events): the
    innermost python function holding at least half of the wait (else the costliest), its
    time per batch and share, and the `.item()` calls per batch under the loader."""
    host = ctx.host
    wait = float(sum(host.dur[r] for r in rows))
    if not rows or wait <= 0:
        return None
    trace = ctx.trace
    # The rows under every wait, in order (a row under two waits counts twice, as it did).
    under = np.concatenate([host.under(r) for r in rows])
    python = host.cat[under] == C.PYTHON_FUNCTION
    items = int(np.count_nonzero(~python & host.is_op[under] & (host.names[under] == "aten::item")))
    # The python functions other than the loader's machinery (each distinct name parsed once:
    # one interned code per distinct name; a code of -1 reads the last string, as `names` does),
    # and each one's time added up in row order.
    strings = trace.strings("name")
    fn_rows = under[python]
    codes = trace.codes("name")[fn_rows].astype(np.int64)
    codes[codes < 0] += len(strings)
    present = distinct(codes)
    dataset = np.zeros(len(strings), dtype=bool)
    dataset[present] = [_dataset_function(str(strings[c])) for c in present.tolist()]
    keep = dataset[codes]
    inclusive = {str(strings[c]): us for c, _, us in
                 zip(*running_sums(codes[keep], host.dur[fn_rows[keep]]), strict=True)}
    if not inclusive and not items:
        return None  # no python stack under the loader (foreign trace, no with_stack)
    out: dict[str, Any] = {"item_calls_per_batch": round(items / len(rows), 1)}
    if inclusive:
        held = [(us, name) for name, us in inclusive.items() if us >= 0.5 * wait]
        us, name = min(held) if held else max((us, name) for name, us in inclusive.items())
        frame = parse_python_function(name)
        assert frame is not None
        out.update(function=frame.function, file=frame.file, line=frame.line,
                   user_code=is_user_frame(frame), ms_per_batch=round(us / len(rows) / 1000.0, 3),
                   share_of_wait=round(min(1.0, us / wait), 4))
    return out


class DataLoaderWait(Rule):
    code = "PFT101"
    name = "dataloader-wait"
    options: ClassVar[dict[str, Any]] = {"threshold": 0.10, "error_share": 0.30}

    def check(self, ctx: Context) -> Iterator[Finding]:
        wait = sm.dataloader_wait(ctx.host)
        if wait is None or wait.share < float(self.config["threshold"]):
            return
        # The wait happens where the loop asks for the next batch; the fix goes where the
        # DataLoader is built (the diff edits that line when it is in the same file).
        location = loop_location(ctx, wait.rows)
        site = dataloader_location(ctx, wait.rows)
        ms = wait.wait_us_per_step / 1000.0
        current = site.site.keyword("num_workers") if site is not None else None
        workers = 4
        saturated = None  # the usable cores, when the workers already take every spare one
        if current is not None and current.strip().isdigit() and int(current) > 0:
            workers = min(32, 2 * int(current))
            cores = _usable_cores(ctx)
            if not wait.single_process and cores is not None and int(current) >= max(1, cores - 1):
                saturated = cores
                if wait.share < float(self.config["error_share"]):
                    return  # a short wait with every core loading or training: the machine's limit
        knobs: dict[str, list[Any]] = {"num_workers": sorted({2, 4, 8, workers})}
        if not wait.single_process:
            knobs["prefetch_factor"] = [2, 4, 8]
        severity = Severity.ERROR if wait.share >= float(self.config["error_share"]) else Severity.WARNING
        hot = loader_hot_spot(ctx, wait.rows) if wait.single_process else None
        behind, cheaper = "", "(and a cheaper __getitem__)"
        if hot is not None and "function" in hot:
            behind = (f"; {hot['share_of_wait']:.0%} of it in {hot['function']} "
                      f"({Path(hot['file']).name}:{hot['line']}, {hot['ms_per_batch']:.2f} ms per batch)")
            if not hot["user_code"]:
                cheaper = (f"({hot['function']} is library code the Dataset calls: workers run it "
                           "in parallel; or do it once ahead of training)")
            else:
                cheaper = f"(and a cheaper {hot['function']})"
        if hot is not None and hot["item_calls_per_batch"] >= 1:
            behind += (f"; {hot['item_calls_per_batch']:.0f} scalar reads per batch (.item(), a "
                       "tensor used as an int) of the Dataset's CPU tensors: host overhead in the "
                       "loader, not a device sync")
        if not wait.single_process:
            behind = "; the loading runs in worker processes, whose functions this trace does not show"
        title = (f"Load batches ahead and in parallel: num_workers={workers}, "
                 f"persistent_workers=True {cheaper}")
        if saturated is not None:
            behind += (f"; its {current} workers already take every spare core of the "
                       f"{saturated} this run could use: more would compete with the training "
                       "process for them")
            title = ("Make each sample cheaper (decode/resize once ahead of training, lighter "
                     "transforms), or train where there are more cores: more workers cannot help here")
        yield self.finding(
            f"The step waits for the DataLoader {wait.share:.0%} of the time ({ms:.2f} ms/step"
            f" over {len(wait.rows)} batches, "
            f"{'in the training process' if wait.single_process else 'with worker processes'})"
            f"{behind}",
            location=location, severity=severity,
            suggestion=Suggestion(title=title, before=site.location.source.strip()
                                  if site is not None and site.location.source else None)
            if saturated is not None else suggestion(
                self.code, title,
                site.location if site is not None else location,
                site.path if site is not None else None,
                after=f"DataLoader(..., num_workers={workers}, persistent_workers=True, "
                      "prefetch_factor=4)",
                params={"num_workers": workers}, knobs=knobs),
            evidence={"wait_ms_per_step": round(ms, 4), "share": round(wait.share, 4),
                      "batches": len(wait.rows), "single_process": wait.single_process,
                      "steps": wait.steps, **({"host_function": hot} if hot else {})},
            est_saving_ms_per_step=round(ms, 4), count=len(wait.rows))


def _usable_cores(ctx: Context) -> int | None:
    """The cores the profiled process could use, as `perftune profile` recorded them."""
    host = host_facts(ctx.trace)
    cores = (host or {}).get("usable_cores") or (host or {}).get("cpu_count")
    return int(cores) if cores else None
