"""Per-operator figures of one analysed trace, for comparing runs: host-op self time and kernel
time inside the steps, by (kind, name, shape). `report/compare` matches them across two runs
and only renders the result."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from perftune.trace import categories as C
from perftune.trace.metrics import device_event_steps
from perftune.trace.model import NO_ID, Trace

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class OpStat:
    """One operator or kernel, matched across runs by kind, name and shape."""

    kind: str  # "op" (host operator, self time) | "kernel" (device time)
    name: str
    shape: str | None  # input dims of an op, grid×block of a kernel; None when not recorded
    calls_per_step: float
    ms_per_step: float


def categorical_strings(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, categories as str) of a categorical column: per-row strings without converting
    every row (`astype(str)` on a million-event trace takes seconds)."""
    cat = column.astype("category")
    return cat.cat.codes.to_numpy(), np.asarray([str(c) for c in cat.cat.categories], dtype=object)


def shape_text(value: Any) -> str | None:
    """Input dims or launch dims as compact text (`[[8,16],[16]]`), None when not recorded."""
    if value is None or value == [] or value == "":
        return None
    return json.dumps(value, separators=(",", ":"), default=str).replace('"', "")


def op_stats_per_step(trace: Trace) -> list[OpStat]:
    """Host-op self time and kernel time inside the steps, per step, by (kind, name, shape):
    what `perftune diff` matches across two runs."""
    n_steps = max(1, len(trace.steps))
    ts = trace.col("ts")
    dur = trace.col("dur")
    name_codes, name_strings = trace.codes("name"), np.asarray(trace.strings("name"), dtype=object)
    cat_codes, cat_names = trace.codes("cat"), np.asarray(trace.strings("cat"), dtype=object)
    is_op = np.isin(cat_names, list(C.OP_CATS))[cat_codes] & ~trace.col("is_device")
    # Step annotations would otherwise show up as the biggest "operator" of all.
    is_op &= ~np.asarray([n.startswith(C.PROFILER_STEP_PREFIX) for n in name_strings],
                         dtype=bool)[name_codes]
    in_step = trace.step_of(ts, trace.col("rank")) != NO_ID
    parent = trace.parent
    child = np.zeros(trace.n)
    rows = np.flatnonzero(is_op)
    par = parent[rows]
    has_parent = par != NO_ID
    np.add.at(child, par[has_parent], dur[rows][has_parent])
    self_us = np.maximum(0.0, dur - child)
    acc: dict[tuple[str, str, str | None], list[float]] = {}
    for row in np.flatnonzero(is_op & in_step).tolist():
        key = ("op", str(name_strings[name_codes[row]]), shape_text(trace.input_dims(row)))
        slot = acc.setdefault(key, [0.0, 0.0])
        slot[0] += 1
        slot[1] += self_us[row]
    kernels = (cat_names == C.KERNEL)[cat_codes] & (device_event_steps(trace) != NO_ID)
    for row in np.flatnonzero(kernels).tolist():
        grid, block = trace.launch_dims(row)
        shape = f"{shape_text(grid)}×{shape_text(block)}" if grid or block else None
        slot = acc.setdefault(("kernel", str(name_strings[name_codes[row]]), shape), [0.0, 0.0])
        slot[0] += 1
        slot[1] += dur[row]
    return [OpStat(kind, name, shape, calls / n_steps, us / 1000.0 / n_steps)
            for (kind, name, shape), (calls, us) in acc.items()]
