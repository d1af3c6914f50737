"""Fixture traces of PFT702: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Each trace carries its run's compilation.json (`perftuneCompilation`). Python frames point at
this folder's bad.py / good.py, so findings resolve to the lines users read. After changing a
builder: `python -m perftune.engine.fixtures pft702`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft702`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.documents import CodeSite, CompilationDocument, CompileEvent, StepCompile
from perftune.engine.fixtures import Fixture, compiled_forward_backward, with_compilation
from perftune.engine.testing import TraceBuilder

CALL_LINE = 10  # bad.py: `loss = model(tokens).mean()`


def _compile(compile_id: str, step: int, phase: str, start: float, reason: str | None,
             file: str, line: int) -> CompileEvent:
    return CompileEvent(compile_id=compile_id, start_s=start, duration_s=2.0, step=step,
                        phase=phase, code="forward", code_file="container.py", code_line=248,
                        call_site=CodeSite(file=file, line=line, function="<module>"),
                        graph_ops=5, graph_nodes=9, guards=20, recompile_reason=reason,
                        installed=True)


def _steps(file: str, frames: list[str]) -> TraceBuilder:
    b = TraceBuilder(device=False)
    for compile_id in frames:
        with b.step(), b.frame(file, CALL_LINE, "<module>"):
            compiled_forward_backward(b, [(compile_id, "container.py", 248, "forward")])
    return b


def _shape() -> dict[str, Any]:
    b = _steps("bad.py", ["0/1", "0/1", "0/1"])
    doc = CompilationDocument(
        compiled=True, total_compile_s=6.0,
        steps=[StepCompile(index=0, phase="warmup", compile_s=2.0, compiles=1),
               StepCompile(index=1, phase="warmup", compile_s=2.0, compiles=1),
               StepCompile(index=5, phase="profiled", compile_s=2.0, compiles=1)],
        compiles=[
            _compile("0/0", 0, "warmup", 1.0, None, "bad.py", CALL_LINE),
            _compile("0/1", 1, "warmup", 3.5, "0/0: tensor 'tokens' size mismatch at index 1. "
                     "expected 60, actual 57", "bad.py", CALL_LINE),
            _compile("0/2", 5, "profiled", 9.0, "0/1: tensor 'tokens' size mismatch at index 0. "
                     "expected 16, actual 8", "bad.py", CALL_LINE)])
    return with_compilation(b, doc)


def _once() -> dict[str, Any]:
    b = _steps("good.py", ["0/0", "0/0", "0/0"])
    doc = CompilationDocument(
        compiled=True, total_compile_s=2.0,
        steps=[StepCompile(index=0, phase="warmup", compile_s=2.0, compiles=1)],
        compiles=[_compile("0/0", 0, "warmup", 1.0, None, "good.py", CALL_LINE + 1)])
    return with_compilation(b, doc)


FIXTURES: dict[str, Fixture] = {
    "bad": _shape,
    "clean": _once,
}
