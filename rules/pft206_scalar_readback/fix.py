"""The rewrite of rule PFT206: libcst transformers tried in order at the finding's line.

Loaded by file path with the rule (perftune.engine.rewrite.transformers); shared libcst helpers
live in perftune.engine.rewrite. Nothing here executes user code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perftune.engine.rewrite import (
    Rewrite,
    callee_name,
    parse,
    replace_node,
    statement_on_line,
    with_positions,
)
from perftune.engine.types import Applicability


def deferred_item(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`total += loss.item()` → `total += loss.detach()`; `xs.append(t.item())` →
    `xs.append(t.detach())`: accumulate on the device, read once after the loop (unsafe: the
    accumulator becomes a tensor; call `float()` on it where it is printed)."""
    import libcst as cst

    module = parse(source)
    if module is None:
        return None
    _, positions = with_positions(module)
    stmt = statement_on_line(module, positions, line)
    if stmt is None or len(stmt.body) != 1:
        return None
    small = stmt.body[0]
    if isinstance(small, cst.AugAssign):
        value = small.value
    elif isinstance(small, cst.Expr) and isinstance(small.value, cst.Call) \
            and callee_name(small.value) == "append" and len(small.value.args) == 1:
        value = small.value.args[0].value
    else:
        return None
    if not (isinstance(value, cst.Call) and callee_name(value) == "item" and not value.args
            and isinstance(value.func, cst.Attribute)):
        return None
    new_value = value.with_changes(func=value.func.with_changes(attr=cst.Name("detach")))
    return Rewrite(replace_node(module, value, new_value).code, Applicability.UNSAFE)


TRANSFORMERS = (deferred_item,)
