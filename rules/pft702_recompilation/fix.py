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
    compiled model with `tensor`, for each (tensor, dim) whose shape guard failed (`marks`):
    the model is compiled once with those dimensions dynamic (unsafe: dynamo raises if the
    code specialises such a dimension after all)."""
    import libcst as cst

    marks = [(m[0], m[1]) for m in params.get("marks", ())
             if isinstance(m, (list, tuple)) and len(m) == 2 and isinstance(m[0], str)
             and m[0].isidentifier() and isinstance(m[1], int)]
    module = parse(source)
    if not marks or module is None or "torch" not in source:
        return None
    _, positions = with_positions(module)
    stmt = statement_on_line(module, positions, line)
    if stmt is None:
        return None
    marks = [(name, dim) for name, dim in marks if uses_name(code_of(stmt), name)]
    block = parent_block(module, stmt) if marks else None
    if block is None:
        return None
    body = list(block.body)
    index = next((i for i, s in enumerate(body) if s is stmt), None)
    if index is None:
        return None
    body[index:index] = [cst.parse_statement(f"torch._dynamo.mark_dynamic({name}, {dim})\n")
                         for name, dim in marks]
    return Rewrite(module.deep_replace(block, block.with_changes(body=body)).code,
                   Applicability.UNSAFE)


TRANSFORMERS = (mark_dynamic_before,)
