"""Fixture traces of PFT701: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Each trace carries its run's compilation.json (`perftuneCompilation`). Python frames point at
this folder's bad.py / good.py, so findings resolve to the lines users read. After changing a
builder: `python -m perftune.engine.fixtures pft701`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft701`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.documents import CompilationDocument, CompileEvent, GraphBreak, StepCompile
from perftune.engine.fixtures import Fixture, compiled_forward_backward, with_compilation
from perftune.engine.testing import TraceBuilder

BREAK_LINE = 16  # bad.py: `if norm > CLIP:`


def _compile(compile_id: str, code: str, line: int, ops: int, start: float) -> CompileEvent:
    return CompileEvent(compile_id=compile_id, start_s=start, duration_s=1.5, step=0,
                        phase="warmup", code=code, code_file="bad.py", code_line=line,
                        graph_ops=ops, graph_nodes=ops + 4, guards=30, installed=True)


def _broken() -> dict[str, Any]:
    b = TraceBuilder(device=False)

    def eager(b: TraceBuilder) -> None:  # the comparison, read on the host
        b.leaf("aten::gt", dur=8.0)
        with b.op("aten::is_nonzero"), b.op("aten::item"):
            b.leaf("aten::_local_scalar_dense", dur=4.0)
        b.advance(150.0)  # Python between the graphs

    for _ in range(3):
        with b.step(), b.frame("bad.py", 21, "<module>"):
            compiled_forward_backward(b, [("0/0", "bad.py", 13, "forward"),
                                          ("1/0", "bad.py", BREAK_LINE,
                                           f"torch_dynamo_resume_in_forward_at_{BREAK_LINE}")],
                                      eager=eager)
    doc = CompilationDocument(
        compiled=True, total_compile_s=3.0,
        steps=[StepCompile(index=0, phase="warmup", compile_s=3.0, compiles=2)],
        compiles=[_compile("0/0", "forward", 13, 4, 1.0),
                  _compile("1/0", f"torch_dynamo_resume_in_forward_at_{BREAK_LINE}", BREAK_LINE,
                           4, 2.5)],
        graph_breaks=[GraphBreak(
            reason="Data-dependent branching",
            explanation="Detected data-dependent branching (e.g. `if my_tensor.sum() > 0:`). "
                        "Dynamo does not support tracing dynamic control flow.",
            hints=["Use `torch.cond` to express dynamic control flow."],
            file="bad.py", line=BREAK_LINE, function="forward", traced_file="bad.py",
            traced_line=BREAK_LINE, compile_id="0/0", step=0, phase="warmup", count=2)])
    return with_compilation(b, doc)


def _one_graph() -> dict[str, Any]:
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step(), b.frame("good.py", 21, "<module>"):
            compiled_forward_backward(b, [("0/0", "good.py", 13, "forward")])
    doc = CompilationDocument(
        compiled=True, total_compile_s=1.5,
        steps=[StepCompile(index=0, phase="warmup", compile_s=1.5, compiles=1)],
        compiles=[_compile("0/0", "forward", 13, 6, 1.0)])
    return with_compilation(b, doc)


FIXTURES: dict[str, Fixture] = {
    "bad": _broken,
    "clean": _one_graph,
}
