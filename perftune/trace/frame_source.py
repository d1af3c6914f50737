"""Lines inside a profiled Python function that match an expression shape (pure AST code).

A `with_stack` frame names a function by its first line (`train.py(12): step` is the `def`),
so a rule that knows *what kind* of expression issued its ops (a chain of arithmetic, a matrix
product) finds the line by looking for that shape in the function's body. The caller supplies
the parsed module (e.g. from the analysis context's source reader, `ctx.source.tree(file)`); this
module never reads files.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from typing import Protocol

from perftune.trace.frames import Frame

_ARITH = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.FloorDiv, ast.Mod)
ELEMENTWISE_CALLS = frozenset([
    "exp", "exp2", "expm1", "log", "log1p", "log2", "tanh", "sigmoid", "relu", "relu_",
    "gelu", "silu", "mish", "sqrt", "rsqrt", "reciprocal", "sin", "cos", "erf", "pow",
    "mul", "add", "sub", "div", "neg", "abs", "clamp", "clamp_", "where", "masked_fill",
    "softmax", "log_softmax", "layer_norm", "mean", "var", "std", "sum", "square",
    "addcmul", "addcdiv", "lerp", "maximum", "minimum", "softplus", "dropout", "sign",
])
MATMUL_CALLS = frozenset({"matmul", "bmm", "mm", "einsum", "baddbmm"})
SOFTMAX_CALLS = frozenset({"softmax", "log_softmax"})


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def is_elementwise(node: ast.AST) -> bool:
    """Tensor arithmetic: `a * b + c`, `-x`, `torch.exp(x)`, `x.pow(2)`."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, _ARITH):
        return True
    if isinstance(node, ast.AugAssign) and isinstance(node.op, _ARITH):
        return True
    return isinstance(node, ast.Call) and _callee(node) in ELEMENTWISE_CALLS


def is_matmul(node: ast.AST) -> bool:
    """`q @ k.transpose(-2, -1)`, `torch.matmul(a, b)`, `torch.bmm(a, b)`, `einsum(...)`."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
        return True
    return isinstance(node, ast.Call) and _callee(node) in MATMUL_CALLS


def is_softmax(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and _callee(node) in SOFTMAX_CALLS


def function_body(tree: ast.Module, frame: Frame) -> list[ast.stmt] | None:
    """The statements of the function a frame ran (matched by name and first line)."""
    best: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name != frame.function:
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        end = node.end_lineno or node.lineno
        if first <= frame.line <= end and (best is None or node.lineno > best.lineno):
            best = node
    return list(best.body) if best is not None else None


def _walk_same_scope(nodes: list[ast.stmt]) -> Iterator[ast.AST]:
    """Nodes of these statements in source order, not entering nested functions or classes."""
    nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
    for stmt in nodes:
        if isinstance(stmt, nested):
            continue
        stack: list[ast.AST] = [stmt]
        while stack:
            node = stack.pop()
            yield node
            children = [c for c in ast.iter_child_nodes(node) if not isinstance(c, nested)]
            stack.extend(reversed(children))


def line_counts(tree: ast.Module, frame: Frame, predicate: Callable[[ast.AST], bool]) -> dict[int, int]:
    """Lines of the frame's function → how many expressions on them `predicate` accepts."""
    body = function_body(tree, frame)
    counts: dict[int, int] = {}
    if body is None:
        return counts
    for node in _walk_same_scope(body):
        line = getattr(node, "lineno", 0)
        if line and predicate(node):
            counts[line] = counts.get(line, 0) + 1
    return counts


def lines_matching(tree: ast.Module, frame: Frame, predicate: Callable[[ast.AST], bool]) -> list[int]:
    """Sorted distinct lines of the frame's function holding an expression `predicate` accepts."""
    return sorted(line_counts(tree, frame, predicate))


class SourceLookup(Protocol):
    """What a source reader offers (perftune.engine.attribution.SourceReader fits)."""

    def tree(self, file: str) -> ast.Module | None: ...

    def line(self, file: str | None, lineno: int | None) -> str | None: ...


def frame_site(lookup: SourceLookup, frame: Frame,
               predicate: Callable[[ast.AST], bool] | None = None,
               pick: str = "first") -> tuple[str, int, str, str | None]:
    """(file, line, function, source text) for a frame, the line refined by `predicate`.

    With a predicate, `pick` chooses among the matching lines of the function: "first", or
    "densest" (the line with the most matching expressions, the first of equals). Without a
    predicate, or when the source is unavailable, the frame's own line.
    """
    line = frame.line
    if predicate is not None:
        tree = lookup.tree(frame.file)
        if tree is not None:
            counts = line_counts(tree, frame, predicate)
            if counts:
                line = (min(counts) if pick == "first"
                        else max(sorted(counts), key=lambda k: counts[k]))
    source = lookup.line(frame.file, line)
    return frame.file, line, frame.function, source.rstrip() if source is not None else None


def call_line(lookup: SourceLookup, frame: Frame | None, callee: str) -> int | None:
    """The line in the frame's function that calls `callee` (`extra_work(...)`,
    `time.sleep(...)`), the first of several; None when the source is unavailable or has no
    such call."""
    if frame is None:
        return None
    tree = lookup.tree(frame.file)
    if tree is None:
        return None
    counts = line_counts(tree, frame, lambda node: isinstance(node, ast.Call) and _callee(node) == callee)
    return min(counts) if counts else None
