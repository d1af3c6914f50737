"""The rewrite of rule PFT211: libcst transformers tried in order at the finding's line.

Loaded by file path with the rule (perftune.engine.rewrite.transformers); shared libcst helpers
live in perftune.engine.rewrite. Nothing here executes user code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perftune.engine.rewrite import (
    Rewrite,
    callee_name,
    parent_block,
    parse,
    replace_node,
    statement_on_line,
    with_positions,
)
from perftune.engine.types import Applicability


def drop_synchronize(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """Delete a bare `torch.cuda.synchronize()` statement (unsafe: host timing around it, or
    reading results written by another stream, may rely on it)."""
    import libcst as cst

    module = parse(source)
    if module is None:
        return None
    _, positions = with_positions(module)
    stmt = statement_on_line(module, positions, line)
    if stmt is None or len(stmt.body) != 1 or not isinstance(stmt.body[0], cst.Expr):
        return None
    call = stmt.body[0].value
    if not isinstance(call, cst.Call) or callee_name(call) != "synchronize":
        return None
    block = parent_block(module, stmt)
    if block is None:
        return None
    body = [s for s in block.body if s is not stmt]
    if not body:
        body = [cst.SimpleStatementLine(body=[cst.Pass()])]
    return Rewrite(replace_node(module, block, block.with_changes(body=body)).code,
                   Applicability.UNSAFE)


TRANSFORMERS = (drop_synchronize,)
