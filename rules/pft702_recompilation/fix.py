"""The rewrite of rule PFT702: libcst transformers tried in order at the finding's line.

Loaded by file path with the rule (perftune.engine.rewrite.transformers); shared libcst helpers
live in perftune.engine.rewrite. Nothing here executes user code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perftune.engine.rewrite import (
    Rewrite,
    code_of,
    parent_block,
    parse,
    statement_on_line,
    uses_name,
    with_positions,
)
from perftune.engine.types import Applicability


def mark_dynamic_before(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """Insert `torch._dynamo.mark_dynamic(tensor, dim)` before the statement that calls the
    compiled model with `tensor`, whose dimension `dim` failed its shape guard: the model is
    compiled once with that dimension dynamic (unsafe: dynamo raises if the code specialises
    the dimension after all)."""
    import libcst as cst

    tensor, dim = params.get("tensor"), params.get("dim")
    if not isinstance(tensor, str) or not isinstance(dim, int) or not tensor.isidentifier():
        return None
    module = parse(source)
    if module is None or "torch" not in source:
        return None
    _, positions = with_positions(module)
    stmt = statement_on_line(module, positions, line)
    if stmt is None or not uses_name(code_of(stmt), tensor):
        return None
    block = parent_block(module, stmt)
    if block is None:
        return None
    mark = cst.parse_statement(f"torch._dynamo.mark_dynamic({tensor}, {dim})\n")
    body = list(block.body)
    index = next((i for i, s in enumerate(body) if s is stmt), None)
    if index is None:
        return None
    body.insert(index, mark)
    return Rewrite(module.deep_replace(block, block.with_changes(body=body)).code,
                   Applicability.UNSAFE)


TRANSFORMERS = (mark_dynamic_before,)
