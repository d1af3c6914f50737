"""Time per nn.Module: forward and backward, self and total, share of the step, calls per step.

Forward time comes from the module ranges of the trace: `nn.Module: Conv2d_2` frames that the
Python tracer records (`with_stack=True`, which `perftune profile` turns on by default) or that
`with_modules` adds. The tree is their nesting; a module's path names its ancestors
(`Net_0.Conv2d_2`: the profiler numbers instances of a class in the order it first meets them).

Names: on traces recorded by `perftune profile` the capture wrote the attribute path of every
module its first profiled step called (`perftune_modules` in the trace header, from a module
pre-hook: capture/child/modulenames.py); each `nn.Module: Conv2d_2` range is paired with that
step's calls of the same class in the same order, so the module is named `Net.features.3`
(path) / `features.3` (name). Foreign traces, and classes whose calls do not pair up, keep the
profiler's names, and the note says so.

Backward time is attributed to the module whose forward produced it: each backward node
(`autograd::engine::evaluate_function: …`) is linked by a `fwdbwd` flow to the forward operator
that recorded it, and that operator's innermost module range owns it. Backward nodes without a
forward link (AccumulateGrad, custom engines) are counted as unattributed, not guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from perftune._dataclasses import lazy_dataclass
from perftune.analysis.efficiency import label
from perftune.analysis.phases import BACKWARD_PREFIX, MODULE_PREFIX
from perftune.documents import Modules
from perftune.documents import ModuleTime as ModuleRow
from perftune.trace.model import NO_ID, Trace, nearest_ancestor
from perftune.trace.roofline import Peaks, peaks, roofline_columns
from perftune.trace.tables import Tables

__all__ = ["MAX_MODULES", "ModuleTime", "ModuleTree", "leaf_ranking", "module_times", "modules_document"]

# summary.json keeps this many modules (by own time); a model has rarely more.
MAX_MODULES = 2000


@lazy_dataclass(frozen=True)
class ModuleTime:
    """One module instance (by its path), milliseconds per step."""

    path: str
    name: str
    parent: str | None
    depth: int
    calls_per_step: float
    forward_ms: float
    forward_self_ms: float
    backward_ms: float
    backward_self_ms: float
    share: float  # (forward_ms + backward_ms) / mean step
    # The costed operators the module ran itself (forward, and its backward through the
    # fwdbwd links), per step: FLOPs, bytes, time (µs), calls, and the dtype with most time.
    op_flops: float = 0.0
    op_bytes: float = 0.0
    op_us: float = 0.0
    op_calls: float = 0.0
    op_dtype: str | None = None

    @property
    def total_ms(self) -> float:
        return self.forward_ms + self.backward_ms


@dataclass(frozen=True)
class ModuleTree:
    source: str  # "trace" | "none"
    note: str
    steps: int
    step_ms: float
    modules: tuple[ModuleTime, ...]  # largest total first
    unattributed_backward_ms: float
    names: str = "profiler"  # "attribute": paths from the capture's name map; else the profiler's


def _unit_of(trace: Trace, rows: np.ndarray, is_unit: np.ndarray) -> np.ndarray:
    """Each row's backward node: itself when it is one, else its nearest enclosing one."""
    up = nearest_ancestor(trace.parent, is_unit)
    return np.where(is_unit[rows], rows, up[rows])


def _own_costs(trace: Trace, tables: Tables | None, in_step: np.ndarray, parent_mod: np.ndarray,
               is_unit: np.ndarray, unit_path: dict[int, str], path_of: Any) -> dict[str, dict[str, Any]]:
    """Per module path: FLOPs, bytes, time and calls of the costed operators it ran itself
    (trace/roofline.py's outermost costed op of each chain): forward ops by their innermost
    module range, backward ops by the module their autograd node's forward link names."""
    points = roofline_columns(trace, tables)
    if not len(points):
        return {}
    rows = points.col("row")
    keep = in_step[rows]
    rows = rows[keep]
    dtypes = ["" if d is None else d for d in points.col("dtype")[keep].tolist()]
    unit = nearest_ancestor(trace.parent, is_unit)
    out: dict[str, dict[str, Any]] = {}
    for row, flops, nbytes, dur, dtype in zip(
            rows.tolist(), points.col("flops")[keep].tolist(), points.col("bytes")[keep].tolist(),
            points.col("dur_us")[keep].tolist(), dtypes, strict=True):
        u = row if is_unit[row] else int(unit[row])
        if u != NO_ID:
            path = unit_path.get(u)
        else:
            m = int(parent_mod[row])
            path = path_of(m) if m != NO_ID else None
        if path is None:
            continue
        acc = out.setdefault(path, {"flops": 0.0, "bytes": 0.0, "us": 0.0, "calls": 0, "by_dtype": {}})
        acc["flops"] += float(flops)
        acc["bytes"] += float(nbytes)
        acc["us"] += float(dur)
        acc["calls"] += 1
        acc["by_dtype"][dtype] = acc["by_dtype"].get(dtype, 0.0) + float(dur)
    return out


def _per_step(cost: dict[str, Any] | None, n: int) -> dict[str, Any]:
    if not cost:
        return {}
    by_dtype = cost["by_dtype"]
    dtype = max(by_dtype, key=by_dtype.get) if by_dtype else ""
    return {"op_flops": cost["flops"] / n, "op_bytes": cost["bytes"] / n, "op_us": cost["us"] / n,
            "op_calls": cost["calls"] / n, "op_dtype": dtype or None}


def module_times(trace: Trace, tables: Tables | None = None) -> ModuleTree:
    steps = [s for s in trace.steps]
    n_steps = len(steps)
    step_ms = float(np.mean([s.dur for s in steps])) / 1000.0 if steps else 0.0
    host = ~trace.is_device
    is_module = host & trace.name_startswith(MODULE_PREFIX)
    if not is_module.any():
        return ModuleTree(source="none", steps=n_steps, step_ms=step_ms, modules=(),
                          unattributed_backward_ms=0.0,
                          note="no nn.Module ranges in this trace: record it with Python stacks "
                               "(perftune profile does; torch.profiler(with_stack=True) or "
                               "with_modules=True) for the module view")
    ts = trace.col("ts")
    dur = trace.col("dur")
    rank = trace.col("rank")
    in_step = trace.step_of(ts, rank) >= 0
    parent_mod = nearest_ancestor(trace.parent, is_module)
    mod_rows = np.flatnonzero(is_module)
    names = {int(r): trace.name_of(int(r))[len(MODULE_PREFIX):] for r in mod_rows.tolist()}
    qualified, names_note = attribute_paths(trace, mod_rows, names)
    paths: dict[int, str] = {}

    def path_of(r: int) -> str:
        if r in paths:
            return paths[r]
        if names[r] in qualified:
            paths[r] = qualified[names[r]]
            return paths[r]
        chain = []
        a = r
        while a != NO_ID and names[a] not in qualified:
            chain.append(names[a])
            a = int(parent_mod[a])
        if a != NO_ID:  # the nearest named ancestor's path, then the profiler's names below it
            chain.append(qualified[names[a]])
        paths[r] = ".".join(reversed(chain))
        return paths[r]

    fwd: dict[str, float] = {}
    fwd_child: dict[str, float] = {}
    calls: dict[str, int] = {}
    parent_of: dict[str, str | None] = {}
    for r in mod_rows[in_step[mod_rows]].tolist():
        p = path_of(r)
        fwd[p] = fwd.get(p, 0.0) + float(dur[r])
        calls[p] = calls.get(p, 0) + 1
        up = int(parent_mod[r])
        parent_of[p] = path_of(up) if up != NO_ID else None
        if up != NO_ID:
            pp = path_of(up)
            fwd_child[pp] = fwd_child.get(pp, 0.0) + float(dur[r])
    # Backward: node → forward op (fwdbwd flow) → innermost module of that op.
    is_unit = host & trace.name_startswith(BACKWARD_PREFIX)
    bwd_self: dict[str, float] = {}
    attributed_units: set[int] = set()
    unit_path: dict[int, str] = {}
    src, dst = trace.fwdbwd_pairs()
    if len(trace.flow_columns["cat"]):
        ok = (src != NO_ID) & (dst != NO_ID)
        src, dst = src[ok], dst[ok]
        units = _unit_of(trace, dst, is_unit) if len(dst) else dst
        seen: set[int] = set()
        for s, u in zip(src.tolist(), units.tolist(), strict=True):
            if u == NO_ID or u in seen or not in_step[u]:
                continue
            seen.add(u)
            m = int(parent_mod[s]) if not is_module[s] else s
            if m == NO_ID:
                continue
            attributed_units.add(u)
            p = path_of(m)
            unit_path[u] = p
            bwd_self[p] = bwd_self.get(p, 0.0) + float(dur[u])
            parent_of.setdefault(p, path_of(int(parent_mod[m])) if parent_mod[m] != NO_ID else None)
    # Outermost backward nodes only (reentrant backward nests them).
    unit_rows = np.flatnonzero(is_unit & in_step)
    outer = nearest_ancestor(trace.parent, is_unit)[unit_rows] == NO_ID
    unattributed = float(sum(dur[u] for u in unit_rows[outer].tolist() if u not in attributed_units))
    all_paths = set(fwd) | set(bwd_self)
    bwd_total = dict(bwd_self)
    # Add each module's own backward to all its ancestors, in a fixed order: the sums must not
    # depend on the set's order (string hashes change per process).
    for p in sorted(all_paths):
        q = parent_of.get(p)
        while q is not None:
            bwd_total[q] = bwd_total.get(q, 0.0) + bwd_self.get(p, 0.0)
            q = parent_of.get(q)
    per = max(n_steps, 1) * 1000.0
    qualified_paths = set(qualified.values())
    costs = _own_costs(trace, tables, in_step, parent_mod, is_unit, unit_path, path_of)
    rows = []
    for p in all_paths:
        f = fwd.get(p, 0.0) / per
        b = bwd_total.get(p, 0.0) / per
        rows.append(ModuleTime(
            path=p, name=_display_name(p, qualified_paths), parent=parent_of.get(p), depth=p.count("."),
            calls_per_step=calls.get(p, 0) / max(n_steps, 1), forward_ms=f,
            forward_self_ms=max(0.0, fwd.get(p, 0.0) - fwd_child.get(p, 0.0)) / per,
            backward_ms=b, backward_self_ms=bwd_self.get(p, 0.0) / per,
            share=(f + b) / step_ms if step_ms > 0 else 0.0,
            **_per_step(costs.get(p), max(n_steps, 1))))
    rows.sort(key=lambda m: (-m.total_ms, m.path))
    return ModuleTree(source="trace", note=names_note, names="attribute" if qualified else "profiler",
                      steps=n_steps, step_ms=step_ms, modules=tuple(rows),
                      unattributed_backward_ms=unattributed / per)


def _display_name(path: str, qualified: set[str]) -> str:
    """`Net.features.3` → `features.3` (its attribute path in its root); the root keeps its
    name; profiler paths (`Net_0.Conv2d_2`) → `Conv2d_2`."""
    if path in qualified:
        root, _, rest = path.partition(".")
        return rest or root
    return path.rsplit(".", 1)[-1]


def attribute_paths(trace: Trace, mod_rows: np.ndarray, labels: dict[int, str]) -> tuple[dict[str, str], str]:
    """Profiler label (`Conv2d_2`) → attribute path (`Net.features.4`) from the capture's name
    map, and a note on what could not be named (see the module doc)."""
    header = trace.ranks[0].header.get("perftune_modules") if trace.ranks else None
    calls = header.get("calls") if isinstance(header, dict) else None
    if not isinstance(calls, dict) or not trace.steps:
        return {}, ("module names are the profiler's (class and instance number): this trace "
                    "has no name map (traces recorded by perftune profile have one)")
    rank0 = trace.ranks[0].rank
    first = next((s for s in trace.steps if s.rank == rank0), None)
    if first is None:
        return {}, "module names are the profiler's: no step on the first rank"
    ts = trace.col("ts")
    rank = trace.col("rank")
    rows = [int(r) for r in mod_rows.tolist()
            if rank[r] == rank0 and first.start <= ts[r] < first.end]
    rows.sort(key=lambda r: (ts[r], r))
    seen: dict[str, list[str]] = {}
    for r in rows:
        label = labels[r]
        cls = label.rsplit("_", 1)[0]
        seen.setdefault(cls, []).append(label)
    out: dict[str, str] = {}
    unpaired: list[str] = []
    for cls, order in seen.items():
        recorded = calls.get(cls)
        if not isinstance(recorded, list) or len(recorded) != len(order):
            unpaired.append(cls)
            continue
        pairs: dict[str, str] = {}
        ok = True
        for label, path in zip(order, recorded, strict=True):
            if not isinstance(path, str) or pairs.setdefault(label, path) != path:
                ok = False
                break
        # One instance, one path: two labels with one path would merge two modules.
        if ok and len(set(pairs.values())) == len(pairs):
            out.update(pairs)
        else:
            unpaired.append(cls)
    note = ""
    if unpaired:
        note = ("the profiler's names kept for " + ", ".join(sorted(unpaired)[:5])
                + (" and more" if len(unpaired) > 5 else "")
                + ": their calls in the first profiled step do not pair with the capture's name map")
    return out, note


def leaf_ranking(tree: ModuleTree) -> list[ModuleTime]:
    """The modules by their own time (self forward + self backward): the ones to look at first
    (a root's total is the whole model and says nothing)."""
    return sorted(tree.modules, key=lambda m: (-(m.forward_self_ms + m.backward_self_ms), m.path))


def _efficiency(m: ModuleTime, roofs: Peaks) -> dict[str, Any]:
    """The module's own operators against the roofs (analysis/efficiency.label)."""
    if m.op_us <= 0:
        return {}
    f_s, b_s, intensity, bound, percent = label(m.op_flops, m.op_bytes, m.op_us, m.op_calls,
                                                roofs.flops_for(m.op_dtype), roofs)
    return {"op_ms": m.op_us / 1000.0, "flops_per_s": f_s, "bytes_per_s": b_s,
            "intensity": intensity if math.isfinite(intensity) else None, "bound": bound,
            "percent_of_peak": percent}


def modules_document(trace: Trace, tree: ModuleTree | None = None, tables: Tables | None = None,
                     roofs: Peaks | None = None) -> Modules:
    """summary.json's `modules` section: ranked by own time, largest first, each module's own
    operators labelled against the machine's peaks (`roofs`; default: roofline.peaks)."""
    tree = module_times(trace, tables) if tree is None else tree
    roofs = peaks(trace, measure=False) if roofs is None else roofs
    step = tree.step_ms
    return Modules(
        source="trace" if tree.source == "trace" else "none", note=tree.note,
        names="attribute" if tree.names == "attribute" else "profiler", steps=tree.steps,
        step_ms=step, unattributed_backward_ms=tree.unattributed_backward_ms,
        modules=[ModuleRow(path=m.path, name=m.name, parent=m.parent, depth=m.depth,
                           calls_per_step=m.calls_per_step, forward_ms=m.forward_ms,
                           forward_self_ms=m.forward_self_ms, backward_ms=m.backward_ms,
                           backward_self_ms=m.backward_self_ms,
                           self_ms=m.forward_self_ms + m.backward_self_ms, total_ms=m.total_ms,
                           share=m.share,
                           self_share=(m.forward_self_ms + m.backward_self_ms) / step if step > 0 else 0.0,
                           **_efficiency(m, roofs))
                 for m in leaf_ranking(tree)[:MAX_MODULES]])
