"""Mechanical rewrites at the attributed line, as unified diffs against the user's real file.

Each rule that has a rewrite owns it: `rules/pftNNN_slug/fix.py` defines `TRANSFORMERS`, the
libcst transformers tried in order (loaded by file path, like rule.py). This module keeps what
they share — parsing, positions, keyword edits, the two copy/DataLoader keyword rewrites used
by two rules each — and the entry points (`rewrite_file`, `rewrite_source`, `suggestion`) that
look the transformers up by rule code. Each transformer looks at the statement on
the finding's line (and, where the pattern spans several, the statements after it in the same
block), returns the transformed module (or None when the pattern is not there — the line
changed, the call has another shape), and says whether the change keeps the program's meaning
(safe) or needs a review (unsafe). Nothing here executes user code; a missing file, a syntax
error or an unknown shape falls back to a before/after snippet.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perftune._dataclasses import lazy_dataclass
from perftune.engine.types import Applicability, Location, Suggestion
from perftune.sourcefiles import read_python_file

if TYPE_CHECKING:  # libcst is imported lazily at run time (TID253)
    import libcst as cst


@lazy_dataclass(frozen=True)
class Rewrite:
    """A transformed module and how safe the change is; `note` names the change when it is
    not what the rule's generic advice says (it becomes the suggestion's title)."""

    code: str
    applicability: Applicability
    note: str = ""


Transformer = Callable[[str, int, Mapping[str, Any]], Rewrite | None]


def transformers(code: str) -> tuple[Transformer, ...]:
    """The rewrites of rule `code`: its folder's fix.py `TRANSFORMERS` (none without one)."""
    from perftune.engine.registry import load_rule_file, rule_folder

    folder = rule_folder(code)
    if folder is None or not (folder / "fix.py").is_file():
        return ()
    found: tuple[Transformer, ...] = tuple(getattr(load_rule_file(folder / "fix.py"), "TRANSFORMERS", ()))
    return found


# ---------------------------------------------------------------------------- helpers
def parse(source: str) -> Any:
    import libcst as cst

    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError:
        return None


def with_positions(module: Any) -> tuple[Any, Any]:
    from libcst.metadata import MetadataWrapper, PositionProvider

    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    return wrapper, wrapper.resolve(PositionProvider)


def callee_name(call: cst.Call) -> str:
    import libcst as cst

    func = call.func
    if isinstance(func, cst.Attribute):
        return func.attr.value
    if isinstance(func, cst.Name):
        return func.value
    return ""


def statement_on_line(module: Any, positions: Any, line: int) -> Any:
    """The innermost simple statement whose first line is `line`'s statement."""
    import libcst as cst

    best = None
    for node, pos in positions.items():
        if isinstance(node, cst.SimpleStatementLine) and pos.start.line <= line <= pos.end.line:
            best = node
    return best


def assignment_on_line(source: str, line: int) -> tuple[Any, Any, Any] | None:
    """(module, statement, assignment) when `line` holds exactly one `x = ...`."""
    import libcst as cst

    module = parse(source)
    if module is None:
        return None
    _, positions = with_positions(module)
    stmt = statement_on_line(module, positions, line)
    if stmt is None or len(stmt.body) != 1 or not isinstance(stmt.body[0], cst.Assign):
        return None
    return module, stmt, stmt.body[0]


def replace_node(module: Any, old: Any, new: Any) -> Any:
    return module.deep_replace(old, new)


def code_of(node: Any) -> str:
    import libcst as cst

    return str(cst.Module(body=[]).code_for_node(node))


def expr(text: str) -> Any:
    import libcst as cst

    return cst.parse_expression(text)


def kwarg(name: str, value: str) -> Any:
    import libcst as cst

    return cst.Arg(keyword=cst.Name(name), value=expr(value),
                   equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                         whitespace_after=cst.SimpleWhitespace("")))


def set_keywords(call: cst.Call, values: Mapping[str, str], overwrite: bool) -> cst.Call | None:
    """Add (or overwrite) keyword arguments; None when nothing would change."""
    import libcst as cst

    args = list(call.args)
    changed = False
    for name, value in values.items():
        pos = next((k for k, a in enumerate(args) if a.keyword is not None and a.keyword.value == name), None)
        if pos is not None:
            current = code_of(args[pos].value).strip()
            if current == value or not overwrite:
                continue
            args[pos] = args[pos].with_changes(value=expr(value))
            changed = True
            continue
        if any(a.star for a in args):
            return None  # **kwargs may already carry it
        if args:
            last = args[-1]
            if last.comma == cst.MaybeSentinel.DEFAULT or not isinstance(last.comma, cst.Comma):
                args[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        args.append(kwarg(name, value))
        changed = True
    return call.with_changes(args=args) if changed else None


def calls_on_line(module: Any, positions: Any, line: int, names: Sequence[str]) -> list[Any]:
    import libcst as cst

    out = []
    for node, pos in positions.items():
        if not isinstance(node, cst.Call) or callee_name(node) not in names:
            continue
        func_pos = positions.get(node.func)
        at = func_pos.end.line if func_pos is not None else pos.start.line
        if at == line or pos.start.line == line:
            out.append(node)
    return out


def keyword_rewrite(source: str, line: int, names: Sequence[str], values: Mapping[str, str],
                     applicability: Applicability, overwrite: bool = True) -> Rewrite | None:
    module = parse(source)
    if module is None:
        return None
    _, positions = with_positions(module)
    calls = calls_on_line(module, positions, line, names)
    if len(calls) != 1:
        return None
    new_call = set_keywords(calls[0], values, overwrite)
    if new_call is None:
        return None
    return Rewrite(replace_node(module, calls[0], new_call).code, applicability)


# ---------------------------------------------------------------------------- shared by two rules
def non_blocking_copy(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`.to(device)` / `.cuda()` → the same call with `non_blocking=True`.

    Safe for host→device copies (the stream orders them before any kernel that reads the
    result); a device→host copy read on the host right after would need a sync: unsafe."""
    safe = params.get("direction", "HtoD") == "HtoD"
    return keyword_rewrite(source, line, ("to", "cuda"), {"non_blocking": "True"},
                            Applicability.SAFE if safe else Applicability.UNSAFE, overwrite=True)


def dataloader_workers(source: str, line: int, params: Mapping[str, Any]) -> Rewrite | None:
    """`DataLoader(...)` → with `num_workers=N, persistent_workers=True`.

    Unsafe: workers run the dataset in subprocesses (the dataset must be picklable, and
    random state per worker differs)."""
    workers = str(params.get("num_workers", 4))
    return keyword_rewrite(source, line, ("DataLoader",),
                            {"num_workers": workers, "persistent_workers": "True"},
                            Applicability.UNSAFE, overwrite=True)


# ---------------------------------------------------------------------------- masks
def is_scalar_literal(node: Any) -> bool:
    import libcst as cst

    if isinstance(node, (cst.Integer, cst.Float)):
        return True
    if isinstance(node, cst.UnaryOperation) and isinstance(node.expression, (cst.Integer, cst.Float)):
        return True
    if isinstance(node, cst.UnaryOperation) and isinstance(node.expression, cst.Name):
        return is_scalar_literal(node.expression)
    # True/False, and module constants by convention (IGNORE_INDEX = -100).
    return isinstance(node, cst.Name) and (node.value in {"True", "False"}
                                           or (node.value.isupper() and len(node.value) > 1))


def single_index(sub: cst.Subscript) -> Any:
    import libcst as cst

    if len(sub.slice) != 1 or not isinstance(sub.slice[0].slice, cst.Index):
        return None
    return sub.slice[0].slice.value


def uses_name(code: str, *names: str) -> bool:
    """Whether `code` mentions any of `names` (True when it cannot be read)."""
    import io
    import tokenize

    try:
        return any(tok.type == tokenize.NAME and tok.string in names
                   for tok in tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return True


def parent_block(module: Any, stmt: Any) -> Any:
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


# ---------------------------------------------------------------------------- entry points
def unified_diff(original: str, new: str, display: str) -> str:
    import difflib  # here: most analyses write no diff

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
    fixes = transformers(code) if path is not None and line is not None else ()
    if path is None or line is None or not fixes:
        return None
    # `path` comes from the source reader (inside the source roots); read it the same guarded
    # way (regular .py file under the size limit) so libcst never sees a huge or special file.
    source = read_python_file(path)
    if source is None or "\ufffd" in source:
        return None  # unreadable, or not UTF-8: no diff against a file we cannot reproduce
    for fn in fixes:
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
    for fn in transformers(code):
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
