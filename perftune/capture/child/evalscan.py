"""Evaluation loops in the script's source, and whether the profiled window covered one.

perftune profiles a few training steps and stops the script; an evaluation loop that runs every
epoch (per-batch `.item()`/`.cpu()` reads, its own data loading) usually runs after the window,
or not at all. When the script has one and the window saw no evaluation (no `model.eval()` /
`train(False)` call and no step with gradients off while it was open), the run says so instead
of letting a clean report read as "the evaluation is fine too".

An evaluation loop, read from the script's syntax (no import, no execution): a `for`/`while`
loop under `with torch.no_grad()` / `torch.inference_mode()` (or in a function decorated with
either), or after a `.eval()` call in the same function, whose body calls no `.backward()` and
no `.step()` (those are training), and that does not walk the model's own tensors
(`model.parameters()`, `state_dict()`: an EMA update, a clamp).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

_NO_GRAD = ("no_grad", "inference_mode")


@dataclass(frozen=True)
class EvalLoop:
    line: int
    why: str  # "torch.no_grad()", "torch.inference_mode()" or "model.eval()"


def _callee(node: ast.AST) -> str | None:
    """`no_grad` of `torch.no_grad()` / `no_grad()` / `torch.no_grad` (a decorator)."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _trains(loop: ast.AST) -> bool:
    for node in ast.walk(loop):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("backward", "step"):
            return True
    return False


_MODEL_WALKS = frozenset({"parameters", "named_parameters", "buffers", "named_buffers",
                          "state_dict", "modules", "named_modules", "children", "param_groups"})


def _over_the_model(iterable: ast.AST) -> bool:
    """`model.parameters()`, `zip(a.parameters(), b.parameters())`, `sd.items()` of a
    state_dict: a loop over the model's own tensors."""
    for node in ast.walk(iterable):
        if isinstance(node, ast.Attribute) and node.attr in _MODEL_WALKS:
            return True
    return False


def _eval_call_line(body: list[ast.stmt]) -> int | None:
    """The first line of a `<x>.eval()` call among a function's own statements."""
    lines = []
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr == "eval" and not node.args and not node.keywords:
                lines.append(node.lineno)
    return min(lines) if lines else None


class _Finder(ast.NodeVisitor):
    def __init__(self) -> None:
        self.loops: list[EvalLoop] = []
        self._why: list[str] = []  # the innermost no-grad context we are in
        self._eval_after: list[int | None] = []  # per function: line of its first .eval()

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        decorated = next((f"torch.{_callee(d)}()" for d in node.decorator_list
                          if _callee(d) in _NO_GRAD), None)
        self._eval_after.append(_eval_call_line(node.body))
        if decorated:
            self._why.append(decorated)
        self.generic_visit(node)
        if decorated:
            self._why.pop()
        self._eval_after.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_With(self, node: ast.With) -> None:
        why = next((f"torch.{_callee(item.context_expr)}()" for item in node.items
                    if _callee(item.context_expr) in _NO_GRAD), None)
        if why:
            self._why.append(why)
        self.generic_visit(node)
        if why:
            self._why.pop()

    def _loop(self, node: ast.For | ast.While) -> None:
        if isinstance(node, ast.For) and _over_the_model(node.iter):
            return  # a walk over parameters (an EMA update, clamping): no evaluation
        why = self._why[-1] if self._why else None
        after = self._eval_after[-1] if self._eval_after else None
        if why is None and after is not None and after < node.lineno:
            why = "model.eval()"
        if why is not None and not _trains(node):
            self.loops.append(EvalLoop(node.lineno, why))
            return  # its inner loops are part of it
        self.generic_visit(node)

    visit_For = _loop
    visit_While = _loop


def evaluation_loops(source: str) -> list[EvalLoop]:
    """The evaluation loops of a script's source, outermost only, in line order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    finder = _Finder()
    finder.visit(tree)
    return sorted(finder.loops, key=lambda loop: loop.line)


def uncovered_note(script: Path | None, window_done: bool, eval_seen: bool) -> str | None:
    """The note for a run whose window did not cover the script's evaluation loop."""
    if script is None or not window_done or eval_seen:
        return None
    try:
        loops = evaluation_loops(script.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    if not loops:
        return None
    first = loops[0]
    more = f" (and {len(loops) - 1} more)" if len(loops) > 1 else ""
    return (f"the script has an evaluation loop at {script.name}:{first.line} (under "
            f"{first.why}){more} that the profiled window did not cover: its per-batch costs "
            "(.item()/.cpu() reads, its data loading) are not in these findings; to see them, "
            "profile the evaluation on its own (its model calls are the steps)")
