"""One step laid out on its host threads and device streams, for a quick look in the report.

Only the top-level operators of each host thread (what the step *called*), the sync waits and
the device work the step launched are kept, and at most `max_events` of them (the longest);
the full trace is for Perfetto.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from perftune.analysis.phases import MODULE_PREFIX, PHASE_LABELS, phase_segments
from perftune.trace import categories as C
from perftune.trace.metrics import device_event_steps, sync_call_mask
from perftune.trace.model import NO_ID, Trace, ancestors_in, has_ancestor

PERFETTO_URL = "https://ui.perfetto.dev"
PHASE_LANE = "phases"
COMPILED_LANE = "torch.compile"
_REGION = "Torch-Compiled Region: "
# Module levels drawn as lanes of their own (0: the model, 1: its children).
MODULE_LEVELS = 2


@dataclass(frozen=True)
class TimelineBar:
    lane: str
    kind: str  # op | dataloader | optimizer | sync | kernel | communication | memcpy | memset
    #            | module | a phase (analysis.phases.PHASES)
    name: str
    start_ms: float  # from the start of the step
    dur_ms: float
    detail: str = ""  # op chain and source line, for the hover


@dataclass(frozen=True)
class StepTimeline:
    step_name: str
    rank: int
    dur_ms: float
    lanes: tuple[str, ...]
    bars: tuple[TimelineBar, ...]
    total_events: int  # candidates before the cap

    @property
    def truncated(self) -> bool:
        return len(self.bars) < self.total_events


def _pick_step(trace: Trace) -> int | None:
    """The step of median duration on the first rank: typical, not the warm-up outlier."""
    if not trace.steps:
        return None
    first = trace.steps[0].rank
    candidates = [k for k, s in enumerate(trace.steps) if s.rank == first]
    candidates.sort(key=lambda k: trace.steps[k].dur)
    return candidates[len(candidates) // 2]


def _host_kind(name: str) -> str:
    if name.startswith(C.DATALOADER_PREFIX):
        return "dataloader"
    if name.startswith(C.OPTIMIZER_STEP_PREFIX):
        return "optimizer"
    return "op"


def _device_kinds(trace: Trace, rows: np.ndarray, cats: np.ndarray) -> list[str]:
    """The lane kind of device rows (`cats`: their categories): a collective kernel is
    communication, memcpy and memset are themselves, any other device work is a kernel."""
    kinds = np.full(len(rows), "kernel", dtype=object)
    kinds[cats == C.MEMCPY] = "memcpy"
    kinds[cats == C.MEMSET] = "memset"
    kinds[(cats == C.KERNEL) & trace.comm_kernel_mask[rows]] = "communication"
    out: list[str] = kinds.tolist()
    return out


def _details(trace: Trace, rows: list[int], is_dev: np.ndarray) -> dict[int, str]:
    """Hover text per bar: the op chain that led to it (for device work, the chain of the host
    call that launched it) and the user's source line, when the trace has Python stacks."""
    launch = trace.launch_of_device_event
    hosts = [int(launch[r]) if is_dev[r] and launch[r] != NO_ID else r for r in rows]
    frames = trace.user_frames(hosts) if trace.has_python_stacks else [None] * len(hosts)
    out: dict[int, str] = {}
    chained = [host for row, host in zip(rows, hosts, strict=True) if host != row or not is_dev[row]]
    chains = iter(trace.op_chains(chained))
    for row, host, frame in zip(rows, hosts, frames, strict=True):
        parts = []
        if host != row or not is_dev[row]:
            chain = next(chains)
            if len(chain) > 1 or host != row:
                parts.append(" → ".join(chain[-6:]))
        if frame is not None:
            parts.append(f"{frame.file}:{frame.line}" + (f" in {frame.function}" if frame.function else ""))
        if parts:
            out[row] = "<br>".join(parts)
    return out


def step_timeline(trace: Trace, max_events: int = 1500,
                  compiled: Mapping[str, str] | None = None) -> StepTimeline | None:
    """The step's lanes; `compiled` (compile id → hover text) describes the torch.compile'd
    graphs, drawn on a lane of their own from their `Torch-Compiled Region` ranges."""
    k = _pick_step(trace)
    if k is None:
        return None
    step = trace.steps[k]
    # Columns and interned strings (no pandas frame).
    ts = trace.col("ts")
    dur = trace.col("dur")
    cat_codes, cat_names = trace.codes("cat"), np.asarray(trace.strings("cat"), dtype=object)
    name_codes, name_strings = trace.codes("name"), np.asarray(trace.strings("name"), dtype=object)
    on_rank = trace.col("rank") == step.rank
    is_dev = trace.col("is_device")
    in_window = on_rank & ~is_dev & (ts >= step.start) & (ts < step.end)
    is_op = np.isin(cat_names, list(C.OP_CATS))[cat_codes]
    is_step_marker = np.asarray([n.startswith(C.PROFILER_STEP_PREFIX) for n in name_strings],
                                dtype=bool)[name_codes]

    def name(row: int) -> str:
        return str(name_strings[name_codes[row]])

    parent = trace.parent

    # rows: (row, kind); a host op is top-level when no enclosing op other than the step
    # marker exists (python frames in between do not count).
    chosen: list[tuple[int, str]] = []
    enclosing = is_op & ~is_step_marker
    host_ops = np.flatnonzero(in_window & enclosing)
    for row in host_ops[~has_ancestor(parent, host_ops, enclosing)].tolist():
        chosen.append((row, _host_kind(name(row))))
    chosen.extend((row, "sync") for row in np.flatnonzero(in_window & sync_call_mask(trace)).tolist())
    work = np.isin(cat_names, list(C.DEVICE_WORK_CATS))[cat_codes] & on_rank
    dev_rows = np.flatnonzero(work & (device_event_steps(trace) == k))
    chosen.extend(zip(dev_rows.tolist(), _device_kinds(trace, dev_rows, cat_names[cat_codes[dev_rows]]),
                      strict=True))
    total = len(chosen)
    if total > max_events:
        chosen.sort(key=lambda rk: -dur[rk[0]])
        chosen = chosen[:max_events]

    # Module ranges of the first levels, each level a lane.
    is_module = np.asarray([n.startswith(MODULE_PREFIX) for n in name_strings], dtype=bool)[name_codes]
    module_rows = np.flatnonzero(in_window & is_module)
    module_lane: dict[int, str] = {}
    depths = ancestors_in(parent, module_rows, is_module)
    for row, depth in zip(module_rows.tolist(), depths.tolist(), strict=True):
        if depth < MODULE_LEVELS:
            module_lane[row] = f"modules · level {depth}"
    chosen.extend((row, "module") for row in module_lane)
    details = _details(trace, [row for row, kind in chosen], is_dev)

    pids = trace.col("pid")
    tids = trace.col("tid")
    devices = trace.col("device")
    streams = trace.col("stream")
    bars: list[TimelineBar] = []
    lane_order: dict[str, tuple[int, float]] = {}
    for row, kind in chosen:
        if row in module_lane:
            lane = module_lane[row]
            order = -1
        elif is_dev[row]:
            device = int(devices[row]) if devices[row] != NO_ID else int(pids[row])
            stream = int(streams[row]) if streams[row] != NO_ID else int(tids[row])
            lane = f"device {device} · stream {stream}"
            order = 1
        else:
            key = (step.rank, int(pids[row]), int(tids[row]))
            lane = trace.thread_names.get(key) or f"thread {int(tids[row])}"
            order = 0
        first = lane_order.get(lane)
        if first is None or ts[row] < first[1]:
            lane_order[lane] = (order, float(ts[row]) if first is None else min(first[1], float(ts[row])))
        text = name(row)
        bars.append(TimelineBar(lane=lane, kind=kind,
                                name=text[len(MODULE_PREFIX):] if kind == "module" else text,
                                start_ms=(float(ts[row]) - step.start) / 1000.0,
                                dur_ms=float(dur[row]) / 1000.0, detail=details.get(row, "")))
    # torch.compile'd regions: one bar per region; a gap between two of them in one call is
    # eager code a graph break left between graphs.
    is_region = np.asarray([n.startswith(_REGION) for n in name_strings], dtype=bool)[name_codes]
    region_rows = np.flatnonzero(in_window & is_region).tolist()
    if region_rows:
        lane_order[COMPILED_LANE] = (-1, step.start)
    for row in region_rows:
        compile_id = name(row)[len(_REGION):]
        bars.append(TimelineBar(lane=COMPILED_LANE, kind="compiled", name=f"graph {compile_id}",
                                start_ms=(float(ts[row]) - step.start) / 1000.0,
                                dur_ms=float(dur[row]) / 1000.0,
                                detail=(compiled or {}).get(compile_id, "")))
    segments = phase_segments(trace, k)
    if segments:
        lane_order[PHASE_LANE] = (-2, step.start)
    for phase, a, b in segments:
        bars.append(TimelineBar(lane=PHASE_LANE, kind=phase, name=PHASE_LABELS[phase],
                                start_ms=(a - step.start) / 1000.0, dur_ms=(b - a) / 1000.0))
    lanes = tuple(sorted(lane_order, key=lambda name: (*lane_order[name], name)))
    bars.sort(key=lambda b: b.start_ms)
    return StepTimeline(step_name=step.name, rank=step.rank, dur_ms=step.dur / 1000.0,
                        lanes=lanes, bars=tuple(bars), total_events=total)
