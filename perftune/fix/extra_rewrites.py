"""Mechanical rewrites the engine does not make yet, kept apart so the engine can absorb them.

Each transformer has the engine's signature (`perftune.engine.rewrite.Transformer`:
`(source, line, params) -> Rewrite | None`) and looks only at the finding's line and the
statements after it in the same block; moving one into `perftune/engine/rewrite.py` is a matter
of adding `@transformer("PFT203")` above it.

PFT203 unique-sync. The engine gives only a snippet. The histogram idiom

    labels, counts = torch.unique(target, return_counts=True)
    per_label = torch.zeros(NUM_CLASSES + 1, dtype=torch.long, device=target.device)
    per_label[labels] = counts

becomes sort + count over the fixed range of labels the histogram has slots for:

    labels = torch.arange(NUM_CLASSES + 1, dtype=target.dtype, device=target.device)
    target_sorted = torch.sort(target.flatten()).values
    counts = torch.searchsorted(target_sorted, labels, right=True) - torch.searchsorted(target_sorted, labels)
    per_label = torch.zeros(NUM_CLASSES + 1, dtype=torch.long, device=target.device)
    per_label[labels] = counts

Every shape is known before the data are, so the host never waits. Unsafe: the histogram now
ignores values outside [0, size) (the original wrapped negative labels round, or failed on
labels past the end), which `perftune fix` checks on the real data.
"""

from __future__ import annotations

import io
import tokenize
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perftune.engine.rewrite import Rewrite
from perftune.engine.types import Applicability
from perftune.fix.diffs import render_file_diff

if TYPE_CHECKING:  # libcst is imported lazily at run time (TID253)
    import libcst as cst

ExtraTransformer = Callable[[str, int, Mapping[str, Any]], Rewrite | None]
EXTRA_TRANSFORMERS: dict[str, list[ExtraTransformer]] = {}


def extra_transformer(*codes: str) -> Callable[[ExtraTransformer], ExtraTransformer]:
    def register(fn: ExtraTransformer) -> ExtraTransformer:
        for code in codes:
            EXTRA_TRANSFORMERS.setdefault(code, []).append(fn)
        return fn
    return register


# ---------------------------------------------------------------------------- libcst helpers
def _code(node: Any) -> str:
    import libcst as cst

    return str(cst.Module(body=[]).code_for_node(node))


def _callee(call: cst.Call) -> str:
    import libcst as cst

    if isinstance(call.func, cst.Attribute):
        return call.func.attr.value
    return call.func.value if isinstance(call.func, cst.Name) else ""


def _keyword(call: cst.Call, name: str) -> Any:
    return next((a.value for a in call.args if a.keyword is not None
                 and a.keyword.value == name), None)


def _names_used(code: str) -> set[str]:
    try:
        return {tok.string for tok in tokenize.generate_tokens(io.StringIO(code).readline)
                if tok.type == tokenize.NAME}
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return {"<unreadable>"}


def _is_plain_reference(node: Any) -> bool:
    """`x` or `self.x.y`: evaluating it twice gives the same tensor and has no side effect."""
    import libcst as cst

    while isinstance(node, cst.Attribute):
        node = node.value
    return isinstance(node, cst.Name)


def _block_of(module: cst.Module, line: int) -> tuple[Any, int] | None:
    """The module or indented block holding the simple statement that starts on `line`,
    and the statement's index in it."""
    import libcst as cst
    from libcst.metadata import MetadataWrapper, PositionProvider

    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    found: list[tuple[Any, int]] = []

    def scan(block: Any) -> None:
        for index, stmt in enumerate(block.body):
            pos = positions.get(stmt)
            if isinstance(stmt, cst.SimpleStatementLine) and pos is not None \
                    and pos.start.line <= line <= pos.end.line:
                found.append((block, index))

    scan(module)

    class Blocks(cst.CSTVisitor):
        def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
            scan(node)

    module.visit(Blocks())
    return found[-1] if found else None


def _single_assign(stmt: Any) -> Any:
    import libcst as cst

    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 \
            and isinstance(stmt.body[0], cst.Assign) and len(stmt.body[0].targets) == 1:
        return stmt.body[0]
    return None


def _zeros_size(call: Any) -> str | None:
    """The length of a 1-d `torch.zeros(n, ...)` / `x.new_zeros(n, ...)`."""
    import libcst as cst

    if not isinstance(call, cst.Call) or _callee(call) not in {"zeros", "new_zeros"}:
        return None
    positional = [a for a in call.args if a.keyword is None and not a.star]
    if len(positional) != 1:
        return None
    size = positional[0].value
    if isinstance(size, (cst.Tuple, cst.List)):
        if len(size.elements) != 1:
            return None
        size = size.elements[0].value
    return _code(size).strip()


# ---------------------------------------------------------------------------- PFT203
def _fills_histogram(stmt: Any, labels: str, counts: str) -> str | None:
    """The histogram's name when `stmt` is `histogram[labels] = counts`."""
    import libcst as cst

    assign = _single_assign(stmt)
    if assign is None or not isinstance(assign.value, cst.Name) or assign.value.value != counts:
        return None
    target = assign.targets[0].target
    if not isinstance(target, cst.Subscript) or not isinstance(target.value, cst.Name) \
            or len(target.slice) != 1 or not isinstance(target.slice[0].slice, cst.Index):
        return None
    index = target.slice[0].slice.value
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
            or not isinstance(call, cst.Call) or _callee(call) != "unique":
        return None
    counts_flag = _keyword(call, "return_counts")
    if counts_flag is None or _code(counts_flag).strip() != "True":
        return None
    allowed = {"return_counts", "sorted"}
    if any(a.keyword is not None and a.keyword.value not in allowed for a in call.args):
        return None  # dim= or return_inverse= change what comes back
    positional = [a for a in call.args if a.keyword is None]
    if isinstance(call.func, cst.Attribute) and _code(call.func.value).strip() == "torch":
        if len(positional) != 1:
            return None
        tensor = positional[0].value
    elif isinstance(call.func, cst.Attribute) and not positional:
        tensor = call.func.value
    else:
        return None
    if not _is_plain_reference(tensor):
        return None
    labels, counts = (_code(e.value).strip() for e in target.elements)
    return labels, counts, _code(tensor).strip()


@extra_transformer("PFT203")
def unique_histogram(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`torch.unique(x, return_counts=True)` whose results only fill a fixed-size histogram
    (`h = torch.zeros(n, ...)` then `h[labels] = counts`) → sort + searchsorted counts over
    `arange(n)`, with no data-dependent shape."""
    import libcst as cst

    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError:
        return None
    located = _block_of(module, line)
    if located is None:
        return None
    block, index = located
    stmt = block.body[index]
    first = _single_assign(stmt)
    found = _unique_call(first) if first is not None else None
    if found is None:
        return None
    labels, counts, tensor = found
    body = list(block.body)
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
    between = "".join(_code(body[k]) for k in range(defined_at + 1, fill_at) if k != index)
    if histogram in _names_used(between):
        return None
    # labels and counts must mean nothing else anywhere after the unique call.
    rest = "".join(_code(s) for k, s in enumerate(body[index + 1:], start=index + 1) if k != fill_at)
    used = _names_used(rest)
    if labels in used or counts in used or "<unreadable>" in used:
        return None
    taken = _names_used(_code(block))
    base = tensor.replace(".", "_")
    sorted_name = next(name for name in (f"{base}_sorted", f"{base}_sorted_values",
                                         "sorted_values_", "sorted_values__")
                       if name not in taken)
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
    new_module = module.deep_replace(block, block.with_changes(body=body))
    assert isinstance(new_module, cst.Module)
    return Rewrite(new_module.code, Applicability.UNSAFE,
                   note="Count with sort + searchsorted over the histogram's fixed range "
                   "instead of torch.unique")


# ---------------------------------------------------------------------------- entry point
def extra_rewrite(code: str, path: Path, line: int | None, display: str,
                  params: Mapping[str, Any] | None = None
                  ) -> tuple[str, Applicability, str] | None:
    """(unified diff with a/`display` b/`display`, applicability, title of the change) for
    rule `code` at `path:line`, or None."""
    if line is None or code not in EXTRA_TRANSFORMERS:
        return None
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for fn in EXTRA_TRANSFORMERS[code]:
        try:
            result = fn(source, line, params or {})
        except Exception:
            # A transformer that trips over an unusual shape must not stop the others.
            result = None
        if result is not None and result.code != source:
            return (render_file_diff(display, source, result.code), result.applicability,
                    result.note)
    return None
