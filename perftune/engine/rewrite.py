"""Mechanical rewrites at the attributed line, as unified diffs against the user's real file.

A small library of libcst transformers keyed by rule code. Each one looks at the statement on
the finding's line (and, where the pattern spans several, the statements after it in the same
block), returns the transformed module (or None when the pattern is not there — the line
changed, the call has another shape), and says whether the change keeps the program's meaning
(safe) or needs a review (unsafe). Nothing here executes user code; a missing file, a syntax
error or an unknown shape falls back to a before/after snippet.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perftune.engine.types import Applicability, Location, Suggestion
from perftune.sourcefiles import read_python_file

if TYPE_CHECKING:  # libcst is imported lazily at run time (TID253)
    import libcst as cst


@dataclass(frozen=True)
class Rewrite:
    """A transformed module and how safe the change is; `note` names the change when it is
    not what the rule's generic advice says (it becomes the suggestion's title)."""

    code: str
    applicability: Applicability
    note: str = ""


Transformer = Callable[[str, int, Mapping[str, Any]], Rewrite | None]
TRANSFORMERS: dict[str, list[Transformer]] = {}


def transformer(*codes: str) -> Callable[[Transformer], Transformer]:
    def register(fn: Transformer) -> Transformer:
        for code in codes:
            TRANSFORMERS.setdefault(code, []).append(fn)
        return fn
    return register


# ---------------------------------------------------------------------------- helpers
def _parse(source: str) -> Any:
    import libcst as cst

    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError:
        return None


def _with_positions(module: Any) -> tuple[Any, Any]:
    from libcst.metadata import MetadataWrapper, PositionProvider

    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    return wrapper, wrapper.resolve(PositionProvider)


def _callee_name(call: cst.Call) -> str:
    import libcst as cst

    func = call.func
    if isinstance(func, cst.Attribute):
        return func.attr.value
    if isinstance(func, cst.Name):
        return func.value
    return ""


def _statement_on_line(module: Any, positions: Any, line: int) -> Any:
    """The innermost simple statement whose first line is `line`'s statement."""
    import libcst as cst

    best = None
    for node, pos in positions.items():
        if isinstance(node, cst.SimpleStatementLine) and pos.start.line <= line <= pos.end.line:
            best = node
    return best


def _assignment_on_line(source: str, line: int) -> tuple[Any, Any, Any] | None:
    """(module, statement, assignment) when `line` holds exactly one `x = ...`."""
    import libcst as cst

    module = _parse(source)
    if module is None:
        return None
    _, positions = _with_positions(module)
    stmt = _statement_on_line(module, positions, line)
    if stmt is None or len(stmt.body) != 1 or not isinstance(stmt.body[0], cst.Assign):
        return None
    return module, stmt, stmt.body[0]


def _replace_node(module: Any, old: Any, new: Any) -> Any:
    return module.deep_replace(old, new)


def _code_of(node: Any) -> str:
    import libcst as cst

    return str(cst.Module(body=[]).code_for_node(node))


def _expr(text: str) -> Any:
    import libcst as cst

    return cst.parse_expression(text)


def _kwarg(name: str, value: str) -> Any:
    import libcst as cst

    return cst.Arg(keyword=cst.Name(name), value=_expr(value),
                   equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                         whitespace_after=cst.SimpleWhitespace("")))


def _set_keywords(call: cst.Call, values: Mapping[str, str], overwrite: bool) -> cst.Call | None:
    """Add (or overwrite) keyword arguments; None when nothing would change."""
    import libcst as cst

    args = list(call.args)
    changed = False
    for name, value in values.items():
        pos = next((k for k, a in enumerate(args) if a.keyword is not None and a.keyword.value == name), None)
        if pos is not None:
            current = _code_of(args[pos].value).strip()
            if current == value or not overwrite:
                continue
            args[pos] = args[pos].with_changes(value=_expr(value))
            changed = True
            continue
        if any(a.star for a in args):
            return None  # **kwargs may already carry it
        if args:
            last = args[-1]
            if last.comma == cst.MaybeSentinel.DEFAULT or not isinstance(last.comma, cst.Comma):
                args[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        args.append(_kwarg(name, value))
        changed = True
    return call.with_changes(args=args) if changed else None


def _calls_on_line(module: Any, positions: Any, line: int, names: Sequence[str]) -> list[Any]:
    import libcst as cst

    out = []
    for node, pos in positions.items():
        if not isinstance(node, cst.Call) or _callee_name(node) not in names:
            continue
        func_pos = positions.get(node.func)
        at = func_pos.end.line if func_pos is not None else pos.start.line
        if at == line or pos.start.line == line:
            out.append(node)
    return out


def _keyword_rewrite(source: str, line: int, names: Sequence[str], values: Mapping[str, str],
                     applicability: Applicability, overwrite: bool = True) -> Rewrite | None:
    module = _parse(source)
    if module is None:
        return None
    _, positions = _with_positions(module)
    calls = _calls_on_line(module, positions, line, names)
    if len(calls) != 1:
        return None
    new_call = _set_keywords(calls[0], values, overwrite)
    if new_call is None:
        return None
    return Rewrite(_replace_node(module, calls[0], new_call).code, applicability)


# ---------------------------------------------------------------------------- copies
@transformer("PFT208")
def pin_and_non_blocking(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`.to(device)` → `.to(device, non_blocking=True)` and, in the same file, the one
    `DataLoader(...)` without pinning → `pin_memory=True`: the copy becomes asynchronous only
    when both are there."""
    import libcst as cst

    first = non_blocking_copy(source, line, params)
    base = first.code if first is not None else source
    module = _parse(base)
    if module is None:
        return first
    _, positions = _with_positions(module)
    loaders = [c for c in positions if isinstance(c, cst.Call) and _callee_name(c) == "DataLoader"]
    if len(loaders) != 1:
        return first
    pinned = _set_keywords(loaders[0], {"pin_memory": "True"}, overwrite=True)
    if pinned is None:
        return first
    return Rewrite(_replace_node(module, loaders[0], pinned).code, Applicability.SAFE)


@transformer("PFT208", "PFT209")
def non_blocking_copy(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`.to(device)` / `.cuda()` → the same call with `non_blocking=True`.

    Safe for host→device copies (the stream orders them before any kernel that reads the
    result); a device→host copy read on the host right after would need a sync: unsafe."""
    safe = params.get("direction", "HtoD") == "HtoD"
    return _keyword_rewrite(source, line, ("to", "cuda"), {"non_blocking": "True"},
                            Applicability.SAFE if safe else Applicability.UNSAFE, overwrite=True)


# ---------------------------------------------------------------------------- DataLoader
@transformer("PFT103")
def dataloader_pin_memory(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    return _keyword_rewrite(source, line, ("DataLoader",), {"pin_memory": "True"},
                            Applicability.SAFE)


@transformer("PFT101", "PFT102")
def dataloader_workers(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`DataLoader(...)` → with `num_workers=N, persistent_workers=True`.

    Unsafe: workers run the dataset in subprocesses (the dataset must be picklable, and
    random state per worker differs)."""
    workers = str(params.get("num_workers", 4))
    return _keyword_rewrite(source, line, ("DataLoader",),
                            {"num_workers": workers, "persistent_workers": "True"},
                            Applicability.UNSAFE, overwrite=True)


# ---------------------------------------------------------------------------- masks
def _is_scalar_literal(node: Any) -> bool:
    import libcst as cst

    if isinstance(node, (cst.Integer, cst.Float)):
        return True
    if isinstance(node, cst.UnaryOperation) and isinstance(node.expression, (cst.Integer, cst.Float)):
        return True
    if isinstance(node, cst.UnaryOperation) and isinstance(node.expression, cst.Name):
        return _is_scalar_literal(node.expression)
    # True/False, and module constants by convention (IGNORE_INDEX = -100).
    return isinstance(node, cst.Name) and (node.value in {"True", "False"}
                                           or (node.value.isupper() and len(node.value) > 1))


def _single_index(sub: cst.Subscript) -> Any:
    import libcst as cst

    if len(sub.slice) != 1 or not isinstance(sub.slice[0].slice, cst.Index):
        return None
    return sub.slice[0].slice.value


@transformer("PFT204")
def mask_assignment(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`t[mask] = 0` → `t.masked_fill_(mask, 0)` (safe, still in place);
    `t[mask] = v[mask]` / `t[mask] = expr` → `t = torch.where(mask, v, t)` (unsafe: rebinds
    `t` instead of writing into it, and broadcasting differs)."""
    import libcst as cst

    found = _assignment_on_line(source, line)
    if found is None:
        return None
    module, stmt, assign = found
    if len(assign.targets) != 1 or not isinstance(assign.targets[0].target, cst.Subscript):
        return None
    target = assign.targets[0].target
    mask = _single_index(target)
    if mask is None:
        return None
    base = _code_of(target.value)
    mask_code = _code_of(mask)
    value = assign.value
    if _is_scalar_literal(value):
        new = cst.parse_statement(f"{base}.masked_fill_({mask_code}, {_code_of(value)})\n")
        applicability = Applicability.SAFE
    else:
        if isinstance(value, cst.Subscript) and _single_index(value) is not None \
                and _code_of(_single_index(value)) == mask_code:
            value_code = _code_of(value.value)
        else:
            value_code = _code_of(value)
        if not isinstance(target.value, cst.Name):
            return None  # rebinding an attribute or element is not the same program
        new = cst.parse_statement(f"{base} = torch.where({mask_code}, {value_code}, {base})\n")
        applicability = Applicability.UNSAFE
    new = new.with_changes(leading_lines=stmt.leading_lines,
                           trailing_whitespace=stmt.trailing_whitespace)
    return Rewrite(_replace_node(module, stmt, new).code, applicability)


def _nonzero_condition(call: cst.Call) -> str | None:
    """`torch.nonzero(cond, as_tuple=True)` / `cond.nonzero(as_tuple=True)` / `torch.where(cond)`
    → source of `cond`."""
    import libcst as cst

    name = _callee_name(call)
    positional = [a for a in call.args if a.keyword is None]
    if name == "nonzero":
        as_tuple = next((a for a in call.args if a.keyword is not None and a.keyword.value == "as_tuple"), None)
        if as_tuple is None or _code_of(as_tuple.value).strip() != "True":
            return None
        if isinstance(call.func, cst.Attribute) and _code_of(call.func.value) in {"torch"}:
            return _code_of(positional[0].value) if len(positional) == 1 else None
        if isinstance(call.func, cst.Attribute) and not positional:
            return _code_of(call.func.value)
        return None
    if name == "where" and len(call.args) == 1 and positional:
        return _code_of(positional[0].value)
    return None


@transformer("PFT202")
def nonzero_then_assign(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`idx = torch.nonzero(cond, as_tuple=True)` followed by `t[idx] = v`
    → `t.masked_fill_(cond, v)` (scalar v) or `t = torch.where(cond, v, t)`.

    Both statements go; unsafe when `idx` is used again later (then nothing is rewritten)."""
    import libcst as cst

    found = _assignment_on_line(source, line)
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
    block = _parent_block(module, stmt)
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
    index = _single_index(target)
    if not isinstance(index, cst.Name) or index.value != var:
        return None
    rest = "".join(_code_of(s) for s in body[pos + 2:])
    if _uses_name(rest, var):
        return None
    base = _code_of(target.value)
    if _is_scalar_literal(assign.value):
        text = f"{base}.masked_fill_({cond}, {_code_of(assign.value)})\n"
        applicability = Applicability.SAFE
    else:
        if not isinstance(target.value, cst.Name):
            return None
        text = f"{base} = torch.where({cond}, {_code_of(assign.value)}, {base})\n"
        applicability = Applicability.UNSAFE
    new = cst.parse_statement(text).with_changes(leading_lines=stmt.leading_lines,
                                                 trailing_whitespace=nxt.trailing_whitespace)
    body[pos:pos + 2] = [new]
    new_block = block.with_changes(body=body)
    return Rewrite(_replace_node(module, block, new_block).code, applicability)


def _uses_name(code: str, *names: str) -> bool:
    """Whether `code` mentions any of `names` (True when it cannot be read)."""
    import io
    import tokenize

    try:
        return any(tok.type == tokenize.NAME and tok.string in names
                   for tok in tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return True


def _parent_block(module: Any, stmt: Any) -> Any:
    """The module or indented block whose body holds `stmt`."""
    import libcst as cst

    if any(s is stmt for s in module.body):
        return module
    found: list[Any] = []

    class Finder(cst.CSTVisitor):
        def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
            if any(s is stmt for s in node.body):
                found.append(node)

    module.visit(Finder())
    return found[0] if found else None


# ---------------------------------------------------------------------------- losses
def _mask_ignore_value(module: Any, mask_code: str, target_code: str) -> str | None:
    """For `target != 255` (inline, or assigned to the mask's name earlier): '255'."""
    import libcst as cst

    def from_compare(node: Any) -> str | None:
        while isinstance(node, cst.Call) and _callee_name(node) in {"bool"} and isinstance(node.func, cst.Attribute):
            node = node.func.value
        if isinstance(node, cst.Comparison) and len(node.comparisons) == 1 \
                and isinstance(node.comparisons[0].operator, cst.NotEqual) \
                and _code_of(node.left) == target_code:
            return str(_code_of(node.comparisons[0].comparator))
        if isinstance(node, cst.Call) and _callee_name(node) == "ne" and isinstance(node.func, cst.Attribute) \
                and _code_of(node.func.value) == target_code and len(node.args) == 1:
            return str(_code_of(node.args[0].value))
        return None

    inline = _expr(mask_code)
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

    if not isinstance(node, cst.Subscript) or _single_index(node) is None \
            or _code_of(_single_index(node)) != mask_code:
        return None
    value = node.value
    if isinstance(value, cst.Call) and _callee_name(value) in {"permute", "movedim", "transpose"} \
            and isinstance(value.func, cst.Attribute):
        return value.func.value
    return value


@transformer("PFT212")
def masked_loss(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`F.cross_entropy(logits[valid], target[valid])` with `valid = target != 255`
    → `F.cross_entropy(logits, target, ignore_index=255)`; for a criterion object
    `criterion(logits[valid], target[valid])` → `criterion(logits, target)` and
    `nn.CrossEntropyLoss(...)` gets `ignore_index=255`. Unsafe: shapes must already be
    (N, C, ...) / (N, ...), and mean reduction then averages over the kept elements only,
    which is what the masked version computed."""
    import libcst as cst

    module = _parse(source)
    if module is None:
        return None
    _, positions = _with_positions(module)
    calls = [c for c, pos in positions.items() if isinstance(c, cst.Call)
             and pos.start.line <= line <= pos.end.line and len(c.args) >= 2
             and isinstance(c.args[0].value, cst.Subscript) and isinstance(c.args[1].value, cst.Subscript)]
    if len(calls) != 1:
        return None
    call = calls[0]
    first, second = call.args[0].value, call.args[1].value
    if not isinstance(first, cst.Subscript) or not isinstance(second, cst.Subscript):
        return None
    mask_node = _single_index(second)
    if mask_node is None or _single_index(first) is None:
        return None
    mask_code = _code_of(mask_node)
    target = second.value
    target_code = _code_of(target)
    ignore = params.get("ignore_index") or _mask_ignore_value(module, mask_code, target_code)
    if ignore is None:
        return None
    logits = _unmask(call.args[0].value, mask_code)
    if logits is None:
        return None
    args = [call.args[0].with_changes(value=logits), call.args[1].with_changes(value=target),
            *call.args[2:]]
    name = _callee_name(call)
    new_call = call.with_changes(args=args)
    if name in _LOSS_FUNCTIONS:
        with_kw = _set_keywords(new_call, {"ignore_index": str(ignore)}, overwrite=True)
        new_module = _replace_node(module, call, with_kw or new_call)
        return Rewrite(new_module.code, Applicability.UNSAFE)
    # A criterion object: find its construction (nn.CrossEntropyLoss(...)) in the same file.
    ctors = [c for c, _ in positions.items() if isinstance(c, cst.Call)
             and _callee_name(c) in {"CrossEntropyLoss", "NLLLoss"}]
    if len(ctors) != 1:
        return None
    new_ctor = _set_keywords(ctors[0], {"ignore_index": str(ignore)}, overwrite=True)
    module = _replace_node(module, call, new_call)
    if new_ctor is not None:
        # deep_replace above rebuilt the tree; find the constructor again by its code.
        module = _replace_by_code(module, _code_of(ctors[0]), new_ctor)
    return Rewrite(module.code, Applicability.UNSAFE)


def _replace_by_code(module: Any, code: str, new: Any) -> Any:
    import libcst as cst

    class Swap(cst.CSTTransformer):
        def leave_Call(self, original: cst.Call, updated: cst.Call) -> Any:
            return new if _code_of(original) == code else updated

    return module.visit(Swap())


# ---------------------------------------------------------------------------- scalars
@transformer("PFT206")
def deferred_item(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`total += loss.item()` → `total += loss.detach()`; `xs.append(t.item())` →
    `xs.append(t.detach())`: accumulate on the device, read once after the loop (unsafe: the
    accumulator becomes a tensor; call `float()` on it where it is printed)."""
    import libcst as cst

    module = _parse(source)
    if module is None:
        return None
    _, positions = _with_positions(module)
    stmt = _statement_on_line(module, positions, line)
    if stmt is None or len(stmt.body) != 1:
        return None
    small = stmt.body[0]
    if isinstance(small, cst.AugAssign):
        value = small.value
    elif isinstance(small, cst.Expr) and isinstance(small.value, cst.Call) \
            and _callee_name(small.value) == "append" and len(small.value.args) == 1:
        value = small.value.args[0].value
    else:
        return None
    if not (isinstance(value, cst.Call) and _callee_name(value) == "item" and not value.args
            and isinstance(value.func, cst.Attribute)):
        return None
    new_value = value.with_changes(func=value.func.with_changes(attr=cst.Name("detach")))
    return Rewrite(_replace_node(module, value, new_value).code, Applicability.UNSAFE)


@transformer("PFT211")
def drop_synchronize(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """Delete a bare `torch.cuda.synchronize()` statement (unsafe: host timing around it, or
    reading results written by another stream, may rely on it)."""
    import libcst as cst

    module = _parse(source)
    if module is None:
        return None
    _, positions = _with_positions(module)
    stmt = _statement_on_line(module, positions, line)
    if stmt is None or len(stmt.body) != 1 or not isinstance(stmt.body[0], cst.Expr):
        return None
    call = stmt.body[0].value
    if not isinstance(call, cst.Call) or _callee_name(call) != "synchronize":
        return None
    block = _parent_block(module, stmt)
    if block is None:
        return None
    body = [s for s in block.body if s is not stmt]
    if not body:
        body = [cst.SimpleStatementLine(body=[cst.Pass()])]
    return Rewrite(_replace_node(module, block, block.with_changes(body=body)).code,
                   Applicability.UNSAFE)


# ---------------------------------------------------------------------------- counts
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

    if not isinstance(call, cst.Call) or _callee_name(call) not in {"zeros", "new_zeros"}:
        return None
    positional = [a for a in call.args if a.keyword is None and not a.star]
    if len(positional) != 1:
        return None
    size = positional[0].value
    if isinstance(size, (cst.Tuple, cst.List)):
        if len(size.elements) != 1:
            return None
        size = size.elements[0].value
    return _code_of(size).strip()


def _fills_histogram(stmt: Any, labels: str, counts: str) -> str | None:
    """The histogram's name when `stmt` is `histogram[labels] = counts`."""
    import libcst as cst

    assign = _single_assign(stmt)
    if assign is None or not isinstance(assign.value, cst.Name) or assign.value.value != counts:
        return None
    target = assign.targets[0].target
    if not isinstance(target, cst.Subscript) or not isinstance(target.value, cst.Name):
        return None
    index = _single_index(target)
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
            or not isinstance(call, cst.Call) or _callee_name(call) != "unique":
        return None
    counts_flag = next((a.value for a in call.args if a.keyword is not None
                        and a.keyword.value == "return_counts"), None)
    if counts_flag is None or _code_of(counts_flag).strip() != "True":
        return None
    allowed = {"return_counts", "sorted"}
    if any(a.keyword is not None and a.keyword.value not in allowed for a in call.args):
        return None  # dim= or return_inverse= change what comes back
    positional = [a for a in call.args if a.keyword is None]
    if isinstance(call.func, cst.Attribute) and _code_of(call.func.value).strip() == "torch":
        if len(positional) != 1:
            return None
        tensor = positional[0].value
    elif isinstance(call.func, cst.Attribute) and not positional:
        tensor = call.func.value
    else:
        return None
    if not _is_plain_reference(tensor):
        return None
    labels, counts = (_code_of(e.value).strip() for e in target.elements)
    return labels, counts, _code_of(tensor).strip()


@transformer("PFT203")
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

    module = _parse(source)
    if module is None:
        return None
    _, positions = _with_positions(module)
    stmt = _statement_on_line(module, positions, line)
    first = _single_assign(stmt)
    found = _unique_call(first) if first is not None else None
    block = _parent_block(module, stmt) if found is not None else None
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
    between = "".join(_code_of(body[k]) for k in range(defined_at + 1, fill_at) if k != index)
    if _uses_name(between, histogram):
        return None
    # labels and counts must mean nothing else anywhere after the unique call.
    rest = "".join(_code_of(s) for k, s in enumerate(body[index + 1:], start=index + 1)
                   if k != fill_at)
    if _uses_name(rest, labels, counts):
        return None
    taken = _code_of(block)
    base = tensor.replace(".", "_")
    sorted_name = next((name for name in (f"{base}_sorted", f"{base}_sorted_values",
                                          "sorted_values_", "sorted_values__")
                        if not _uses_name(taken, name)), None)
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
    return Rewrite(_replace_node(module, block, block.with_changes(body=body)).code,
                   Applicability.UNSAFE,
                   note="Count with sort + searchsorted over the histogram's fixed range "
                   "instead of torch.unique")


# ---------------------------------------------------------------------------- entry points
def unified_diff(original: str, new: str, display: str) -> str:
    lines = difflib.unified_diff(original.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"a/{display}", tofile=f"b/{display}", n=2)
    return "".join(lines)


def _display_path(path: Path, recorded: str | None) -> str:
    try:
        return os.path.relpath(path, Path.cwd()) if not str(os.path.relpath(path, Path.cwd())).startswith("..") \
            else str(recorded or path)
    except ValueError:
        return str(recorded or path)


def rewrite_file(code: str, path: Path | None, line: int | None, params: Mapping[str, Any] | None = None,
                 recorded: str | None = None) -> tuple[str, Applicability, str] | None:
    """(unified diff, applicability, note) for rule `code` at `path:line`, or None when no
    transformer applies."""
    if path is None or line is None or code not in TRANSFORMERS:
        return None
    # `path` comes from the source reader (inside the source roots); read it the same guarded
    # way (regular .py file under the size limit) so libcst never sees a huge or special file.
    source = read_python_file(path)
    if source is None or "\ufffd" in source:
        return None  # unreadable, or not UTF-8: no diff against a file we cannot reproduce
    for fn in TRANSFORMERS[code]:
        try:
            result = fn(source, line, params or {})
        except Exception:
            result = None
        if result is not None and result.code != source:
            return (unified_diff(source, result.code, _display_path(path, recorded)),
                    result.applicability, result.note)
    return None


def rewrite_source(code: str, source: str, line: int,
                   params: Mapping[str, Any] | None = None) -> Rewrite | None:
    """The transformed module text for rule `code` (for tests and `--fix` style callers)."""
    for fn in TRANSFORMERS.get(code, []):
        result = fn(source, line, params or {})
        if result is not None and result.code != source:
            return result
    return None


def suggestion(code: str, title: str, location: Location, path: Path | None, *,
               after: str | None = None, before: str | None = None,
               params: Mapping[str, Any] | None = None,
               knobs: dict[str, list[Any]] | None = None) -> Suggestion:
    """A diff when a transformer applies at the location, else a before/after snippet."""
    made = rewrite_file(code, path, location.line, params, location.file)
    if made is not None:
        diff, applicability, note = made
        return Suggestion(title=note or title, applicability=applicability, diff=diff,
                          before=before or (location.source.strip() if location.source else None),
                          after=after, knobs=dict(knobs or {}))
    return Suggestion(title=title, applicability=Applicability.DISPLAY_ONLY,
                      before=before or (location.source.strip() if location.source else None),
                      after=after, knobs=dict(knobs or {}))
