"""Why head differs from base: one profiled launch per side, compared.

The timing verdict says *whether* step time changed; this says *what* changed: which
categories and operators/kernels got slower, and which problems are new in head (a new
host↔device sync is the usual cause). Structural changes — new syncs, more kernel launches
or operator calls per step, higher peak memory, new findings — do not depend on timing noise,
so they are reported even when the time is within noise.

Without a readable trace the explanation falls back to what capture itself records (step time,
peak memory) and says what it skipped.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perftune import units
from perftune.analysis.compare import (
    FindingIdentity,
    match_findings,
    slower_and_faster,
    time_deltas,
)
from perftune.analysis.stats import MIN_PART_NOISE, part_change_interval
from perftune.errors import PerftuneError

if TYPE_CHECKING:
    from perftune.capture.parent.runner import CaptureResult

# Changes smaller than these are noise of one profiled launch, not something to point at.
MIN_OP_DELTA_MS = 0.05
MIN_OP_DELTA_SHARE = 0.02  # of the base step time
# Counts per step are deterministic for deterministic code; the margin absorbs the odd extra
# event at a window edge.
COUNT_MARGIN = 0.05
# Peak memory: the device allocator's peak is exact, a process's peak RSS wobbles.
MEMORY_MARGIN = {"cuda-allocator": (0.05, 1 << 20), "rss": (0.10, 32 << 20)}
MAX_LISTED = 10


@dataclass(frozen=True)
class TimeShare:
    """Time per step of one category or operator/kernel on each side (ms)."""

    name: str
    kind: str  # category | operator | kernel
    base_ms: float
    head_ms: float
    # Interval of the change (ms), from the noise of the launches the gate ran; None when no
    # noise estimate was available.
    low_ms: float | None = None
    high_ms: float | None = None

    @property
    def delta_ms(self) -> float:
        return self.head_ms - self.base_ms


@dataclass(frozen=True)
class FindingRef:
    """A finding reduced to what identifies it across revisions (lines move, code stays)."""

    code: str
    name: str
    message: str
    file: str | None
    line: int | None
    function: str | None
    source: str | None

    @property
    def identity(self) -> FindingIdentity:
        return FindingIdentity(code=self.code, file=self.file, line=self.line,
                               function=self.function, source=self.source)

    @property
    def where(self) -> str:
        if self.file is None:
            return "<trace>"
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass(frozen=True)
class StructuralChange:
    kind: str  # host-device-syncs | kernel-launches | operator-calls | peak-memory | new-finding
    message: str
    base: float | None = None
    head: float | None = None
    finding: FindingRef | None = None


@dataclass(frozen=True)
class ProfileSummary:
    """What one profiled launch says about a side; None fields were not measurable."""

    run_dir: Path
    step_ms: float | None
    peak_memory_bytes: int | None
    memory_kind: str | None
    categories_ms: Mapping[str, float] = field(default_factory=dict)
    operators_ms: Mapping[str, float] = field(default_factory=dict)
    kernels_ms: Mapping[str, float] = field(default_factory=dict)
    syncs_per_step: float | None = None
    kernels_per_step: float | None = None
    operators_per_step: float | None = None
    findings: tuple[FindingRef, ...] | None = None
    notes: tuple[str, ...] = ()
    # Mean of the profiled steps: the per-step lines are window totals over steps, so one
    # preempted step shows in them and in this, not in the median.
    step_mean_ms: float | None = None

    @property
    def window_step_ms(self) -> float | None:
        return self.step_mean_ms if self.step_mean_ms is not None else self.step_ms


@dataclass(frozen=True)
class Explanation:
    base: ProfileSummary
    head: ProfileSummary
    slower: tuple[TimeShare, ...]
    faster: tuple[TimeShare, ...]
    structural: tuple[StructuralChange, ...]
    notes: tuple[str, ...] = ()

    @property
    def new_findings(self) -> tuple[FindingRef, ...]:
        return tuple(c.finding for c in self.structural if c.finding is not None)

    @property
    def new_problems(self) -> tuple[StructuralChange, ...]:
        """What `--fail-on-new-findings` fails on: every structural change for the worse."""
        return self.structural

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": profile_to_dict(self.base),
            "head": profile_to_dict(self.head),
            "slower": [_share_dict(s) for s in self.slower],
            "faster": [_share_dict(s) for s in self.faster],
            "structural": [asdict(c) for c in self.structural],
            "notes": list(self.notes),
        }


def _share_dict(share: TimeShare) -> dict[str, Any]:
    data = asdict(share) | {"delta_ms": share.delta_ms}
    return {k: v for k, v in data.items() if v is not None}


def profile_to_dict(summary: ProfileSummary) -> dict[str, Any]:
    data = asdict(summary)
    data["run_dir"] = str(summary.run_dir)
    data["findings"] = None if summary.findings is None else [asdict(f) for f in summary.findings]
    data["categories_ms"] = dict(summary.categories_ms)
    data["operators_ms"] = dict(summary.operators_ms)
    data["kernels_ms"] = dict(summary.kernels_ms)
    data["notes"] = list(summary.notes)
    return data


def profile_from_dict(data: Mapping[str, Any]) -> ProfileSummary:
    """Inverse of profile_to_dict (a baseline file stores the base side's profile this way)."""
    findings = data.get("findings")

    def floats(key: str) -> dict[str, float]:
        value = data.get(key) or {}
        return {str(k): float(v) for k, v in value.items()} if isinstance(value, dict) else {}

    def number(key: str) -> float | None:
        value = data.get(key)
        return float(value) if isinstance(value, int | float) else None

    peak = data.get("peak_memory_bytes")
    return ProfileSummary(
        run_dir=Path(str(data.get("run_dir", ""))),
        step_ms=number("step_ms"),
        peak_memory_bytes=int(peak) if isinstance(peak, int | float) else None,
        memory_kind=data.get("memory_kind") if isinstance(data.get("memory_kind"), str) else None,
        categories_ms=floats("categories_ms"),
        operators_ms=floats("operators_ms"),
        kernels_ms=floats("kernels_ms"),
        syncs_per_step=number("syncs_per_step"),
        kernels_per_step=number("kernels_per_step"),
        operators_per_step=number("operators_per_step"),
        findings=(None if not isinstance(findings, list)
                  else tuple(_finding_from_dict(f) for f in findings if isinstance(f, dict))),
        notes=tuple(str(n) for n in data.get("notes") or ()),
        step_mean_ms=number("step_mean_ms"),
    )


def _finding_from_dict(data: Mapping[str, Any]) -> FindingRef:
    def text(key: str) -> str | None:
        value = data.get(key)
        return None if value is None else str(value)

    line = data.get("line")
    return FindingRef(code=str(data.get("code", "")), name=str(data.get("name", "")),
                      message=str(data.get("message", "")), file=text("file"),
                      line=int(line) if isinstance(line, int) else None,
                      function=text("function"), source=text("source"))


def _finding_refs(findings: Iterable[Any]) -> tuple[FindingRef, ...]:
    out = []
    for f in findings:
        loc = f.location
        out.append(FindingRef(code=str(f.code), name=str(getattr(f, "name", "")),
                              message=str(getattr(f, "message", "")),
                              file=getattr(loc, "file", None), line=getattr(loc, "line", None),
                              function=getattr(loc, "function", None),
                              source=getattr(loc, "source", None)))
    return tuple(out)


_STEP_NUMBER = re.compile(r"#\d+$")
_TORCH_ANNOTATION = re.compile(r"^(ProfilerStep|Optimizer\.\w+|enumerate\(DataLoader\))#")


def _per_step(frame: Any, value: str, steps: int) -> dict[str, float]:
    """name → ms per step, operators only.

    The annotations torch itself wraps around a step (ProfilerStep#7, Optimizer.step#SGD.step,
    enumerate(DataLoader)#…) are left out: their "self time" is whatever Python ran between
    operators, not work of their own, and ProfilerStep is numbered differently on each side.
    """
    out: dict[str, float] = {}
    for name, v in zip(frame["name"], frame[value], strict=True):
        text = str(name)
        if _TORCH_ANNOTATION.search(text):
            continue
        key = _STEP_NUMBER.sub("", text)
        out[key] = out.get(key, 0.0) + float(v) / steps
    return out


def summarize_capture(result: CaptureResult) -> ProfileSummary:
    """Read one profiled launch: its trace when one was recorded, else capture's own data."""
    measured = result.measured()
    step_ms = statistics.median(s.duration_ms for s in measured) if measured else None
    step_mean_ms = statistics.fmean(s.duration_ms for s in measured) if measured else None
    memory_kind = getattr(result, "memory_kind", None)
    base = ProfileSummary(run_dir=result.run_dir, step_ms=step_ms,
                          peak_memory_bytes=result.peak_memory_bytes, memory_kind=memory_kind,
                          step_mean_ms=step_mean_ms)
    if result.trace_path is None or not Path(result.trace_path).is_file():
        return _with_notes(base, ["no trace was recorded, so operators were not compared"])
    from perftune.engine import analyze
    from perftune.trace import load, metrics

    try:
        trace = load(result.trace_path)
    except PerftuneError as exc:
        return _with_notes(base, [f"trace could not be read: {exc}"])
    steps = max(1, len(trace.steps))
    breakdown = metrics.step_breakdown(trace)
    categories: dict[str, float] = {}
    if breakdown:
        for key in ("compute_ms", "communication_ms", "memcpy_ms", "memset_ms", "sync_ms",
                    "dataloader_ms", "optimizer_ms", "device_idle_ms"):
            categories[key.removesuffix("_ms")] = statistics.fmean(getattr(b, key) for b in breakdown)
    events = trace.events
    host_ops = events[(events["cat"] == "cpu_op") & ~events["is_device"]]
    syncs = [s for s in metrics.host_device_syncs(trace) if s.step >= 0]
    findings = _finding_refs(analyze(trace))
    return ProfileSummary(
        run_dir=result.run_dir,
        step_ms=step_ms,
        peak_memory_bytes=result.peak_memory_bytes,
        memory_kind=memory_kind,
        categories_ms=categories,
        operators_ms=_per_step(metrics.top_host_ops(trace, 200), "self_ms", steps),
        kernels_ms=_per_step(metrics.top_kernels(trace, 200), "total_ms", steps),
        syncs_per_step=len(syncs) / steps,
        kernels_per_step=(statistics.fmean(b.kernel_count for b in breakdown)
                          if breakdown and trace.has_device_activity else None),
        operators_per_step=len(host_ops) / steps,
        findings=findings,
        step_mean_ms=step_mean_ms,
    )


def _with_notes(summary: ProfileSummary, notes: Sequence[str]) -> ProfileSummary:
    return ProfileSummary(run_dir=summary.run_dir, step_ms=summary.step_ms,
                          peak_memory_bytes=summary.peak_memory_bytes,
                          memory_kind=summary.memory_kind, notes=(*summary.notes, *notes),
                          step_mean_ms=summary.step_mean_ms)


def _count_increase(kind: str, what: str, base: float | None, head: float | None) -> StructuralChange | None:
    if base is None or head is None:
        return None
    if head - base >= 1.0 and head > base * (1 + COUNT_MARGIN):
        return StructuralChange(kind=kind, base=base, head=head,
                                message=f"{what} per step: {base:g} → {head:g}")
    return None


def _memory_increase(base: ProfileSummary, head: ProfileSummary) -> StructuralChange | None:
    if base.peak_memory_bytes is None or head.peak_memory_bytes is None:
        return None
    share, floor = MEMORY_MARGIN.get(head.memory_kind or "rss", MEMORY_MARGIN["rss"])
    grown = head.peak_memory_bytes - base.peak_memory_bytes
    if grown > floor and grown > share * base.peak_memory_bytes:
        what = "device allocator peak" if head.memory_kind == "cuda-allocator" else "peak memory (RSS)"
        return StructuralChange(kind="peak-memory", base=float(base.peak_memory_bytes),
                                head=float(head.peak_memory_bytes),
                                message=f"{what}: {units.size(base.peak_memory_bytes)} → "
                                        f"{units.size(head.peak_memory_bytes)}")
    return None


@dataclass(frozen=True)
class LaunchNoise:
    """The launch-to-launch noise the gate measured (log sd of whole-step launch medians) and
    how many launches it rests on: each explanation line's interval follows from it."""

    log_sd: float
    launches: int
    confidence: float = 0.95


@dataclass(frozen=True)
class ProfiledExcess:
    """How much slower each side's profiled steps ran than its timed launches, beyond the
    profiler's own overhead (ms per step).

    A profiled launch is one launch: when the runner preempts it, the time lands in whichever
    operators were running and no launch-to-launch noise of the *timed* launches covers it
    (seen: a base launch profiled while preempted showed `aten::pow` at 6.5 ms per step against
    head's 0.9 ms, head doing 4× the work). The profiler's overhead is taken as the smaller of
    the two sides' profiled/timed ratios; what one side ran slower than that is contention, and
    any single line of that side may hold all of it.
    """

    base_ms: float = 0.0
    head_ms: float = 0.0
    base_ratio: float | None = None
    head_ratio: float | None = None

    @property
    def any(self) -> bool:
        return self.base_ms > 0.0 or self.head_ms > 0.0


def profiled_excess(base: ProfileSummary, head: ProfileSummary,
                    base_timed_ms: float | None, head_timed_ms: float | None) -> ProfiledExcess:
    """Each side's profiled step time against the median step of its timed launches."""

    def ratio(profiled: float | None, timed: float | None) -> float | None:
        if profiled is None or timed is None or profiled <= 0.0 or timed <= 0.0:
            return None
        return profiled / timed

    rb = ratio(base.window_step_ms, base_timed_ms)
    rh = ratio(head.window_step_ms, head_timed_ms)
    known = [r for r in (rb, rh) if r is not None]
    if not known:
        return ProfiledExcess()
    # With one side known the profiler's overhead cannot be told apart: all of its excess over
    # the timed steps counts (the cautious reading).
    overhead = min(known) if len(known) == 2 else 1.0

    def excess(r: float | None, timed: float | None) -> float:
        return 0.0 if r is None or timed is None else max(0.0, (r - overhead) * timed)

    return ProfiledExcess(base_ms=excess(rb, base_timed_ms), head_ms=excess(rh, head_timed_ms),
                          base_ratio=rb, head_ratio=rh)


def _excess_note(excess: ProfiledExcess, hidden: int) -> str:
    parts = []
    for side, ms, r in (("base", excess.base_ms, excess.base_ratio),
                        ("head", excess.head_ms, excess.head_ratio)):
        if ms > 0.0 and r is not None:
            parts.append(f"the profiled {side} launch's steps ran {r:.2f}× its timed launches' "
                         f"({units.ms(ms)} per step more than the profiler's overhead explains)")
    return ("; ".join(parts) + f": the runner was busier while it was profiled, so {hidden} "
            "difference(s) no larger than that are not listed as changes")


def compare(base: ProfileSummary, head: ProfileSummary,
            noise: LaunchNoise | None = None,
            excess: ProfiledExcess | None = None) -> Explanation:
    """What got slower or faster, and what is structurally new in head.

    With `noise`, each time line gets its own interval (stats.part_change_interval) and a line
    whose interval holds 0 is left out: on identical code nothing is listed as changed. With
    `excess` (profiled_excess), a side whose profiled launch ran slower than its timed launches
    widens every line's interval by that much on its side: a line "faster in head" must beat
    what contention could have added to base, a line "slower in head" what it could have added
    to head.
    """
    excess = excess if excess is not None and excess.any else None
    reference = base.step_ms or 0.0
    floor = max(MIN_OP_DELTA_MS, MIN_OP_DELTA_SHARE * reference)
    deltas = []
    for kind, a, b in (("category", base.categories_ms, head.categories_ms),
                       ("operator", base.operators_ms, head.operators_ms),
                       ("kernel", base.kernels_ms, head.kernels_ms)):
        deltas += time_deltas({(kind, k): v for k, v in a.items()},
                              {(kind, k): v for k, v in b.items()}, floor,
                              keys=[(kind, name) for name in sorted(set(a) | set(b))])
    shown = []
    hidden = hidden_by_excess = 0
    for d in deltas:
        low = high = None
        if noise is not None:
            low, high = part_change_interval(d.a_ms, d.b_ms, noise.log_sd, noise.launches,
                                             noise.confidence)
            if low <= 0.0 <= high:
                hidden += 1
                continue
        if excess is not None:
            delta = d.b_ms - d.a_ms
            low = (delta if low is None else low) - excess.head_ms
            high = (delta if high is None else high) + excess.base_ms
            if low <= 0.0 <= high:
                hidden_by_excess += 1
                continue
        shown.append((d, low, high))
    by_delta = {id(d): (low, high) for d, low, high in shown}
    slower, faster = (tuple(TimeShare(name=d.key[1], kind=d.key[0], base_ms=d.a_ms, head_ms=d.b_ms,
                                      low_ms=by_delta[id(d)][0], high_ms=by_delta[id(d)][1])
                            for d in side)
                      for side in slower_and_faster([d for d, _, _ in shown], MAX_LISTED))

    structural: list[StructuralChange] = []
    for change in (
        _count_increase("host-device-syncs", "host↔device syncs", base.syncs_per_step, head.syncs_per_step),
        _count_increase("kernel-launches", "kernel launches", base.kernels_per_step, head.kernels_per_step),
        _count_increase("operator-calls", "operator calls", base.operators_per_step, head.operators_per_step),
        _memory_increase(base, head),
    ):
        if change is not None:
            structural.append(change)
    if base.findings is not None and head.findings is not None:
        matched = match_findings(base.findings, head.findings, lambda f: f.identity)
        for finding in matched.new:
            structural.append(StructuralChange(
                kind="new-finding", finding=finding,
                message=f"new {finding.code} {finding.name} at {finding.where}: {finding.message}"))
    notes = tuple(dict.fromkeys((*base.notes, *head.notes)))
    if hidden and noise is not None:
        notes += (f"{hidden} time difference(s) between the profiled launches lie within the "
                  f"launch-to-launch noise ({max(noise.log_sd, MIN_PART_NOISE):.0%} per launch) "
                  "and are not listed as changes",)
    if hidden_by_excess and excess is not None:
        notes += (_excess_note(excess, hidden_by_excess),)
    return Explanation(base=base, head=head, slower=slower, faster=faster,
                       structural=tuple(structural), notes=notes)
