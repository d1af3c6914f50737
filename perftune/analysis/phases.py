"""The phases of every step: where each instant of a step window went, named.

Each step window is cut into elementary segments at every boundary of the phase intervals, and
each segment is given to the highest-priority phase covering it (`PHASES`, in priority order).
What no phase covers is host time with no operator running — the Python between ops — so the
phases partition the step: they sum to its duration exactly, and nothing is a silent "other".

Where the intervals come from (all from the trace):

- profiler: torch.profiler's own `step()` / `stop()` frames (needs Python stacks);
- data: `enumerate(DataLoader)#…__next__` annotations;
- optimizer / zero_grad: `Optimizer.step#…` / `Optimizer.zero_grad#…` annotations, clipped to
  the step (the profiler stop run inside the last optimizer call is the profiler's);
- backward: `autograd::engine::evaluate_function` events on any thread, the Python `backward`
  frame around them, and the gaps between them when no other phase ran there;
- forward: `nn.Module` ranges (Python stacks, or `with_modules`), the operators whose
  backward the trace links (`fwdbwd` flows) and every operator of the step that ends before
  its first backward node: the model and the loss;
- sync: host↔device synchronisation calls outside the phases above;
- other ops: every other operator (logging, metrics, `.item()`, tensor bookkeeping);
- python: no operator running on the step's main thread.

On a trace with device activity each phase also says what the device did meanwhile: compute,
communication, memcpy/memset, idle (a partition of the phase's time, compute first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perftune.documents import PhaseDevice, Phases, PhaseTime, StepPhaseTimes
from perftune.trace import categories as C
from perftune.trace.metrics import sync_call_mask
from perftune.trace.model import NO_ID, Step, Trace
from perftune.trace.tables import Tables

__all__ = ["DEVICE_PARTS", "PHASES", "PHASE_LABELS", "StepPhases", "main_threads", "mean_device",
           "mean_phases", "optimizer_ms_per_step", "phase_segments", "phase_table", "phases_document", "step_phases"]

# Highest priority first.
PHASES = ("profiler", "data", "optimizer", "zero_grad", "backward", "forward", "sync",
          "other_ops", "python")
PHASE_LABELS = {
    "profiler": "profiler (its own step/stop)",
    "data": "data wait (DataLoader)",
    "optimizer": "optimizer step",
    "zero_grad": "zero_grad",
    "backward": "backward",
    "forward": "forward (model + loss)",
    "sync": "host waits for the device",
    "other_ops": "other host ops (logging, .item(), bookkeeping)",
    "python": "Python between ops",
}
DEVICE_PARTS = ("compute", "communication", "memcpy", "idle")

MODULE_PREFIX = "nn.Module: "
BACKWARD_PREFIX = "autograd::engine::evaluate_function"
ZERO_GRAD_PREFIX = "Optimizer.zero_grad#"


@dataclass(frozen=True)
class StepPhases:
    """One step: milliseconds per phase (PHASES order) and, with device activity, what the
    device did in each phase (DEVICE_PARTS order)."""

    rank: int
    step: int
    dur_ms: float
    phase_ms: dict[str, float]
    device_ms: dict[str, dict[str, float]] | None


def _host_frame_mask(trace: Trace, predicate: object) -> np.ndarray:
    return trace.cat_mask({C.PYTHON_FUNCTION}) & trace.name_mask(predicate)  # type: ignore[arg-type]


def _is_backward_frame(name: str) -> bool:
    # `loss.backward()` → torch/_tensor.py(…): backward → torch/autograd/__init__.py(…): backward;
    # perftune's capture wraps it as perftune/capture/…: backward.
    return name.endswith("): backward") and ("torch/" in name or "perftune/capture" in name)


def _is_profiler_frame(name: str) -> bool:
    return name.startswith("torch/profiler/profiler.py(") and \
        name.endswith(("): step", "): stop", "): stop_trace", "): __exit__"))


def main_threads(trace: Trace) -> dict[int, tuple[int, int]]:
    """(pid, tid) of each rank's training loop: the thread holding ProfilerStep / optimizer
    annotations, else the one with the most operator time."""
    host = ~trace.is_device
    marks = host & (trace.name_startswith((C.PROFILER_STEP_PREFIX, C.OPTIMIZER_STEP_PREFIX,
                                           C.DATALOADER_PREFIX)))
    ops = host & trace.cat_mask(C.OP_CATS)
    rank = trace.col("rank")
    pid = trace.col("pid")
    tid = trace.col("tid")
    dur = trace.col("dur")
    out: dict[int, tuple[int, int]] = {}
    for r in trace.rank_ids:
        on = rank == r
        for mask in (marks & on, ops & on, host & on):
            rows = np.flatnonzero(mask)
            if len(rows):
                keys = list(zip(pid[rows].tolist(), tid[rows].tolist(), strict=True))
                totals: dict[tuple[int, int], float] = {}
                for k, d in zip(keys, dur[rows].tolist(), strict=True):
                    totals[k] = totals.get(k, 0.0) + d
                out[r] = max(totals, key=totals.__getitem__)
                break
    return out


def _fill_gaps(starts: np.ndarray, ends: np.ndarray, blockers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge intervals and bridge each gap between neighbours that no blocker starts in."""
    if len(starts) < 2:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], np.maximum.accumulate(ends[order])
    blockers = np.sort(blockers)
    # With e the running maximum of the ends, the merged interval open before interval i ends
    # at e[i - 1]; interval i starts a new one when it starts after that and a blocker starts
    # in between.
    last = e[:-1]
    k = np.searchsorted(blockers, last, side="left")
    blocked = (k < len(blockers)) & (blockers[np.minimum(k, max(len(blockers) - 1, 0))] < s[1:]) \
        if len(blockers) else np.zeros(len(last), dtype=bool)
    new = np.flatnonzero((s[1:] > last) & blocked) + 1
    out_s = np.concatenate([s[:1], s[new]]).astype(np.float64)
    out_e = np.concatenate([e[new - 1], e[-1:]]).astype(np.float64)
    return out_s, out_e


def _ops_before_backward(trace: Trace, ops: np.ndarray, backward_starts: np.ndarray,
                         steps: list[Step], ts: np.ndarray, end: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The operators of a step that end before its first backward event."""
    rows = np.flatnonzero(ops)
    if not len(rows) or not len(backward_starts) or not steps:
        return np.empty(0), np.empty(0)
    lo = np.asarray([s.start for s in steps])
    hi = np.asarray([s.end for s in steps])
    bw = np.sort(backward_starts)
    k = np.searchsorted(bw, lo, side="left")
    first_bw = np.where(k < len(bw), bw[np.minimum(k, len(bw) - 1)], np.inf)
    first_bw = np.where(first_bw < hi, first_bw, -np.inf)  # a step without backward: none
    order = np.argsort(lo, kind="stable")
    pos = np.searchsorted(lo[order], ts[rows], side="right") - 1
    ok = pos >= 0
    pos = order[np.maximum(pos, 0)]
    ok &= (ts[rows] < hi[pos]) & (end[rows] <= first_bw[pos])
    picked = rows[ok]
    return ts[picked], end[picked]


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """`np.unique` of float values; a stable (merge) sort, fast on the concatenated runs of
    mostly time-ordered starts and ends these boundaries are."""
    if np.isnan(values).any():
        return np.unique(values)
    ordered = np.sort(values, kind="stable")
    if len(ordered) < 2:
        return ordered
    fresh = np.empty(len(ordered), dtype=bool)
    fresh[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=fresh[1:])
    out: np.ndarray = ordered[fresh]
    return out


def _overlapping(starts: np.ndarray, ends: np.ndarray, lo: float, hi: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The intervals that reach into [lo, hi] (touching it included; NaN ends kept, as the
    coverage counts them)."""
    keep = ~((ends < lo) | (starts > hi))
    return starts[keep], ends[keep]


def _coverage(bounds: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each elementary segment [bounds[k], bounds[k+1]): whether an interval covers it."""
    keep = ends > starts
    size = len(bounds) + 1
    delta = (np.bincount(np.searchsorted(bounds, starts[keep], side="left"), minlength=size)
             - np.bincount(np.searchsorted(bounds, ends[keep], side="left"), minlength=size))
    covered: np.ndarray = np.cumsum(delta)[: len(bounds) - 1] > 0
    return covered


def step_phases(trace: Trace, tables: Tables | None = None) -> list[StepPhases]:
    """The phases of every step of every rank (trace.steps order)."""
    return _phases(trace, None, tables)[0]


def phase_table(trace: Trace, tables: Tables | None = None) -> list[StepPhases]:
    """step_phases as an analysis-context fact (`ctx.fact(phase_table)`): computed once per run,
    read by the summary and the rules alike, so the optimizer time of a finding is the
    summary's."""
    return step_phases(trace, tables)


def optimizer_ms_per_step(per_step: list[StepPhases]) -> float:
    """The optimizer's time per step (mean): Optimizer.step annotations inside the step window,
    less the profiler's own work run inside them — the one figure every output shows."""
    return mean_phases(per_step)["optimizer"]


def phase_segments(trace: Trace, step: int) -> list[tuple[str, float, float]]:
    """(phase, start µs, end µs) of step `step` (an index into trace.steps), in time order,
    neighbours of one phase merged: the phase lane of the report's timeline."""
    return _phases(trace, step)[1]


def _phases(trace: Trace, segments_for: int | None, tables: Tables | None = None
            ) -> tuple[list[StepPhases], list[tuple[str, float, float]]]:
    segments: list[tuple[str, float, float]] = []
    if not trace.steps or trace.n == 0:
        return [], segments
    ts = trace.col("ts")
    end = trace.col("end")
    rank = trace.col("rank")
    pid = trace.col("pid")
    tid = trace.col("tid")
    is_dev = trace.is_device
    host = ~is_dev
    ops = host & trace.cat_mask(C.OP_CATS) & ~trace.name_startswith(C.PROFILER_STEP_PREFIX)
    backward_ops = host & trace.name_startswith(BACKWARD_PREFIX)
    fwd_sources = np.zeros(trace.n, bool)
    src, _ = trace.fwdbwd_pairs()
    fwd_sources[src[src != NO_ID]] = True
    masks_any_thread = {
        "profiler": host & _host_frame_mask(trace, _is_profiler_frame),
        "data": host & trace.name_startswith(C.DATALOADER_PREFIX),
        "optimizer": host & trace.name_startswith(C.OPTIMIZER_STEP_PREFIX),
        "zero_grad": host & trace.name_startswith(ZERO_GRAD_PREFIX),
        "backward_ops": backward_ops,
        "backward_frames": host & _host_frame_mask(trace, _is_backward_frame),
        "modules": host & (trace.name_startswith(MODULE_PREFIX)),
    }
    main_only = {
        "forward_ops": ops & fwd_sources & ~backward_ops,
        "sync": sync_call_mask(trace, tables),
        "other_ops": ops,
    }
    has_device = trace.has_device_activity
    if has_device:
        kernel = trace.cat_mask(C.KERNEL_CATS) & is_dev
        comm = kernel & trace.comm_kernel_mask
        dev_masks = {"compute": kernel & ~comm, "communication": comm,
                     "memcpy": trace.cat_mask({C.MEMCPY, C.MEMSET}) & is_dev}
    threads = main_threads(trace)
    out: list[StepPhases | None] = [None] * len(trace.steps)
    by_rank: dict[int, list[int]] = {}
    for k, s in enumerate(trace.steps):
        by_rank.setdefault(s.rank, []).append(k)
    for r, ks in by_rank.items():
        if segments_for is not None:
            if segments_for not in ks:
                continue
            # One step's lane: the bounds and coverage inside a step depend only on the
            # intervals that overlap it (the steps of a rank do not overlap).
            ks = [segments_for]
        on_rank = rank == r
        main = threads.get(r)
        on_main = on_rank & (pid == main[0]) & (tid == main[1]) if main else on_rank

        def rows_of(mask: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            rows = np.flatnonzero(mask & where)
            return ts[rows], end[rows]

        iv = {name: rows_of(m, on_rank) for name, m in masks_any_thread.items()}
        iv.update({name: rows_of(m, on_main) for name, m in main_only.items()})
        # Operators before a step's first backward node are its forward too (the trace links
        # only the ops autograd recorded; batch norm's bookkeeping, DDP's forward hooks are not).
        before_s, before_e = _ops_before_backward(trace, ops & on_main, iv["backward_ops"][0],
                                                  [trace.steps[k] for k in ks], ts, end)
        iv["forward_ops"] = (np.concatenate([iv["forward_ops"][0], before_s]),
                             np.concatenate([iv["forward_ops"][1], before_e]))
        bw_s = np.concatenate([iv["backward_ops"][0], iv["backward_frames"][0]])
        bw_e = np.concatenate([iv["backward_ops"][1], iv["backward_frames"][1]])
        blockers = np.concatenate([iv[n][0] for n in ("data", "optimizer", "zero_grad", "modules")])
        intervals = {
            "profiler": iv["profiler"], "data": iv["data"], "optimizer": iv["optimizer"],
            "zero_grad": iv["zero_grad"],
            "backward": _fill_gaps(bw_s, bw_e, blockers),
            "forward": (np.concatenate([iv["modules"][0], iv["forward_ops"][0]]),
                        np.concatenate([iv["modules"][1], iv["forward_ops"][1]])),
            "sync": iv["sync"], "other_ops": iv["other_ops"],
        }
        dev_iv = {name: rows_of(m, on_rank) for name, m in dev_masks.items()} if has_device else {}
        lo = np.asarray([trace.steps[k].start for k in ks])
        hi = np.asarray([trace.steps[k].end for k in ks])
        if segments_for is not None:
            intervals = {name: _overlapping(*pair, lo[0], hi[0]) for name, pair in intervals.items()}
            dev_iv = {name: _overlapping(*pair, lo[0], hi[0]) for name, pair in dev_iv.items()}
        pieces = [lo, hi]
        for s_, e_ in [*intervals.values(), *dev_iv.values()]:
            pieces.append(np.clip(s_, lo.min(), hi.max()))
            pieces.append(np.clip(e_, lo.min(), hi.max()))
        bounds = _sorted_unique(np.concatenate(pieces))
        seg_len = np.diff(bounds)
        label = np.full(len(seg_len), len(PHASES) - 1, dtype=np.int64)  # python
        for p in reversed(range(len(PHASES) - 1)):
            s_, e_ = intervals[PHASES[p]]
            label[_coverage(bounds, s_, e_)] = p
        # Which step each segment belongs to (steps of a rank do not overlap; a segment
        # between steps belongs to none).
        mid = bounds[:-1] + seg_len / 2.0
        order = np.argsort(lo, kind="stable")
        pos = np.searchsorted(lo[order], mid, side="right") - 1
        inside = pos >= 0
        pos = np.maximum(pos, 0)
        inside &= mid < hi[order][pos]
        seg_step = np.where(inside, order[pos], -1)
        n_steps = len(ks)
        # bincount adds in index order, as np.add.at did: the same sums to the last bit.
        cell = seg_step[inside] * len(PHASES) + label[inside]
        sums = np.bincount(cell, weights=seg_len[inside],
                           minlength=n_steps * len(PHASES)).reshape(n_steps, len(PHASES))
        dev_sums = None
        if has_device:
            part = np.full(len(seg_len), len(DEVICE_PARTS) - 1, dtype=np.int64)  # idle
            for q in reversed(range(len(DEVICE_PARTS) - 1)):
                s_, e_ = dev_iv[DEVICE_PARTS[q]]
                part[_coverage(bounds, s_, e_)] = q
            dev_cell = cell * len(DEVICE_PARTS) + part[inside]
            dev_sums = np.bincount(dev_cell, weights=seg_len[inside],
                                   minlength=n_steps * len(PHASES) * len(DEVICE_PARTS)
                                   ).reshape(n_steps, len(PHASES), len(DEVICE_PARTS))
        if segments_for is not None:
            mine = np.flatnonzero(seg_step == ks.index(segments_for))
            for i in mine.tolist():
                name = PHASES[int(label[i])]
                a, b = float(bounds[i]), float(bounds[i + 1])
                if segments and segments[-1][0] == name and segments[-1][2] == a:
                    segments[-1] = (name, segments[-1][1], b)
                else:
                    segments.append((name, a, b))
        for j, k in enumerate(ks):
            step = trace.steps[k]
            phase_ms = {p: float(sums[j, i]) / 1000.0 for i, p in enumerate(PHASES)}
            device_ms = None
            if dev_sums is not None:
                device_ms = {p: {d: float(dev_sums[j, i, q]) / 1000.0
                                 for q, d in enumerate(DEVICE_PARTS)}
                             for i, p in enumerate(PHASES)}
            out[k] = StepPhases(rank=step.rank, step=step.index, dur_ms=step.dur / 1000.0,
                                phase_ms=phase_ms, device_ms=device_ms)
    return [s for s in out if s is not None], segments


def mean_phases(per_step: list[StepPhases]) -> dict[str, float]:
    """Mean milliseconds per step of each phase (the statistic the step breakdown uses)."""
    if not per_step:
        return {p: 0.0 for p in PHASES}
    return {p: float(np.mean([s.phase_ms[p] for s in per_step])) for p in PHASES}


def mean_device(per_step: list[StepPhases]) -> dict[str, dict[str, float]] | None:
    rows = [s.device_ms for s in per_step if s.device_ms is not None]
    if not rows:
        return None
    return {p: {d: float(np.mean([r[p][d] for r in rows])) for d in DEVICE_PARTS} for p in PHASES}


def phases_document(trace: Trace, per_step: list[StepPhases] | None = None) -> Phases:
    """summary.json's `phases` section."""
    per_step = step_phases(trace) if per_step is None else per_step
    mean = mean_phases(per_step)
    device = mean_device(per_step)
    step_ms = float(np.mean([s.dur_ms for s in per_step])) if per_step else 0.0
    errors = [abs(sum(s.phase_ms.values()) - s.dur_ms) / s.dur_ms for s in per_step if s.dur_ms > 0]
    return Phases(
        names=list(PHASES), mean_step_ms=step_ms,
        mean=[PhaseTime(name=p, label=PHASE_LABELS[p], ms=mean[p],
                        share=mean[p] / step_ms if step_ms > 0 else 0.0,
                        device=None if device is None else PhaseDevice(
                            compute_ms=device[p]["compute"],
                            communication_ms=device[p]["communication"],
                            memcpy_ms=device[p]["memcpy"], idle_ms=device[p]["idle"]))
              for p in PHASES],
        per_step=[StepPhaseTimes(rank=s.rank, step=s.step, dur_ms=s.dur_ms, phases=dict(s.phase_ms))
                  for s in per_step],
        max_sum_error=max(errors, default=0.0))
