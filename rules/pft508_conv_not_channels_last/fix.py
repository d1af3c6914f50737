"""The rewrite of rule PFT508: libcst transformers tried in order at the finding's line.

Loaded by file path with the rule (perftune.engine.rewrite.transformers); shared libcst helpers
live in perftune.engine.rewrite. Nothing here executes user code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perftune.engine.rewrite import Rewrite, expr, parse, with_positions
from perftune.engine.types import Applicability

MEMORY_FORMAT = "memory_format=torch.channels_last"


def channels_last(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`model(x)` on the finding's line, with `model = Net(...)` assigned once in the same file:
    the model converted where it is built (`Net(...).to(memory_format=torch.channels_last)`)
    and its input where it is called (`x.contiguous(memory_format=torch.channels_last)`).
    Unsafe: code that views the input or the weights assuming NCHW strides needs a look."""
    import libcst as cst

    module = parse(source)
    if module is None:
        return None
    _, positions = with_positions(module)
    calls = []
    for node, pos in positions.items():
        if (isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and pos.start.line <= line
                <= pos.end.line and len(node.args) >= 1 and node.args[0].keyword is None
                and node.args[0].star == ""):
            calls.append(node)
    names = {c.func.value for c in calls}
    builders = {}
    for node in positions:
        if (isinstance(node, cst.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0].target, cst.Name)
                and node.targets[0].target.value in names and isinstance(node.value, cst.Call)):
            builders.setdefault(node.targets[0].target.value, []).append(node)
    chosen = [c for c in calls if len(builders.get(c.func.value, [])) == 1]
    if not chosen:
        return None
    call = chosen[0]
    build = builders[call.func.value][0]
    if "channels_last" in cst.Module(body=[]).code_for_node(build.value):
        return None
    arg = call.args[0]
    new_arg = arg.with_changes(value=cst.Call(
        func=cst.Attribute(value=arg.value, attr=cst.Name("contiguous")),
        args=[cst.Arg(keyword=cst.Name("memory_format"), value=expr("torch.channels_last"),
                      equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                            whitespace_after=cst.SimpleWhitespace("")))]))
    new_call = call.with_changes(args=[new_arg, *call.args[1:]])
    new_build = build.with_changes(value=cst.Call(
        func=cst.Attribute(value=build.value, attr=cst.Name("to")),
        args=[cst.Arg(keyword=cst.Name("memory_format"), value=expr("torch.channels_last"),
                      equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                            whitespace_after=cst.SimpleWhitespace("")))]))
    swap = {id(call): new_call, id(build): new_build}

    class Swap(cst.CSTTransformer):
        def on_leave(self, original: Any, updated: Any) -> Any:
            return swap.get(id(original), updated)

    module = module.visit(Swap())
    return Rewrite(module.code, Applicability.UNSAFE,
                   note="Run the convolutions in channels_last: the model where it is built, the "
                        "input where it is called")


TRANSFORMERS = (channels_last,)
