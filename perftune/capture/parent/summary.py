"""The short summary `perftune profile` prints: steps found, step times, profiler overhead."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from perftune import units
from perftune.capture.parent.results import CaptureResult, StepRecord

# How steps were found (steps.json's step_source), in the words of the summary line.
SOURCE_WORDS = {
    "optimizer": "the optimizer.step() hook",
    "backward": "backward() calls",
    "module": "top-level nn.Module calls",
    "script-profiler": "the script's own prof.step() calls",
    "perftune.step": "perftune.step() calls",
    "marker": "the --step-marker function",
    "time-window": "time slices (no step boundary found)",
}


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]; values must not be empty."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class StepStats:
    label: str
    count: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    indices: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "median_ms": self.median_ms,
            "p10_ms": self.p10_ms,
            "p90_ms": self.p90_ms,
            "steps": list(self.indices),
        }


def step_stats(label: str, steps: Sequence[StepRecord]) -> StepStats | None:
    if not steps:
        return None
    durations = [step.duration_ms for step in steps]
    return StepStats(
        label=label,
        count=len(steps),
        median_ms=percentile(durations, 50),
        p10_ms=percentile(durations, 10),
        p90_ms=percentile(durations, 90),
        indices=tuple(step.index for step in steps),
    )


def split_steps(result: CaptureResult) -> tuple[list[StepRecord], list[StepRecord]]:
    """(profiled steps, un-profiled steps comparable with them).

    Only steps after warm-up and outside the window compare with profiled ones: those measured
    after the window (`--full`). Warm-up steps run before caches, allocators and compilation
    settle; comparing with them made the overhead swing from -10 % to +150 %. Without measured
    steps there is no overhead figure.
    """
    profiled = [step for step in result.steps if step.phase == "profiled"]
    plain = [step for step in result.steps if step.phase == "measured"]
    return profiled, plain


def warmup_steps(result: CaptureResult) -> list[StepRecord]:
    """The warm-up steps after the first (which holds the script's setup): shown, not compared."""
    return [step for step in result.steps if step.phase == "warmup" and step.index > 0]


def overhead(profiled: StepStats | None, plain: StepStats | None) -> float | None:
    """Profiled median over un-profiled median, minus one (0.25 = 25 % slower)."""
    if profiled is None or plain is None or plain.median_ms <= 0:
        return None
    return profiled.median_ms / plain.median_ms - 1.0


def _ranges(indices: Sequence[int]) -> str:
    parts: list[str] = []
    start = prev = None
    for index in indices:
        if start is None:
            start = prev = index
        elif prev is not None and index == prev + 1:
            prev = index
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = index
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def summary_document(result: CaptureResult) -> dict[str, Any]:
    profiled, plain = split_steps(result)
    prof = step_stats("profiled", profiled)
    rest = step_stats("un-profiled", plain)
    ratio = overhead(prof, rest)
    return {
        "run_dir": str(result.run_dir),
        "status": result.status,
        "exit_code": result.exit_code,
        "error": result.error,
        "step_source": result.step_source,
        "step_detail": result.step_detail,
        "steps": len(result.steps),
        "profiled": prof.to_json() if prof else None,
        "unprofiled": rest.to_json() if rest else None,
        "profiler_overhead": ratio,
        "profiler": result.profiler,
        "peak_memory_bytes": result.peak_memory_bytes,
        "memory_kind": result.memory_kind,
        "trace": str(result.trace_path) if result.trace_path else None,
        "script_traces": list(result.script_traces),
        "notes": list(result.notes),
    }


def summary_lines(result: CaptureResult, shown_run_dir: str | None = None) -> list[str]:
    count = len(result.steps)
    source = SOURCE_WORDS.get(result.step_source, result.step_source)
    detail = f"; {result.step_detail}" if result.step_detail else ""
    lines = [f"steps      {count} found by {source}{detail}" if count else "steps      none found"]
    profiled, plain = split_steps(result)
    prof, rest = step_stats("profiled", profiled), step_stats("un-profiled", plain)
    stats = [s for s in (prof, rest, step_stats("warm-up", warmup_steps(result))) if s]
    if stats:
        lines.append(f"{'step time':<14}{'median':>10}{'p10':>11}{'p90':>11}   steps")
        for row in stats:
            lines.append(
                f"  {row.label:<12}{units.ms(row.median_ms):>10}{units.ms(row.p10_ms):>11}"
                f"{units.ms(row.p90_ms):>11}   {_ranges(row.indices)}"
            )
    ratio = overhead(prof, rest)
    if ratio is not None:
        lines.append(f"profiler   {ratio:+.1%} on the median step (profiled vs un-profiled steps "
                     "after the window)")
    if result.peak_memory_bytes is not None:
        kind = "CUDA allocator" if result.memory_kind == "cuda-allocator" else "process RSS"
        lines.append(f"memory     peak {units.size(result.peak_memory_bytes)} ({kind})")
    if result.trace_path is not None:
        lines.append(f"trace      {result.trace_path.name}")
    if result.status != "ok":
        detail = f": {result.error}" if result.error else ""
        lines.append(f"status     {result.status}{detail}")
    for note in result.notes:
        lines.append(f"note       {note}")
    lines.append(f"run dir    {shown_run_dir or result.run_dir}")
    return lines
