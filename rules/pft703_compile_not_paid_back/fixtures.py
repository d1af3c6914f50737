"""Fixture traces of PFT703: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Each trace carries its run's compilation.json (`perftuneCompilation`). Python frames point at
this folder's bad.py / good.py, so findings resolve to the lines users read. After changing a
builder: `python -m perftune.engine.fixtures pft703`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft703`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.documents import CodeSite, CompilationDocument, CompileEvent, StepCompile
from perftune.engine.fixtures import Fixture, compiled_forward_backward, with_compilation
from perftune.engine.testing import TraceBuilder


def _run(file: str, compile_s: float) -> dict[str, Any]:
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step(), b.frame(file, 10, "<module>"):
            compiled_forward_backward(b, [("0/0", "container.py", 248, "forward")], graph_us=300.0)
    doc = CompilationDocument(
        compiled=True, total_compile_s=compile_s,
        steps=[StepCompile(index=0, phase="warmup", compile_s=compile_s, compiles=1)],
        compiles=[CompileEvent(compile_id="0/0", start_s=1.0, duration_s=compile_s, step=0,
                               phase="warmup", code="forward", code_file="container.py",
                               code_line=248, graph_ops=5, installed=True,
                               call_site=CodeSite(file=file, line=10, function="<module>"))],
        compile_calls=[CodeSite(file=file, line=5 if file == "bad.py" else 6,
                                function="<module>")])
    return with_compilation(b, doc)


FIXTURES: dict[str, Fixture] = {
    "bad": lambda: _run("bad.py", 95.0),   # 95 s against 0.6 ms of compiled code per step
    "clean": lambda: _run("good.py", 0.4),  # pays back after ~700 steps
}
