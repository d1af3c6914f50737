"""The rewrite of rule PFT203: libcst transformers tried in order at the finding's line.

Loaded by file path with the rule (perftune.engine.rewrite.transformers); shared libcst helpers
live in perftune.engine.rewrite. Nothing here executes user code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perftune.engine.rewrite import (
    Rewrite,
    callee_name,
    code_of,
    parent_block,
    parse,
    replace_node,
    single_index,
    statement_on_line,
    uses_name,
    with_positions,
)
from perftune.engine.types import Applicability


def _is_plain_reference(node: Any) -> bool:
    """`x` or `self.x.y`: evaluating it twice gives the same tensor and has no side effect."""
    import libcst as cst

    while isinstance(node, cst.Attribute):
        node = node.value
    return isinstance(node, cst.Name)


def _single_assign(stmt: Any) -> Any:
    """The assignment when `stmt` is exactly one `target = value`."""
    import libcst as cst

    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 \
            and isinstance(stmt.body[0], cst.Assign) and len(stmt.body[0].targets) == 1:
        return stmt.body[0]
    return None


def _zeros_size(call: Any) -> str | None:
    """The length of a 1-d `torch.zeros(n, ...)` / `x.new_zeros(n, ...)`."""
    import libcst as cst

    if not isinstance(call, cst.Call) or callee_name(call) not in {"zeros", "new_zeros"}:
        return None
    positional = [a for a in call.args if a.keyword is None and not a.star]
    if len(positional) != 1:
        return None
    size = positional[0].value
    if isinstance(size, (cst.Tuple, cst.List)):
        if len(size.elements) != 1:
            return None
        size = size.elements[0].value
    return code_of(size).strip()


def _fills_histogram(stmt: Any, labels: str, counts: str) -> str | None:
    """The histogram's name when `stmt` is `histogram[labels] = counts`."""
    import libcst as cst

    assign = _single_assign(stmt)
    if assign is None or not isinstance(assign.value, cst.Name) or assign.value.value != counts:
        return None
    target = assign.targets[0].target
    if not isinstance(target, cst.Subscript) or not isinstance(target.value, cst.Name):
        return None
    index = single_index(target)
    if not isinstance(index, cst.Name) or index.value != labels:
        return None
    return target.value.value


def _unique_call(assign: Any) -> tuple[str, str, str] | None:
    """(labels name, counts name, source of the tensor) for
    `labels, counts = torch.unique(x, return_counts=True)` or `x.unique(return_counts=True)`."""
    import libcst as cst

    target = assign.targets[0].target
    call = assign.value
    if not isinstance(target, (cst.Tuple, cst.List)) or len(target.elements) != 2 \
            or not all(isinstance(e.value, cst.Name) for e in target.elements) \
            or not isinstance(call, cst.Call) or callee_name(call) != "unique":
        return None
    counts_flag = next((a.value for a in call.args if a.keyword is not None
                        and a.keyword.value == "return_counts"), None)
    if counts_flag is None or code_of(counts_flag).strip() != "True":
        return None
    allowed = {"return_counts", "sorted"}
    if any(a.keyword is not None and a.keyword.value not in allowed for a in call.args):
        return None  # dim= or return_inverse= change what comes back
    positional = [a for a in call.args if a.keyword is None]
    if isinstance(call.func, cst.Attribute) and code_of(call.func.value).strip() == "torch":
        if len(positional) != 1:
            return None
        tensor = positional[0].value
    elif isinstance(call.func, cst.Attribute) and not positional:
        tensor = call.func.value
    else:
        return None
    if not _is_plain_reference(tensor):
        return None
    labels, counts = (code_of(e.value).strip() for e in target.elements)
    return labels, counts, code_of(tensor).strip()


def unique_histogram(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`torch.unique(x, return_counts=True)` whose results only fill a fixed-size histogram
    → sort + searchsorted counts over the histogram's range, with no data-dependent shape:

        labels, counts = torch.unique(target, return_counts=True)
        per_label = torch.zeros(NUM_CLASSES + 1, dtype=torch.long, device=target.device)
        per_label[labels] = counts

    becomes

        labels = torch.arange(NUM_CLASSES + 1, dtype=target.dtype, device=target.device)
        target_sorted = torch.sort(target.flatten()).values
        counts = torch.searchsorted(target_sorted, labels, right=True) - torch.searchsorted(target_sorted, labels)
        per_label = torch.zeros(NUM_CLASSES + 1, dtype=torch.long, device=target.device)
        per_label[labels] = counts

    The histogram may be made before or after the unique call. Unsafe: the histogram now
    ignores values outside [0, size) (the original wrapped negative labels round, or failed on
    labels past the end)."""
    import libcst as cst

    module = parse(source)
    if module is None:
        return None
    _, positions = with_positions(module)
    stmt = statement_on_line(module, positions, line)
    first = _single_assign(stmt)
    found = _unique_call(first) if first is not None else None
    block = parent_block(module, stmt) if found is not None else None
    if found is None or block is None:
        return None
    labels, counts, tensor = found
    body = list(block.body)
    index = next(k for k, s in enumerate(body) if s is stmt)
    fill_at = next((k for k in range(index + 1, len(body))
                    if _fills_histogram(body[k], labels, counts) is not None), None)
    if fill_at is None:
        return None
    histogram = _fills_histogram(body[fill_at], labels, counts)
    size: str | None = None
    defined_at = -1
    for k in range(fill_at - 1, -1, -1):  # the histogram's latest definition before the fill
        assign = _single_assign(body[k])
        if assign is not None and isinstance(assign.targets[0].target, cst.Name) \
                and assign.targets[0].target.value == histogram:
            size, defined_at = _zeros_size(assign.value), k
            break
    if size is None or histogram is None:
        return None
    # The fill now writes every slot, zeros included: the histogram must still be all zeros.
    between = "".join(code_of(body[k]) for k in range(defined_at + 1, fill_at) if k != index)
    if uses_name(between, histogram):
        return None
    # labels and counts must mean nothing else anywhere after the unique call.
    rest = "".join(code_of(s) for k, s in enumerate(body[index + 1:], start=index + 1)
                   if k != fill_at)
    if uses_name(rest, labels, counts):
        return None
    taken = code_of(block)
    base = tensor.replace(".", "_")
    sorted_name = next((name for name in (f"{base}_sorted", f"{base}_sorted_values",
                                          "sorted_values_", "sorted_values__")
                        if not uses_name(taken, name)), None)
    if sorted_name is None:
        return None
    text = (
        f"{labels} = torch.arange({size}, dtype={tensor}.dtype, device={tensor}.device)\n"
        f"{sorted_name} = torch.sort({tensor}.flatten()).values\n"
        f"{counts} = torch.searchsorted({sorted_name}, {labels}, right=True)"
        f" - torch.searchsorted({sorted_name}, {labels})\n"
    )
    new_statements = list(cst.parse_module(text).body)
    new_statements[0] = new_statements[0].with_changes(
        leading_lines=stmt.leading_lines, trailing_whitespace=stmt.trailing_whitespace)
    body[index:index + 1] = new_statements
    return Rewrite(replace_node(module, block, block.with_changes(body=body)).code,
                   Applicability.UNSAFE,
                   note="Count with sort + searchsorted over the histogram's fixed range "
                   "instead of torch.unique")


TRANSFORMERS = (unique_histogram,)
