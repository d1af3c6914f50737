"""The rewrite of rule PFT304: wrap the model the optimizer trains in torch.compile.

Loaded by file path with the rule (perftune.engine.rewrite.transformers); shared libcst helpers
live in perftune.engine.rewrite. Nothing here executes user code.

The model is found the way the tuner's compile knob finds it: the `NAME` of the
`torch.optim.X(NAME.parameters(), ...)` call (the one in the scope of the finding's line when
there are several). `NAME = torch.compile(NAME)` goes right after the last statement that
assigns NAME before that call in the same block, else right before the call. Unsafe: the first
steps compile (seconds), graph breaks or recompilations can make it slower, and the wrapper's
`state_dict()` keys gain an `_orig_mod.` prefix; `perftune fix` measures it and checks the
losses before it keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perftune.engine.rewrite import Rewrite, callee_name, parse, with_positions
from perftune.engine.types import Applicability

NOTE = ("Wrap the model the optimizer trains in torch.compile (its first steps compile; "
        "state_dict keys gain the _orig_mod. prefix)")
# torch.optim's optimizers; a call under any `optim.` path with NAME.parameters() counts too.
OPTIMIZERS = frozenset({"SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "ASGD", "LBFGS",
                        "NAdam", "RAdam", "RMSprop", "Rprop", "SparseAdam", "Adafactor", "Muon"})
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _dotted(node: Any) -> str:
    import libcst as cst

    if isinstance(node, cst.Name):
        return str(node.value)
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    return ""


def _trained_name(call: Any) -> str | None:
    """NAME when `call` is an optimizer construction over `NAME.parameters()`."""
    import libcst as cst

    path = _dotted(call.func)
    if callee_name(call) not in OPTIMIZERS and ".optim." not in f".{path}":
        return None
    first = next((a for a in call.args if a.keyword is None or a.keyword.value == "params"), None)
    if first is None or first.star:
        return None
    value = first.value
    if (isinstance(value, cst.Call) and not value.args and isinstance(value.func, cst.Attribute)
            and value.func.attr.value == "parameters" and isinstance(value.func.value, cst.Name)):
        return str(value.func.value.value)
    return None


def _imports_torch(module: Any) -> bool:
    import libcst as cst

    for stmt in module.body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if isinstance(small, cst.Import) and any(
                    _dotted(alias.name) == "torch" and alias.asname is None
                    for alias in small.names):
                return True
    return False


def _compiles_already(module: Any, name: str) -> bool:
    """`torch.compile(NAME...)` or `NAME.compile(...)` anywhere in the file."""
    import libcst as cst

    found: list[bool] = []

    class Finder(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            path = _dotted(node.func)
            first = node.args[0].value if node.args else None
            wraps = isinstance(first, cst.Name) and first.value == name
            if path == f"{name}.compile" or (callee_name(node) == "compile" and wraps):
                found.append(True)

    module.visit(Finder())
    return bool(found)


def _assigns(stmt: Any, name: str) -> bool:
    import libcst as cst

    if not isinstance(stmt, cst.SimpleStatementLine):
        return False
    for small in stmt.body:
        targets = []
        if isinstance(small, cst.Assign):
            targets = [t.target for t in small.targets]
        elif isinstance(small, cst.AnnAssign | cst.AugAssign):
            targets = [small.target]
        if any(isinstance(t, cst.Name) and t.value == name for t in targets):
            return True
    return False


def wrap_model_in_compile(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """Insert `NAME = torch.compile(NAME)` for the model its optimizer trains (see module doc).

    params: `mode` (a torch.compile mode; default none given), `model` (the model's name, when
    the caller knows it)."""
    import libcst as cst

    module = parse(source)
    if module is None or not _imports_torch(module):
        return None
    _, positions = with_positions(module)
    # (statement holding the optimizer call, the block holding that statement, the model name)
    sites: list[tuple[Any, Any, str, int]] = []
    wanted = params.get("model")

    class Finder(cst.CSTVisitor):
        def __init__(self) -> None:
            self.blocks: list[Any] = [module]
            self.functions: list[Any] = [None]

        def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
            self.blocks.append(node)

        def leave_IndentedBlock(self, node: cst.IndentedBlock) -> None:
            self.blocks.pop()

        def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
            self.functions.append(node)

        def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
            self.functions.pop()

        def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
            block = self.blocks[-1]
            if not any(s is node for s in block.body):
                return
            for call in _calls(node):
                name = _trained_name(call)
                if name is not None and (wanted is None or name == wanted):
                    sites.append((node, block, name, id(self.functions[-1])))
                    return

    module.visit(Finder())
    if not sites:
        return None
    stmt, block, name, _ = _pick(sites, positions, line, module)
    if _compiles_already(module, name):
        return None
    mode = str(params.get("mode") or "default")
    if mode not in MODES:
        return None
    call = f"torch.compile({name})" if mode == "default" else f"torch.compile({name}, mode=\"{mode}\")"
    new = cst.parse_statement(f"{name} = {call}\n")
    body = list(block.body)
    at = next(k for k, s in enumerate(body) if s is stmt)
    assigned = [k for k in range(at) if _assigns(body[k], name)]
    if assigned:
        body.insert(assigned[-1] + 1, new)
    else:
        # Before the optimizer line; its comment and blank lines above stay above the new line.
        body[at] = stmt.with_changes(leading_lines=())
        body.insert(at, new.with_changes(leading_lines=stmt.leading_lines))
    new_module = module.deep_replace(block, block.with_changes(body=body))
    return Rewrite(new_module.code, Applicability.UNSAFE, NOTE)


def _calls(node: Any) -> list[Any]:
    import libcst as cst

    calls: list[Any] = []

    class Finder(cst.CSTVisitor):
        def visit_Call(self, call: cst.Call) -> None:
            calls.append(call)

    node.visit(Finder())
    return calls


def _pick(sites: list[tuple[Any, Any, str, int]], positions: Any, line: int,
          module: Any) -> tuple[Any, Any, str, int]:
    """The optimizer in the function holding `line` (the nearest above it), else the first."""
    import libcst as cst

    holder: list[Any] = [None]

    class Scope(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
            pos = positions.get(node)
            if pos is not None and pos.start.line <= line <= pos.end.line:
                holder[0] = node  # the innermost one wins: visited last

    module.visit(Scope())
    same = [s for s in sites if s[3] == id(holder[0])]
    if same:
        above = [s for s in same if positions[s[0]].start.line <= line]
        return above[-1] if above else same[0]
    return sites[0]


TRANSFORMERS = (wrap_model_in_compile,)
