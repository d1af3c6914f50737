"""The parts of report.html that read the trace alone: the step timeline, the memory timeline and
the top host-op and kernel tables.

They do not depend on the findings, so on a trace large enough for the rules' forked worker
(perftune.engine.split) `perftune analyze --out` has that worker compute them after its share
of the rules, while this process still runs the others (`pipeline.analyze_trace(prepare=...)`);
the HTML report then reads them from the analysis instead of computing them again. Same values
either way: one function computes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perftune.documents import CompilationDocument, CompilationSection
    from perftune.report.memory import MemorySeries
    from perftune.report.timeline import StepTimeline
    from perftune.trace.model import Trace


@dataclass(frozen=True)
class TraceSections:
    timeline: StepTimeline | None
    memory: tuple[MemorySeries, ...]
    top_ops: list[Any]
    top_kernels: list[Any]


def compiled_notes(section: CompilationSection | None) -> dict[str, str]:
    """Hover text of each compiled graph on the step timeline: its frame, size and whether it
    resumes after a graph break or is a recompilation."""
    if section is None:
        return {}
    notes: dict[str, str] = {}
    for g in section.graphs:
        text = f"graph {g.compile_id}: {g.frame or '?'} ({g.ops} ops, compiled in {g.compile_s:.2f} s)"
        if g.after_break:
            text += f"<br>resumes after a graph break at {g.after_break}"
        notes[g.compile_id] = text
    for r in section.recompiles:
        if r.compile_id:
            notes[r.compile_id] = notes.get(r.compile_id, f"graph {r.compile_id}") + \
                f"<br>recompiled in step {r.step}: {r.guard}"
    return notes


def _records(columns: Any) -> list[dict[str, Any]]:
    """Columns (lists or numpy arrays) as one dict per row, Python values, in column order."""
    import numpy as np

    if columns is None:
        return []
    values = [v.tolist() if isinstance(v, np.ndarray) else list(v) for v in columns.values()]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def trace_sections(trace: Trace, compilation: CompilationSection | None) -> TraceSections:
    """The trace's parts of report.html; `compilation` is the summary's compilation section
    (the timeline's compiled-graph lane)."""
    from perftune.report.memory import memory_timeline
    from perftune.report.timeline import step_timeline
    from perftune.trace import metrics

    return TraceSections(
        timeline=step_timeline(trace, compiled=compiled_notes(compilation)),
        memory=memory_timeline(trace),
        top_ops=_records(metrics.top_host_op_columns(trace, 30)),
        top_kernels=_records(metrics.top_kernel_columns(trace, 30)))


def worker_sections(trace: Trace, compilation: CompilationDocument | None) -> TraceSections:
    """`trace_sections` where only the run's compilation.json is at hand (the rules' worker):
    its section as the summary computes it."""
    from perftune.engine.compilation import compilation_section

    section = compilation_section(compilation, trace) if compilation is not None else None
    return trace_sections(trace, section)
