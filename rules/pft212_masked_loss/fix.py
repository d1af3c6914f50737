"""The rewrite of rule PFT212: libcst transformers tried in order at the finding's line.

Loaded by file path with the rule (perftune.engine.rewrite.transformers); shared libcst helpers
live in perftune.engine.rewrite. Nothing here executes user code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from perftune.engine.rewrite import (
    Rewrite,
    callee_name,
    code_of,
    expr,
    parse,
    replace_node,
    set_keywords,
    single_index,
    with_positions,
)
from perftune.engine.types import Applicability

if TYPE_CHECKING:  # libcst is imported lazily at run time (TID253)
    import libcst as cst


def _mask_ignore_value(module: Any, mask_code: str, target_code: str) -> str | None:
    """For `target != 255` (inline, or assigned to the mask's name earlier): '255'."""
    import libcst as cst

    def from_compare(node: Any) -> str | None:
        while isinstance(node, cst.Call) and callee_name(node) in {"bool"} and isinstance(node.func, cst.Attribute):
            node = node.func.value
        if isinstance(node, cst.Comparison) and len(node.comparisons) == 1 \
                and isinstance(node.comparisons[0].operator, cst.NotEqual) \
                and code_of(node.left) == target_code:
            return str(code_of(node.comparisons[0].comparator))
        if isinstance(node, cst.Call) and callee_name(node) == "ne" and isinstance(node.func, cst.Attribute) \
                and code_of(node.func.value) == target_code and len(node.args) == 1:
            return str(code_of(node.args[0].value))
        return None

    inline = expr(mask_code)
    direct = from_compare(inline.value if isinstance(inline, cst.Subscript) else inline)
    if direct is not None:
        return direct
    found: list[str] = []

    class Finder(cst.CSTVisitor):
        def visit_Assign(self, node: cst.Assign) -> None:
            if len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name) \
                    and node.targets[0].target.value == mask_code:
                value = from_compare(node.value)
                if value is not None:
                    found.append(value)

    module.visit(Finder())
    return found[-1] if len(set(found)) == 1 else None


_LOSS_FUNCTIONS = ("cross_entropy", "nll_loss")


def _unmask(node: Any, mask_code: str) -> Any:
    """`x[mask]` → `x`; `logits.permute(0, 2, 3, 1)[mask]` → `logits` (class dim back at 1)."""
    import libcst as cst

    if not isinstance(node, cst.Subscript) or single_index(node) is None \
            or code_of(single_index(node)) != mask_code:
        return None
    value = node.value
    if isinstance(value, cst.Call) and callee_name(value) in {"permute", "movedim", "transpose"} \
            and isinstance(value.func, cst.Attribute):
        return value.func.value
    return value


def masked_loss(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`F.cross_entropy(logits[valid], target[valid])` with `valid = target != 255`
    → `F.cross_entropy(logits, target, ignore_index=255)`; for a criterion object
    `criterion(logits[valid], target[valid])` → `criterion(logits, target)` and
    `nn.CrossEntropyLoss(...)` gets `ignore_index=255`. Unsafe: shapes must already be
    (N, C, ...) / (N, ...), and mean reduction then averages over the kept elements only,
    which is what the masked version computed."""
    import libcst as cst

    module = parse(source)
    if module is None:
        return None
    _, positions = with_positions(module)
    calls = [c for c, pos in positions.items() if isinstance(c, cst.Call)
             and pos.start.line <= line <= pos.end.line and len(c.args) >= 2
             and isinstance(c.args[0].value, cst.Subscript) and isinstance(c.args[1].value, cst.Subscript)]
    if len(calls) != 1:
        return None
    call = calls[0]
    first, second = call.args[0].value, call.args[1].value
    if not isinstance(first, cst.Subscript) or not isinstance(second, cst.Subscript):
        return None
    mask_node = single_index(second)
    if mask_node is None or single_index(first) is None:
        return None
    mask_code = code_of(mask_node)
    target = second.value
    target_code = code_of(target)
    ignore = params.get("ignore_index") or _mask_ignore_value(module, mask_code, target_code)
    if ignore is None:
        return None
    logits = _unmask(call.args[0].value, mask_code)
    if logits is None:
        return None
    args = [call.args[0].with_changes(value=logits), call.args[1].with_changes(value=target),
            *call.args[2:]]
    name = callee_name(call)
    new_call = call.with_changes(args=args)
    if name in _LOSS_FUNCTIONS:
        with_kw = set_keywords(new_call, {"ignore_index": str(ignore)}, overwrite=True)
        new_module = replace_node(module, call, with_kw or new_call)
        return Rewrite(new_module.code, Applicability.UNSAFE)
    # A criterion object: find its construction (nn.CrossEntropyLoss(...)) in the same file.
    ctors = [c for c, _ in positions.items() if isinstance(c, cst.Call)
             and callee_name(c) in {"CrossEntropyLoss", "NLLLoss"}]
    if len(ctors) != 1:
        return None
    new_ctor = set_keywords(ctors[0], {"ignore_index": str(ignore)}, overwrite=True)
    module = replace_node(module, call, new_call)
    if new_ctor is not None:
        # deep_replace above rebuilt the tree; find the constructor again by its code.
        module = _replace_by_code(module, code_of(ctors[0]), new_ctor)
    return Rewrite(module.code, Applicability.UNSAFE)


def _replace_by_code(module: Any, code: str, new: Any) -> Any:
    import libcst as cst

    class Swap(cst.CSTTransformer):
        def leave_Call(self, original: cst.Call, updated: cst.Call) -> Any:
            return new if code_of(original) == code else updated

    return module.visit(Swap())


TRANSFORMERS = (masked_loss,)
