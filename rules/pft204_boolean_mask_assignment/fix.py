"""The rewrite of rule PFT204: libcst transformers tried in order at the finding's line.

Loaded by file path with the rule (perftune.engine.rewrite.transformers); shared libcst helpers
live in perftune.engine.rewrite. Nothing here executes user code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perftune.engine.rewrite import (
    Rewrite,
    assignment_on_line,
    code_of,
    is_scalar_literal,
    replace_node,
    single_index,
)
from perftune.engine.types import Applicability


def mask_assignment(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`t[mask] = 0` → `t.masked_fill_(mask, 0)` (safe, still in place);
    `t[mask] = v[mask]` / `t[mask] = expr` → `t = torch.where(mask, v, t)` (unsafe: rebinds
    `t` instead of writing into it, and broadcasting differs)."""
    import libcst as cst

    found = assignment_on_line(source, line)
    if found is None:
        return None
    module, stmt, assign = found
    if len(assign.targets) != 1 or not isinstance(assign.targets[0].target, cst.Subscript):
        return None
    target = assign.targets[0].target
    mask = single_index(target)
    if mask is None:
        return None
    base = code_of(target.value)
    mask_code = code_of(mask)
    value = assign.value
    if is_scalar_literal(value):
        new = cst.parse_statement(f"{base}.masked_fill_({mask_code}, {code_of(value)})\n")
        applicability = Applicability.SAFE
    else:
        if isinstance(value, cst.Subscript) and single_index(value) is not None \
                and code_of(single_index(value)) == mask_code:
            value_code = code_of(value.value)
        else:
            value_code = code_of(value)
        if not isinstance(target.value, cst.Name):
            return None  # rebinding an attribute or element is not the same program
        new = cst.parse_statement(f"{base} = torch.where({mask_code}, {value_code}, {base})\n")
        applicability = Applicability.UNSAFE
    new = new.with_changes(leading_lines=stmt.leading_lines,
                           trailing_whitespace=stmt.trailing_whitespace)
    return Rewrite(replace_node(module, stmt, new).code, applicability)


TRANSFORMERS = (mask_assignment,)
