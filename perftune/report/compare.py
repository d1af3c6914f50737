"""Comparing two runs: step time with its spread, breakdown deltas, ops that got slower or
faster, findings fixed and new. Pure functions over analysed runs; rendering lives elsewhere.

`compare_runs(a, b)` takes two `Analysis` objects; `compare_views` takes two `RunView`s, which
also covers run directories whose trace is gone (summary.json/findings.json only) and uses the
unprofiled step times of steps.json when a run has them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from perftune.analysis import stats
from perftune.analysis.compare import FindingIdentity, slower_and_faster, time_deltas
from perftune.analysis.compare import match_findings as analysis_match
from perftune.analysis.ops import OpStat, op_stats_per_step
from perftune.documents import (
    DiffCategory,
    DiffDocument,
    DiffFinding,
    DiffFindings,
    DiffOp,
    DiffSide,
    DiffSteps,
    Summary,
    document_data,
)
from perftune.engine.types import Finding
from perftune.report.data import RunView, breakdown_rows, step_timing, view_of_analysis
from perftune.trace.metrics import Distribution

if TYPE_CHECKING:
    from perftune.pipeline import Analysis

BREAKDOWN = (("compute_ms", "device compute"), ("communication_ms", "communication"),
             ("memcpy_ms", "memcpy"), ("memset_ms", "memset"), ("device_idle_ms", "device idle"),
             ("sync_ms", "host: sync waits"), ("dataloader_ms", "host: DataLoader wait"),
             ("optimizer_ms", "host: optimizer"))
CONFIDENCE = 0.95


# ---------------------------------------------------------------------------- per-run facts
@dataclass(frozen=True)
class RunFacts:
    label: str
    step_ms: tuple[float, ...]
    step_source: str
    breakdown: Mapping[str, float]
    ops: tuple[OpStat, ...]
    findings: tuple[Finding, ...]
    has_device_activity: bool


def _summary_op_stats(summary: Summary | None) -> list[OpStat]:
    """Without a trace: the summary's top lists (no shapes, whole trace per step)."""
    if summary is None:
        return []
    n_steps = max(1, summary.steps.count or 1)
    out = [OpStat("op", r.name, None, r.calls / n_steps, r.self_ms / n_steps)
           for r in summary.top_host_ops]
    out.extend(OpStat("kernel", r.name, None, r.calls / n_steps, r.total_ms / n_steps)
               for r in summary.top_kernels)
    return out


def facts_of_view(view: RunView, label: str) -> RunFacts:
    timing = step_timing(view)
    headline_phase = "measured" if timing.measured is not None else "profiled"
    step_ms = tuple(p.duration_ms for p in timing.points if p.phase == headline_phase)
    summary = view.summary
    breakdown = ({} if summary is None else
                 {key: float(value) for key, _, value in breakdown_rows(summary)})
    ops = op_stats_per_step(view.trace) if view.trace is not None else _summary_op_stats(summary)
    return RunFacts(label=label, step_ms=step_ms, step_source=timing.source, breakdown=breakdown,
                    ops=tuple(ops), findings=view.findings,
                    has_device_activity=summary is not None and summary.has_device_activity)


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class RunSide:
    label: str
    step_ms: tuple[float, ...]
    step_source: str
    median_ms: float | None
    p10_ms: float | None
    p90_ms: float | None
    findings: int


@dataclass(frozen=True)
class StepChange:
    """B's step time over A's (ratio of geometric means) with its confidence interval."""

    ratio: float | None
    delta_ms: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    verdict: str  # slower | faster | no clear change | too few steps | not measured

    @property
    def change(self) -> float | None:
        return None if self.ratio is None else self.ratio - 1.0


@dataclass(frozen=True)
class CategoryDelta:
    category: str
    a_ms: float
    b_ms: float

    @property
    def delta_ms(self) -> float:
        return self.b_ms - self.a_ms

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, "a_ms": self.a_ms, "b_ms": self.b_ms,
                "delta_ms": self.delta_ms}


@dataclass(frozen=True)
class OpDelta:
    kind: str
    name: str
    shape: str | None
    a_ms: float  # per step
    b_ms: float
    a_calls: float  # per step
    b_calls: float
    status: str  # slower | faster | new | gone

    @property
    def delta_ms(self) -> float:
        return self.b_ms - self.a_ms


@dataclass(frozen=True)
class FindingChange:
    status: str  # fixed | new | kept
    code: str
    name: str
    location: str
    function: str | None
    a_saving_ms: float | None
    b_saving_ms: float | None
    matched_by: str | None  # source | location | function (kept findings only)
    message: str


@dataclass(frozen=True)
class Comparison:
    a: RunSide
    b: RunSide
    steps: StepChange
    breakdown: tuple[CategoryDelta, ...]
    slower: tuple[OpDelta, ...]
    faster: tuple[OpDelta, ...]
    findings: tuple[FindingChange, ...]
    shapes_matched: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fixed(self) -> tuple[FindingChange, ...]:
        return tuple(f for f in self.findings if f.status == "fixed")

    @property
    def new(self) -> tuple[FindingChange, ...]:
        return tuple(f for f in self.findings if f.status == "new")

    @property
    def kept(self) -> tuple[FindingChange, ...]:
        return tuple(f for f in self.findings if f.status == "kept")

    def to_document(self) -> DiffDocument:
        """diff.json (non-finite numbers become null: the file is strict JSON)."""
        s = self.steps
        return DiffDocument(
            schema_version=1,
            a=_side_entry(self.a), b=_side_entry(self.b),
            steps=DiffSteps(ratio=_finite(s.ratio), delta_ms=_finite(s.delta_ms),
                            ci_low=_finite(s.ci_low), ci_high=_finite(s.ci_high),
                            confidence=_finite(s.confidence), verdict=s.verdict,
                            change=_finite(s.change)),
            breakdown=[DiffCategory(category=d.category, a_ms=_finite(d.a_ms),
                                    b_ms=_finite(d.b_ms), delta_ms=_finite(d.delta_ms))
                       for d in self.breakdown],
            slower=[_op_entry(d) for d in self.slower],
            faster=[_op_entry(d) for d in self.faster],
            findings=DiffFindings(fixed=[_finding_entry(f) for f in self.fixed],
                                  new=[_finding_entry(f) for f in self.new],
                                  kept=[_finding_entry(f) for f in self.kept]),
            shapes_matched=self.shapes_matched,
            notes=list(self.notes),
        )

    def to_dict(self) -> dict[str, Any]:
        return document_data(self.to_document())


def _side_entry(side: RunSide) -> DiffSide:
    return DiffSide(label=side.label, step_ms=[_finite(v) for v in side.step_ms],
                    step_source=side.step_source, median_ms=_finite(side.median_ms),
                    p10_ms=_finite(side.p10_ms), p90_ms=_finite(side.p90_ms),
                    findings=side.findings)


def _op_entry(d: OpDelta) -> DiffOp:
    return DiffOp(kind=d.kind, name=d.name, shape=d.shape, a_ms=_finite(d.a_ms),
                  b_ms=_finite(d.b_ms), a_calls=_finite(d.a_calls), b_calls=_finite(d.b_calls),
                  status=d.status, delta_ms=_finite(d.delta_ms))


def _finding_entry(f: FindingChange) -> DiffFinding:
    return DiffFinding(status=f.status,  # type: ignore[arg-type]
                       code=f.code, name=f.name, location=f.location, function=f.function,
                       a_saving_ms=_finite(f.a_saving_ms), b_saving_ms=_finite(f.b_saving_ms),
                       matched_by=f.matched_by, message=f.message)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# ---------------------------------------------------------------------------- comparing
def _side(facts: RunFacts) -> RunSide:
    d = Distribution.of(facts.step_ms) if facts.step_ms else None
    return RunSide(label=facts.label, step_ms=facts.step_ms, step_source=facts.step_source,
                   median_ms=d.median if d else None, p10_ms=d.p10 if d else None,
                   p90_ms=d.p90 if d else None, findings=len(facts.findings))


def step_change(a: Sequence[float], b: Sequence[float]) -> StepChange:
    """B's step times against A's with the gate's statistics (perftune.analysis.stats): ratio
    of geometric means and a Welch interval on log step times."""
    if not a or not b:
        return StepChange(None, None, None, None, CONFIDENCE, "not measured")
    med_a, med_b = float(np.median(a)), float(np.median(b))
    # Zero-length or broken steps are not step times; the statistics work on logarithms.
    pos_a = [float(v) for v in a if math.isfinite(v) and v > 0]
    pos_b = [float(v) for v in b if math.isfinite(v) and v > 0]
    if not pos_a or not pos_b or med_a <= 0:
        return StepChange(None, med_b - med_a, None, None, CONFIDENCE, "not measured")
    if len(pos_a) < 3 or len(pos_b) < 3:
        ratio = float(np.median(pos_b)) / float(np.median(pos_a))
        return StepChange(ratio, med_b - med_a, None, None, CONFIDENCE, "too few steps")
    est = stats.ratio_interval(pos_a, pos_b, CONFIDENCE)
    verdict = {"higher": "slower", "lower": "faster"}.get(stats.direction(est), "no clear change")
    return StepChange(est.ratio, med_b - med_a, est.low, est.high, CONFIDENCE, verdict)


def _breakdown(a: RunFacts, b: RunFacts) -> tuple[CategoryDelta, ...]:
    device = a.has_device_activity or b.has_device_activity
    out = []
    for key, label in BREAKDOWN:
        if key not in a.breakdown and key not in b.breakdown:
            continue
        if not device and key in ("compute_ms", "communication_ms", "memcpy_ms", "memset_ms",
                                  "device_idle_ms"):
            continue
        va, vb = a.breakdown.get(key, 0.0), b.breakdown.get(key, 0.0)
        if key in ("communication_ms", "memset_ms") and not va and not vb:
            continue
        out.append(CategoryDelta(label, va, vb))
    return tuple(out)


def _op_deltas(a: RunFacts, b: RunFacts, top: int) -> tuple[tuple[OpDelta, ...], tuple[OpDelta, ...], bool]:
    shaped_a = any(o.shape for o in a.ops if o.kind == "op")
    shaped_b = any(o.shape for o in b.ops if o.kind == "op")
    # Shapes only help when both runs recorded them; otherwise match ops by name alone.
    use_shapes = shaped_a == shaped_b

    def table(ops: Iterable[OpStat]) -> dict[tuple[str, str, str | None], list[float]]:
        out: dict[tuple[str, str, str | None], list[float]] = {}
        for o in ops:
            key = (o.kind, o.name, o.shape if use_shapes or o.kind == "kernel" else None)
            slot = out.setdefault(key, [0.0, 0.0])
            slot[0] += o.ms_per_step
            slot[1] += o.calls_per_step
        return out

    ta, tb = table(a.ops), table(b.ops)
    base = float(np.median(a.step_ms)) if a.step_ms else 0.0
    floor = max(0.005, 0.002 * base)  # ignore changes below 0.2 % of a step (or 5 µs)
    # Within 5 % of A's time: run-to-run noise rather than a change.
    changed = time_deltas({k: v[0] for k, v in ta.items()}, {k: v[0] for k, v in tb.items()},
                          floor, min_relative=0.05)
    slower, faster = (
        tuple(OpDelta(d.key[0], d.key[1], d.key[2], d.a_ms, d.b_ms,
                      ta.get(d.key, [0.0, 0.0])[1], tb.get(d.key, [0.0, 0.0])[1],
                      "new" if not d.in_a else "gone" if not d.in_b
                      else "slower" if d.delta_ms > 0 else "faster")
              for d in side)
        for side in slower_and_faster(changed, top))
    return slower, faster, use_shapes


def _identity(f: Finding) -> FindingIdentity:
    loc = f.location
    return FindingIdentity(code=f.code, file=loc.file, line=loc.line, function=loc.function,
                           source=loc.source)


def match_findings(a: Sequence[Finding], b: Sequence[Finding]) -> tuple[FindingChange, ...]:
    """Findings fixed (in A only), new (in B only) and kept, paired by
    perftune.analysis.compare.match_findings."""
    match = analysis_match(a, b, _identity)
    return (*(_change("fixed", f, f, None, None) for f in match.fixed),
            *(_change("new", f, None, f, None) for f in match.new),
            *(_change("kept", fb, fa, fb, how) for fa, fb, how in match.kept))


def _change(status: str, f: Finding, fa: Finding | None, fb: Finding | None,
            how: str | None) -> FindingChange:
    return FindingChange(status=status, code=f.code, name=f.name, location=str(f.location),
                         function=f.location.function,
                         a_saving_ms=fa.est_saving_ms_per_step if fa else None,
                         b_saving_ms=fb.est_saving_ms_per_step if fb else None,
                         matched_by=how, message=f.message)


def compare_facts(a: RunFacts, b: RunFacts, top: int = 20) -> Comparison:
    slower, faster, shapes = _op_deltas(a, b, top)
    notes = []
    if not shapes:
        notes.append("only one run recorded operator shapes (record_shapes); ops were matched by name")
    if a.step_source != b.step_source:
        notes.append(f"step times come from different sources: {a.step_source} vs {b.step_source}")
    return Comparison(a=_side(a), b=_side(b), steps=step_change(a.step_ms, b.step_ms),
                      breakdown=_breakdown(a, b), slower=slower, faster=faster,
                      findings=match_findings(a.findings, b.findings), shapes_matched=shapes,
                      notes=tuple(notes))


def compare_views(a: RunView, b: RunView, labels: tuple[str, str] = ("A", "B")) -> Comparison:
    return compare_facts(facts_of_view(a, labels[0]), facts_of_view(b, labels[1]))


def compare_runs(a: Analysis, b: Analysis, labels: tuple[str, str] = ("A", "B")) -> Comparison:
    """Compare two analysed runs (B against A)."""
    return compare_views(view_of_analysis(a, None), view_of_analysis(b, None), labels)
