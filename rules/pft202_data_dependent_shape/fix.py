"""The rewrite of rule PFT202: libcst transformers tried in order at the finding's line.

Loaded by file path with the rule (perftune.engine.rewrite.transformers); shared libcst helpers
live in perftune.engine.rewrite. Nothing here executes user code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from perftune.engine.rewrite import (
    Rewrite,
    assignment_on_line,
    callee_name,
    code_of,
    is_scalar_literal,
    parent_block,
    replace_node,
    single_index,
    uses_name,
)
from perftune.engine.types import Applicability

if TYPE_CHECKING:  # libcst is imported lazily at run time (TID253)
    import libcst as cst


def _nonzero_condition(call: cst.Call) -> str | None:
    """`torch.nonzero(cond, as_tuple=True)` / `cond.nonzero(as_tuple=True)` / `torch.where(cond)`
    → source of `cond`."""
    import libcst as cst

    name = callee_name(call)
    positional = [a for a in call.args if a.keyword is None]
    if name == "nonzero":
        as_tuple = next((a for a in call.args if a.keyword is not None and a.keyword.value == "as_tuple"), None)
        if as_tuple is None or code_of(as_tuple.value).strip() != "True":
            return None
        if isinstance(call.func, cst.Attribute) and code_of(call.func.value) in {"torch"}:
            return code_of(positional[0].value) if len(positional) == 1 else None
        if isinstance(call.func, cst.Attribute) and not positional:
            return code_of(call.func.value)
        return None
    if name == "where" and len(call.args) == 1 and positional:
        return code_of(positional[0].value)
    return None


def nonzero_then_assign(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`idx = torch.nonzero(cond, as_tuple=True)` followed by `t[idx] = v`
    → `t.masked_fill_(cond, v)` (scalar v) or `t = torch.where(cond, v, t)`.

    Both statements go; unsafe when `idx` is used again later (then nothing is rewritten)."""
    import libcst as cst

    found = assignment_on_line(source, line)
    if found is None:
        return None
    module, stmt, first = found
    if len(first.targets) != 1 or not isinstance(first.targets[0].target, cst.Name) \
            or not isinstance(first.value, cst.Call):
        return None
    var = first.targets[0].target.value
    cond = _nonzero_condition(first.value)
    if cond is None:
        return None
    block = parent_block(module, stmt)
    if block is None:
        return None
    body = list(block.body)
    pos = next(k for k, s in enumerate(body) if s is stmt)
    if pos + 1 >= len(body):
        return None
    nxt = body[pos + 1]
    if not isinstance(nxt, cst.SimpleStatementLine) or len(nxt.body) != 1 \
            or not isinstance(nxt.body[0], cst.Assign):
        return None
    assign = nxt.body[0]
    if len(assign.targets) != 1 or not isinstance(assign.targets[0].target, cst.Subscript):
        return None
    target = assign.targets[0].target
    index = single_index(target)
    if not isinstance(index, cst.Name) or index.value != var:
        return None
    rest = "".join(code_of(s) for s in body[pos + 2:])
    if uses_name(rest, var):
        return None
    base = code_of(target.value)
    if is_scalar_literal(assign.value):
        text = f"{base}.masked_fill_({cond}, {code_of(assign.value)})\n"
        applicability = Applicability.SAFE
    else:
        if not isinstance(target.value, cst.Name):
            return None
        text = f"{base} = torch.where({cond}, {code_of(assign.value)}, {base})\n"
        applicability = Applicability.UNSAFE
    new = cst.parse_statement(text).with_changes(leading_lines=stmt.leading_lines,
                                                 trailing_whitespace=nxt.trailing_whitespace)
    body[pos:pos + 2] = [new]
    new_block = block.with_changes(body=body)
    return Rewrite(replace_node(module, block, new_block).code, applicability)


TRANSFORMERS = (nonzero_then_assign,)
