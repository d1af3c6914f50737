"""The rewrite of rule PFT701: libcst transformers tried in order at the finding's line.

Loaded by file path with the rule (perftune.engine.rewrite.transformers); shared libcst helpers
live in perftune.engine.rewrite. Nothing here executes user code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perftune.engine.rewrite import Rewrite, code_of, parse, replace_node, with_positions
from perftune.engine.types import Applicability


def branchless_if(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`if cond: x = f(x)` (no else) → `x = torch.where(cond, f(x), x)`: one graph, decided on
    the device (unsafe: f(x) is now computed on every step, and a value it makes that the
    branch used to avoid, such as a division by zero, reaches the gradient through
    torch.where)."""
    import libcst as cst

    module = parse(source)
    if module is None or "torch" not in source:
        return None
    _, positions = with_positions(module)
    found = [node for node, pos in positions.items()
             if isinstance(node, cst.If) and pos.start.line == line]
    if len(found) != 1:
        return None
    branch = found[0]
    if branch.orelse is not None or not isinstance(branch.body, cst.IndentedBlock):
        return None
    body = branch.body.body
    if len(body) != 1 or not isinstance(body[0], cst.SimpleStatementLine) \
            or len(body[0].body) != 1 or not isinstance(body[0].body[0], cst.Assign):
        return None
    assign = body[0].body[0]
    if len(assign.targets) != 1 or not isinstance(assign.targets[0].target, cst.Name):
        return None
    name = assign.targets[0].target.value
    new = cst.parse_statement(
        f"{name} = torch.where({code_of(branch.test)}, {code_of(assign.value)}, {name})\n")
    new = new.with_changes(leading_lines=branch.leading_lines)
    return Rewrite(replace_node(module, branch, new).code, Applicability.UNSAFE)


TRANSFORMERS = (branchless_if,)
