"""Shared pieces of the compilation rules (PFT7xx): the user's line of a compilation record,
the compiled frames a graph break split, and the text of a failed guard. Pure functions over
the run's compilation.json (`ctx.compilation`) and the trace's compiled regions
(`perftune.trace.compiled`)."""

from __future__ import annotations

import re
from pathlib import Path

from perftune.documents import (
    CompilationDocument,
    CompilationSection,
    CompileBreak,
    CompiledGraph,
    CompileEvent,
    CompileRecompile,
    GraphBreak,
)
from perftune.engine.context import Context
from perftune.engine.types import Location
from perftune.trace.compiled import compiled_regions, has_compiled_regions
from perftune.trace.model import Trace

__all__ = [
    "guard_kind",
    "has_compiled_regions",
    "location",
    "resumed_compile_ids",
    "scalar_guard",
    "size_guard",
]

# "tensor 'tokens' size mismatch at index 1. expected 60, actual 57"
_SIZE = re.compile(r"tensor '(?P<name>[^']+)' size mismatch at index (?P<dim>\d+)")
# "scale == 0.0" / "L['scale'] == 0.0" / "___as_tensor(scale).item() == 0.5"
_SCALAR = re.compile(r"^(?:\d+/\d+:\s*)?(?:L\['(?P<l>[A-Za-z_]\w*)'\]|(?P<n>[A-Za-z_]\w*))\s*==\s*"
                     r"(?P<value>-?[\d.eE+-]+|True|False)\b")


def location(ctx: Context, file: str | None, line: int | None,
             function: str | None) -> tuple[Location, Path | None]:
    """The Location of a recorded user line (with its source text when readable)."""
    if file is None:
        return Location(), None
    return (Location(file=file, line=line, function=function or None,
                     source=ctx.source.line(file, line)),
            ctx.source.resolve(file))


def resumed_compile_ids(doc: CompilationDocument, brk: GraphBreak) -> set[str]:
    """The compile ids of the frames dynamo resumes after a break (`torch_dynamo_resume_in_F_at_N`,
    N = where the break stopped tracing)."""
    line = brk.traced_line if brk.traced_line is not None else brk.line
    suffix = f"_at_{line}"
    return {c.compile_id for c in doc.compiles
            if c.compile_id and c.code and c.code.startswith("torch_dynamo_resume_in_")
            and c.code.endswith(suffix)
            and (brk.traced_file is None or c.code_file is None
                 or Path(c.code_file).name == Path(brk.traced_file).name)}


def size_guard(reason: str) -> tuple[str, int] | None:
    """(argument, dimension) of a shape guard that failed, if it is one."""
    found = _SIZE.search(reason)
    return (found.group("name"), int(found.group("dim"))) if found else None


def scalar_guard(reason: str) -> tuple[str, str] | None:
    """(name, value) of a guard that pinned a Python scalar to one value, if it is one."""
    for part in reason.splitlines():
        found = _SCALAR.match(part.strip())
        if found:
            return (found.group("l") or found.group("n") or "", found.group("value"))
    return None


def guard_kind(event: CompileEvent) -> str:
    """'shape', 'scalar' or 'other': what made a recompilation."""
    reason = event.recompile_reason or ""
    if size_guard(reason):
        return "shape"
    if scalar_guard(reason):
        return "scalar"
    return "other"


def compilation_section(doc: CompilationDocument, trace: Trace | None) -> CompilationSection:
    """summary.json's `compilation`: the graphs (linked to their regions in the trace), graph
    breaks and recompilations of the run, and its compile time per step."""
    regions = compiled_regions(trace) if trace is not None else None
    traced_steps = len(regions.steps) if regions is not None and regions.steps else 0
    after: dict[str, str] = {}
    for brk in doc.graph_breaks:
        for compile_id in resumed_compile_ids(doc, brk):
            after[compile_id] = f"{Path(brk.file or brk.traced_file or '?').name}:" \
                                f"{brk.line or brk.traced_line} {brk.reason}"
    graphs = []
    for c in doc.graphs():
        calls = None
        if regions is not None and regions.present and c.compile_id and traced_steps:
            calls = round(len(regions.of(c.compile_id)) / traced_steps, 3)
        graphs.append(CompiledGraph(
            compile_id=c.compile_id or "?", frame=c.code, file=c.code_file, line=c.code_line,
            ops=c.graph_ops or 0, step=c.step, compile_s=round(c.duration_s, 3),
            calls_per_step=calls, after_break=after.get(c.compile_id or "")))
    breaks = [CompileBreak(reason=b.reason, file=b.file or b.traced_file,
                           line=b.line or b.traced_line, step=b.step, count=b.count)
              for b in doc.graph_breaks]
    recompiles = [CompileRecompile(
        compile_id=c.compile_id, guard=(c.recompile_reason or "").splitlines()[0],
        file=c.call_site.file if c.call_site else c.code_file,
        line=c.call_site.line if c.call_site else c.code_line,
        step=c.step, phase=c.phase, compile_s=round(c.duration_s, 3))
        for c in doc.recompiles()]
    return CompilationSection(
        total_compile_s=round(doc.total_compile_s, 3),
        compiling_steps=[s.index for s in doc.steps],
        compile_s_by_step={str(s.index): round(s.compile_s, 3) for s in doc.steps},
        graphs=graphs, graph_breaks=breaks, recompiles=recompiles, note=doc.note)
