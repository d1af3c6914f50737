"""Source attribution: from a trace event to the user's file, line, function and source text.

torch.profiler's python frames (`with_stack=True`) name a function by the line it was entered
at: `train.py(12): train_step` is the `def` line, not the line of the op. The line is refined
here by reading the function's source (parsed with `ast`, never executed) and matching the
call sites that can produce the op (`.item()`, `t[mask]`, `torch.unique(...)`, ...): the k-th
occurrence of an op inside one call of a function maps to the k-th matching site. When the
file is missing or nothing matches, the frame's own line is kept.

Also here: grouping occurrences by (code, location) into one finding with a count, per-step
figures, and safe reading of source lines.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from perftune._dataclasses import lazy_dataclass
from perftune.engine.types import Location
from perftune.rundir import RunDir
from perftune.sourcefiles import SourceRoots, default_roots, read_python_file
from perftune.trace.frames import Frame, parse_python_function
from perftune.trace.model import Trace

if TYPE_CHECKING:
    from perftune.trace.sync_metrics import HostIndex

# ---------------------------------------------------------------------------- call sites


@lazy_dataclass(frozen=True)
class Site:
    """A place in a function body that can issue ops: a call, an index, a truth test."""

    line: int
    kind: str                 # "call" | "index" | "index-store" | "test"
    name: str = ""            # callee name for calls: "item", "nonzero", "DataLoader", ...
    nargs: int = 0
    keywords: frozenset[str] = frozenset()
    masked_args: bool = False  # a call with an argument like `x[mask]`
    col: int = 0
    maskish: bool = False      # an index that is visibly boolean (`x[t > 0]`, `x[valid]`)
    first_arg: str = ""        # source of a call's first positional argument
    kw_values: tuple[tuple[str, str], ...] = ()  # (keyword, source of its value)
    loop: tuple[int, int] | None = None  # lines of the innermost for/while loop around it
    in_comprehension: bool = False  # inside a list/set/dict comprehension or generator expression

    def keyword(self, name: str) -> str | None:
        return next((v for k, v in self.kw_values if k == name), None)


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _receiver_callees(node: ast.Call) -> list[str]:
    """Callees along a chain of method calls: `Net(3).to(device).train()` → train, to, Net."""
    out: list[str] = []
    cur: ast.expr = node
    while isinstance(cur, ast.Call):
        out.append(_callee(cur))
        func = cur.func
        cur = func.value if isinstance(func, ast.Attribute) else func
    return out


def _assigned_pairs(node: ast.AST, split: bool = True) -> list[tuple[ast.expr, ast.expr]]:
    """(target, value) of an assignment; with `split`, tuples paired element by element
    (`a, b = x, y`)."""
    if isinstance(node, ast.Assign):
        pairs = [(t, node.value) for t in node.targets]
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        pairs = [(node.target, node.value)]
    else:
        return []
    if not split:
        return pairs
    return [q for t, v in pairs for q in (
        zip(t.elts, v.elts, strict=True) if isinstance(t, ast.Tuple) and isinstance(v, ast.Tuple)
        and len(t.elts) == len(v.elts) else [(t, v)])]


def _is_mask_index(node: ast.Subscript) -> bool:
    """`x[mask]`, `x[t > 0]`, `x[idx]`: an index that is neither a constant nor a slice."""
    index = node.slice
    if isinstance(index, (ast.Constant, ast.Slice)):
        return False
    if isinstance(index, ast.Tuple):
        return any(not isinstance(e, (ast.Constant, ast.Slice)) and not _is_ellipsis(e)
                   for e in index.elts) and not all(isinstance(e, ast.Name) for e in index.elts)
    # x[-1] is a constant too
    return not (isinstance(index, ast.UnaryOp) and isinstance(index.operand, ast.Constant))


def _is_ellipsis(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is Ellipsis


_BOOL_CALLS = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "isnan", "isinf", "isfinite",
                         "isin", "logical_and", "logical_or", "logical_not", "logical_xor",
                         "bool", "isclose", "isneginf", "isposinf", "signbit"})


def _bool_expr(node: ast.expr, mask_names: set[str]) -> bool:
    """An expression that evidently yields a boolean tensor."""
    if isinstance(node, ast.Compare):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Invert, ast.Not)):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr, ast.BitXor)):
        return _bool_expr(node.left, mask_names) or _bool_expr(node.right, mask_names)
    if isinstance(node, ast.Call):
        return _callee(node) in _BOOL_CALLS
    if isinstance(node, ast.Name):
        return node.id in mask_names or "mask" in node.id.lower() or node.id.lower() in {
            "valid", "keep", "sel", "selected", "pos", "neg"}
    return False


def _mask_names(nodes: Sequence[ast.AST]) -> set[str]:
    names: set[str] = set()
    for _ in range(2):  # `m2 = m1 & other` after `m1 = t > 0`
        for root in nodes:
            for node in ast.walk(root):
                if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                        and isinstance(node.targets[0], ast.Name) and _bool_expr(node.value, names):
                    names.add(node.targets[0].id)
    return names


class _SiteCollector(ast.NodeVisitor):
    def __init__(self, include_functions: bool, mask_names: set[str] | None = None) -> None:
        self.sites: list[Site] = []
        self.include_functions = include_functions
        self.mask_names = mask_names or set()
        self._store_targets: set[int] = set()
        self.loops: list[tuple[int, int]] = []
        self._comprehensions = 0

    def _loop(self, node: ast.For | ast.AsyncFor | ast.While) -> None:
        self.loops.append((node.lineno, node.end_lineno or node.lineno))

    def visit_For(self, node: ast.For) -> None:
        self._loop(node)
        self.sites.append(Site(line=node.lineno, kind="for", name=ast.unparse(node.iter),
                               col=node.col_offset))
        self.generic_visit(node)

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> None:
        self._comprehensions += 1
        try:
            self.generic_visit(node)
        finally:
            self._comprehensions -= 1

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self._loop(node)
        self.generic_visit(node)

    def _maskish(self, sub: ast.Subscript) -> bool:
        return _bool_expr(sub.slice, self.mask_names)

    def generic_visit(self, node: ast.AST) -> None:
        super().generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if self.include_functions:
            self.generic_visit(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        if self.include_functions:
            self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if self.include_functions:
            self.generic_visit(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        return  # a lambda runs as its own frame

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Subscript) and _is_mask_index(target):
                self.sites.append(Site(line=target.lineno, kind="index-store", col=target.col_offset,
                                       maskish=self._maskish(target)))
                self._store_targets.add(id(target))
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Subscript) and _is_mask_index(node.target):
            self.sites.append(Site(line=node.target.lineno, kind="index-store",
                                   col=node.target.col_offset, maskish=self._maskish(node.target)))
            self._store_targets.add(id(node.target))
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if id(node) not in self._store_targets and _is_mask_index(node):
            self.sites.append(Site(line=node.lineno, kind="index", col=node.col_offset,
                                   maskish=self._maskish(node)))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _callee(node)
        # The line that holds `.name(`: for chained calls spread over lines it is the
        # attribute's end, not the start of the expression.
        line = node.func.end_lineno if isinstance(node.func, ast.Attribute) and node.func.end_lineno else node.lineno
        masked = any(isinstance(a, ast.Subscript) and _is_mask_index(a)
                     for a in [*node.args, *(k.value for k in node.keywords)])
        first = node.args[0] if node.args else None
        self.sites.append(Site(line=line, kind="call", name=name, nargs=len(node.args),
                               keywords=frozenset(k.arg for k in node.keywords if k.arg),
                               masked_args=masked, col=node.col_offset,
                               first_arg=ast.unparse(first) if first is not None else "",
                               kw_values=tuple((k.arg, ast.unparse(k.value))
                                               for k in node.keywords if k.arg),
                               in_comprehension=self._comprehensions > 0))
        self.generic_visit(node)

    def _test(self, test: ast.expr) -> None:
        self.sites.append(Site(line=test.lineno, kind="test", col=test.col_offset))

    def visit_If(self, node: ast.If) -> None:
        self._test(node.test)
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self._loop(node)
        self._test(node.test)
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self._test(node.test)
        self.generic_visit(node)

    def visit_Assert(self, node: ast.Assert) -> None:
        self._test(node.test)
        self.generic_visit(node)


def _with_loop(site: Site, loops: list[tuple[int, int]]) -> Site:
    around = [lp for lp in loops if lp[0] <= site.line <= lp[1] and not (site.kind == "for" and lp[0] == site.line)]
    if not around:
        return site
    from dataclasses import replace

    return replace(site, loop=min(around, key=lambda lp: lp[1] - lp[0]))


def _is_entry_line(tree: ast.Module, frame: Frame) -> bool:
    if frame.function == "<module>":
        return False
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == frame.function:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if frame.line in (first, node.lineno):
                return True
    return not any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                   and node.name == frame.function for node in ast.walk(tree))


def _scope_nodes(tree: ast.Module, line: int, function: str) -> list[ast.AST] | None:
    """The statements a frame `file(line): function` executes."""
    if function == "<module>":
        for stmt in tree.body:
            end = getattr(stmt, "end_lineno", stmt.lineno) or stmt.lineno
            if stmt.lineno <= line <= end:
                return [stmt]
        return list(tree.body)
    best: ast.AST | None = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if first <= line <= (node.end_lineno or node.lineno) and (
                    best is None or node.lineno > getattr(best, "lineno", 0)):
                best = node
    if best is not None:
        return list(getattr(best, "body", []))
    if function.startswith("<"):  # <listcomp>, <genexpr>, <lambda>: the statement on that line
        for node in ast.walk(tree):
            if isinstance(node, ast.stmt) and node.lineno <= line <= (node.end_lineno or node.lineno) \
                    and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                best = node
        return [best] if best is not None else None
    return None


# ---------------------------------------------------------------------------- source files
@dataclass
class SourceReader:
    """Reads the user's source files for a trace; every failure means "not available".

    Files are read only through `access` (perftune.sourcefiles): inside the source roots,
    regular `.py` files under the size limit."""

    access: SourceRoots
    _lines: dict[str, list[str] | None] = field(default_factory=dict)
    _trees: dict[str, ast.Module | None] = field(default_factory=dict)
    _paths: dict[str, Path | None] = field(default_factory=dict)
    _sites: dict[tuple[str, int, str], list[Site] | None] = field(default_factory=dict)
    _entry: dict[tuple[str, int, str], bool] = field(default_factory=dict)
    _loops: dict[tuple[str, int, str], list[tuple[int, int]]] = field(default_factory=dict)

    def loops(self, frame: Frame) -> list[tuple[int, int]]:
        """(first, last) lines of the for/while loops in the function a frame ran."""
        self.sites(frame)
        return self._loops.get((frame.file, frame.line, frame.function), [])

    def is_entry_line(self, frame: Frame) -> bool:
        """Whether the frame's line is where its function starts (`def`): frames entered while
        profiling; frames already running when profiling began carry their current line."""
        self.sites(frame)
        return self._entry.get((frame.file, frame.line, frame.function), True)

    def resolve(self, file: str) -> Path | None:
        if file not in self._paths:
            self._paths[file] = self.access.resolve(file)
        return self._paths[file]

    def lines(self, file: str) -> list[str] | None:
        if file not in self._lines:
            path = self.resolve(file)
            text = read_python_file(path) if path is not None else None
            self._lines[file] = text.splitlines() if text is not None else None
        return self._lines[file]

    def line(self, file: str | None, lineno: int | None) -> str | None:
        if file is None or lineno is None:
            return None
        lines = self.lines(file)
        if lines is None or not 1 <= lineno <= len(lines):
            return None
        return lines[lineno - 1]

    def tree(self, file: str) -> ast.Module | None:
        if file not in self._trees:
            lines = self.lines(file)
            tree: ast.Module | None = None
            if lines is not None:
                try:
                    tree = ast.parse("\n".join(lines) + "\n")
                except (SyntaxError, ValueError, RecursionError):
                    tree = None
            self._trees[file] = tree
        return self._trees[file]

    def sites(self, frame: Frame) -> list[Site] | None:
        """Call sites of the function a frame ran, in source order (None: source unavailable)."""
        key = (frame.file, frame.line, frame.function)
        if key not in self._sites:
            tree = self.tree(frame.file)
            result: list[Site] | None = None
            if tree is not None:
                nodes = _scope_nodes(tree, frame.line, frame.function)
                if nodes is not None:
                    collector = _SiteCollector(include_functions=False,
                                               mask_names=_mask_names(nodes))
                    for node in nodes:
                        collector.visit(node)
                    result = sorted((_with_loop(site, collector.loops) for site in collector.sites),
                                    key=lambda s: (s.line, s.col))
                    self._entry[key] = _is_entry_line(tree, frame)
                    self._loops[key] = list(collector.loops)
            self._sites[key] = result
        return self._sites[key]

    def names_bound_to(self, file: str, callees: Iterable[str], *,
                       through_methods: bool = False) -> frozenset[str]:
        """Names a file binds to the result of calling one of `callees` (`self.encoder =
        nn.TransformerEncoder(...)`, `train_loader = DataLoader(...)` → 'encoder',
        'train_loader'). With `through_methods`, also through method calls on the result
        (`model = Net().to(device)` → 'model'). Empty when the source is unavailable."""
        wanted = frozenset(callees)
        tree = self.tree(file)
        if tree is None or not wanted:
            return frozenset()
        out: set[str] = set()
        for node in ast.walk(tree):
            # through methods, tuples pair up: `netG, netD = Generator().to(d), Discriminator().to(d)`
            for target, value in _assigned_pairs(node, split=through_methods):
                if not isinstance(value, ast.Call) or not wanted & set(
                        _receiver_callees(value) if through_methods else (_callee(value),)):
                    continue
                if isinstance(target, ast.Name):
                    out.add(target.id)
                elif isinstance(target, ast.Attribute):
                    out.add(target.attr)
        return frozenset(out)

    def names_carried_from(self, file: str, callees: Iterable[str]) -> frozenset[str]:
        """Names that hold the result of calling one of `callees` after it was handed to a
        class of the same file: `Trainer(GPT(...).to(device))` with `def __init__(self, model)`,
        `self.model = model` and `model = self.model` in a method → 'model' (the generic
        trainers of minimal GPT libraries and Lightning-like loops). Follows the constructor's
        parameters, `self.<attr> = <param>` and `<name> = self.<attr>`, tuple assignments
        included; empty when the source is unavailable or does not say."""
        tree = self.tree(file)
        wanted = frozenset(callees)
        if tree is None or not wanted:
            return frozenset()
        held = set(self.names_bound_to(file, wanted, through_methods=True))

        def holds(expr: ast.expr) -> bool:
            if isinstance(expr, ast.Call):
                return bool(wanted & set(_receiver_callees(expr)))
            return isinstance(expr, ast.Name) and expr.id in held

        classes = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        params: dict[str, set[str]] = {}  # class -> its __init__ parameters handed the result
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _callee(node) not in classes:
                continue
            init = next((f for f in classes[_callee(node)].body
                         if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
            if init is None:
                continue
            names = [a.arg for a in init.args.args[1:]]
            for k, arg in enumerate(node.args):
                if k < len(names) and holds(arg):
                    params.setdefault(_callee(node), set()).add(names[k])
            for kw in node.keywords:
                if kw.arg in names and holds(kw.value):
                    params.setdefault(_callee(node), set()).add(kw.arg)
        out: set[str] = set()
        for cls, carried in params.items():
            attrs: set[str] = set()
            for node in ast.walk(classes[cls]):
                for target, value in _assigned_pairs(node):
                    if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                            and target.value.id == "self" and isinstance(value, ast.Name)
                            and value.id in carried):
                        attrs.add(target.attr)
            for node in ast.walk(classes[cls]):
                for target, value in _assigned_pairs(node):
                    if (isinstance(target, ast.Name) and isinstance(value, ast.Attribute)
                            and isinstance(value.value, ast.Name) and value.value.id == "self"
                            and value.attr in attrs):
                        out.add(target.id)
            out |= attrs
        return frozenset(out)

    def bindings(self, file: str) -> list[tuple[str, ast.Call, int]]:
        """(name, call, line) of every `name = f(...)` / `self.name = f(...)` in a file."""
        tree = self.tree(file)
        out: list[tuple[str, ast.Call, int]] = []
        if tree is None:
            return out
        for node in ast.walk(tree):
            for target, value in _assigned_pairs(node, split=False):
                if not isinstance(value, ast.Call):
                    continue
                name = target.id if isinstance(target, ast.Name) else \
                    target.attr if isinstance(target, ast.Attribute) else None
                if name:
                    out.append((name, value, value.lineno))
        return out

    def all_calls(self, names: Iterable[str]) -> list[tuple[str, Site]]:
        """Calls named `names` anywhere in the files read so far ((file, site) pairs)."""
        wanted = set(names)
        out: list[tuple[str, Site]] = []
        for file in list(self._lines):
            tree = self.tree(file)
            if tree is None:
                continue
            collector = _SiteCollector(include_functions=True)
            collector.visit(tree)
            out.extend((file, s) for s in collector.sites if s.kind == "call" and s.name in wanted)
        return sorted(out, key=lambda fs: (fs[0], fs[1].line))


def lookup_folders(trace: Trace) -> tuple[Path, ...]:
    """Folders relative frame paths are looked up in: the run directory's recorded cwd and
    script folder (meta.json; of the trace's folder, else of the folder above it), then the
    trace's folder. Only where to look: what is found is
    read only when it is inside a source root."""
    folders: list[Path] = []
    for path in trace.paths:
        folder = Path(path).resolve().parent
        meta = RunDir(folder).recorded_meta()
        if meta is None:
            # the script's own profiler writing into a folder of perftune's run directory
            # (`--logdir RUN/script-trace`): the run's recorded folders hold its source
            meta = RunDir(folder.parent).recorded_meta()
        if meta is not None:
            if meta.cwd:
                folders.append(Path(meta.cwd))
            if meta.script:
                folders.append(Path(meta.script).parent)
        folders.append(folder)
    return tuple(dict.fromkeys(folders))


def recorded_roots(run_dir: Path) -> tuple[Path, ...]:
    """The working directory and script folder a capture run recorded in its meta.json: the
    source roots of a run this perftune just captured (never of a run directory from
    elsewhere, whose meta.json could name any folder)."""
    meta = RunDir(run_dir).recorded_meta()
    roots: list[Path] = []
    if meta is not None:
        cwd = meta.cwd
        if cwd:
            roots.append(Path(cwd))
        if meta.script:
            script = Path(meta.script)
            roots.append((script if script.is_absolute() or not cwd else Path(cwd) / script).parent)
    return tuple(dict.fromkeys(roots))


def read_source_line(path: str | Path, line: int, roots: SourceRoots | None = None) -> str | None:
    """One line of a source file inside `roots` (default: the current directory), or None when
    the file may not be read, does not exist or has no such line (never raises)."""
    text = (roots or default_roots()).read(str(path))
    if text is None:
        return None
    lines = text.splitlines()
    return lines[line - 1] if 1 <= line <= len(lines) else None


# ---------------------------------------------------------------------------- occurrences
SiteMatcher = Callable[[Site], bool]


def library_call_matcher(reader: SourceReader, file: str, function: str,
                         module_class: str | None) -> SiteMatcher:
    """Call sites of the user's function that can have called a library function: an op that
    ran inside a library call is the user's *call* line, never an `if` or another statement.

    `function` is the library frame's function ('__getitem__' is indexing, '__next__' a loop
    over an iterator); `module_class` an nn.Module's class: the calls of names the file binds
    to an instance of it (`self.encoder = nn.TransformerEncoder(...)` → `self.encoder(...)`),
    else any call whose name looks like it."""
    if function == "__getitem__":
        return lambda site: site.kind == "index"
    if function == "__setitem__":
        return lambda site: site.kind == "index-store"
    if function in ("__next__", "__iter__"):
        return lambda site: site.kind == "for" or (site.kind == "call" and site.name == "next")
    if module_class is not None:
        bound = reader.names_bound_to(file, {module_class})
        lowered = module_class.lower()
        if bound:
            return lambda site: site.kind == "call" and site.name in bound
        return lambda site: site.kind == "call" and bool(site.name) and (
            site.name.lower() in lowered or lowered in site.name.lower())
    return lambda site: site.kind == "call" and site.name == function


@lazy_dataclass(frozen=True)
class Occurrence:
    """One event attributed to user code, with its cost."""

    row: int
    step: int
    cost_us: float                 # what removing it would save (stall, or CPU cost)
    cpu_us: float = 0.0
    stall_us: float = 0.0
    chain: tuple[str, ...] = ()
    frame_row: int | None = None   # the user frame's event (orders occurrences in one call)
    key: str = ""                  # what to match sites against (kind label, python call)


@lazy_dataclass(frozen=True)
class Group:
    """Occurrences at one location: one finding."""

    location: Location
    occurrences: tuple[Occurrence, ...]
    windows: int                   # step iterations in the trace
    frame: Frame | None = None     # the profiler's frame before line refinement
    resolved_path: Path | None = None
    site: Site | None = None

    @property
    def count(self) -> int:
        return len(self.occurrences)

    @property
    def per_step(self) -> float:
        return self.count / self.windows

    @property
    def cost_ms_per_step(self) -> float:
        return sum(o.cost_us for o in self.occurrences) / 1000.0 / self.windows

    @property
    def stall_ms_per_step(self) -> float:
        return sum(o.stall_us for o in self.occurrences) / 1000.0 / self.windows

    @property
    def cpu_ms_per_step(self) -> float:
        return sum(o.cpu_us for o in self.occurrences) / 1000.0 / self.windows

    @property
    def chain(self) -> tuple[str, ...]:
        chains = Counter(o.chain for o in self.occurrences if o.chain)
        return chains.most_common(1)[0][0] if chains else ()

    @property
    def rows(self) -> tuple[int, ...]:
        return tuple(o.row for o in self.occurrences)


def frame_of_row(trace: Trace, frame_row: int | None) -> Frame | None:
    if frame_row is None:
        return None
    return parse_python_function(trace.name_of(frame_row))


_COMPREHENSIONS = ("<listcomp>", "<genexpr>", "<dictcomp>", "<setcomp>")


def comprehension_files(trace: Trace) -> frozenset[str]:
    """Files whose comprehensions ran as frames of their own in this trace (`<listcomp>`:
    Python before 3.12 gives each comprehension a frame; 3.12 inlines them)."""
    names = trace.distinct_names(trace.cat_is("python_function"))
    out = set()
    for name in names:
        if any(c in name for c in _COMPREHENSIONS):
            frame = parse_python_function(name)
            if frame is not None:
                out.add(frame.file)
    return frozenset(out)


def _assign_sites(reader: SourceReader, frame: Frame, occs: list[Occurrence],
                  matcher: SiteMatcher | None, comprehensions_apart: bool = False) -> list[Site | None]:
    """Map occurrences inside one call of a function to call sites, in order.
    `comprehensions_apart`: the trace gives this file's comprehensions frames of their own,
    so a function's own ops never come from the calls inside its comprehensions."""
    if matcher is None:
        return [None] * len(occs)
    sites = reader.sites(frame)
    if not sites:
        return [None] * len(occs)
    candidates = [s for s in sites if matcher(s)]
    if comprehensions_apart and not frame.function.startswith(_COMPREHENSIONS):
        own = [s for s in candidates if not s.in_comprehension]
        candidates = own or candidates
    if not candidates:
        return [None] * len(occs)
    # A frame that was already running when profiling began sits at its current line, inside
    # the training loop: the ops of a step come from sites in the loop around that line.
    if not reader.is_entry_line(frame):
        loops = [lp for lp in reader.loops(frame) if lp[0] <= frame.line <= lp[1]]
        if loops:
            lo, hi = min(loops, key=lambda lp: lp[1] - lp[0])
            inside = [c for c in candidates if lo <= c.line <= hi]
            if inside:
                candidates = inside
    # Loops over a DataLoader first, for the data-loading rules.
    if all(s.kind == "for" for s in candidates) and any("loader" in s.name.lower() for s in candidates):
        candidates = [s for s in candidates if "loader" in s.name.lower()]
    # Boolean-looking indexes first: `x[i]` with an int is not a mask.
    if all(s.kind.startswith("index") for s in candidates) and any(s.maskish for s in candidates):
        candidates = [s for s in candidates if s.maskish]
    n = len(candidates)
    if len(occs) == n or n == 1:
        return [candidates[min(k, n - 1)] for k in range(len(occs))]
    if len(occs) % n == 0:  # a loop in the function: the pattern repeats
        return [candidates[k % n] for k in range(len(occs))]
    repeated = [k for k, s in enumerate(candidates) if s.in_comprehension]
    if len(repeated) == 1 and len(occs) > n:
        # one site runs once per element of a comprehension (`[torch.norm(g) for g in grads]`),
        # the others once: they take one occurrence each, in source order, it takes the rest
        at = repeated[0]
        extra = len(occs) - n
        return [candidates[at] if at <= k <= at + extra else candidates[k if k < at else k - extra]
                for k in range(len(occs))]
    return [candidates[min(k, n - 1)] for k in range(len(occs))]


def attribute(trace: Trace, reader: SourceReader, occurrences: Sequence[Occurrence],
              matcher: Callable[[Occurrence], SiteMatcher | None] | None = None,
              windows: int = 1) -> list[Group]:
    """Group occurrences by source location (file:line after refinement); one group each.

    `matcher(occurrence)` returns a predicate over call sites that could have issued it, or
    None to keep the frame's line. Source is read through `reader` (the run's context)."""
    # Occurrences inside one call of a function (one frame event), in time order.
    # (A frame spanning several steps — the training loop's own function — repeats per step.)
    by_call: dict[tuple[int | None, str, int], list[Occurrence]] = {}
    for occ in sorted(occurrences, key=lambda o: o.row):
        by_call.setdefault((occ.frame_row, occ.key, occ.step), []).append(occ)
    placed: dict[tuple[str | None, int | None, str | None], list[tuple[Occurrence, Frame | None, Site | None]]] = {}
    apart = comprehension_files(trace) if matcher is not None else frozenset()
    for (frame_row, _, _), occs in by_call.items():
        frame = frame_of_row(trace, frame_row)
        if frame is None:
            # No python stack: the enclosing record_function annotation (`## sparse_data_dist
            # ##`) is the location; without one keep different causes apart by their op chain.
            for occ in occs:
                region = enclosing_annotation(trace, occ.row)
                key = ("@" + region) if region else (" → ".join(occ.chain) or None)
                placed.setdefault((None, None, key), []).append((occ, None, None))
            continue
        sites = _assign_sites(reader, frame, occs, matcher(occs[0]) if matcher else None,
                              frame.file in apart)
        for occ, site in zip(occs, sites, strict=True):
            at = site.line if site is not None else frame.line
            placed.setdefault((frame.file, at, frame.function), []).append((occ, frame, site))
    groups = []
    for (file, line, function), items in placed.items():
        frame = items[0][1]
        site = items[0][2]
        source = reader.line(file, line)
        if file is None:
            function = function[1:] if function and function.startswith("@") else None
        groups.append(Group(
            location=Location(file=file, line=line, function=function,
                              source=source.rstrip() if source is not None else None),
            occurrences=tuple(o for o, _, _ in items), windows=max(1, windows), frame=frame,
            resolved_path=reader.resolve(file) if file else None, site=site))
    groups.sort(key=lambda g: (-g.cost_ms_per_step, g.location.file or "", g.location.line or 0))
    return groups


# Annotations that mark time, not code: never a location.
_MARKER_ANNOTATIONS = ("ProfilerStep#", "enumerate(DataLoader)#", "perftune")


def enclosing_annotation(trace: Trace, row: int) -> str | None:
    """The innermost `record_function` region around a host event (`## sparse_data_dist ##`,
    `Optimizer.step#SGD.step`), or None: where an event happened in a trace without python
    stacks."""
    from perftune.trace import categories as C

    if bool(trace.col("is_device")[row]):
        launch = trace.launched_by(row)
        if launch is None:
            return None
        row = launch
    for a in trace.ancestors(row):
        if trace.cat_of(a) != C.USER_ANNOTATION:
            continue
        name = trace.name_of(a)
        if not name.startswith(_MARKER_ANNOTATIONS) and name.strip():
            return name
    return None


def location_of(trace: Trace, reader: SourceReader, frame_row: int | None) -> Location:
    """The unrefined location of a frame event (the frame's own line), with its source."""
    frame = frame_of_row(trace, frame_row)
    if frame is None:
        return Location()
    source = reader.line(frame.file, frame.line)
    return Location(file=frame.file, line=frame.line, function=frame.function,
                    source=source.rstrip() if source is not None else None)


def user_files(trace: Trace) -> list[str]:
    """Files of the user's own python frames in the trace (as the profiler wrote them)."""
    from perftune.trace.frames import is_user_frame

    names = trace.distinct_names(trace.cat_is("python_function"))
    files: dict[str, None] = {}
    for name in names:
        frame = parse_python_function(name)
        if frame is not None and is_user_frame(frame):
            files[frame.file] = None
    return list(files)


@lazy_dataclass(frozen=True)
class CallSite:
    """A call found by reading the user's files (e.g. the DataLoader construction)."""

    location: Location
    site: Site
    path: Path | None


def find_calls(trace: Trace, reader: SourceReader, names: Iterable[str],
               files: Iterable[str] | None = None) -> list[CallSite]:
    """Calls named `names` in the user's files (default: every user file of the trace)."""
    for file in (user_files(trace) if files is None else files):
        reader.lines(file)
    out = []
    for file, site in reader.all_calls(names):
        source = reader.line(file, site.line)
        out.append(CallSite(
            location=Location(file=file, line=site.line, function=None,
                              source=source.rstrip() if source is not None else None),
            site=site, path=reader.resolve(file)))
    return out


_MODULE_PREFIX = "nn.Module: "


def model_call_location(trace: Trace, reader: SourceReader, host: HostIndex,
                        row: int) -> Location | None:
    """The line where the user's code calls the model that ran op `row`: the call of the
    outermost `nn.Module` around the op (its forward op for a backward node), in the user's
    function that made it (`logits = model(x)` in the training loop, not the `def forward`
    the profiler names). What an expert edits for model-wide advice (autocast around the call,
    channels_last input). The callee is found by reading the source: a name bound to the
    module's class (`model = Net(...).to(device)`); None when the source does not say."""
    from perftune.trace import categories as C
    from perftune.trace.sync_metrics import user_frame_row

    fwd = trace.forward_op_of(row)
    if fwd is not None:
        row = fwd
    outer: int | None = None
    for a in trace.ancestors(row):
        if host.cat[a] == C.PYTHON_FUNCTION and host.names[a].startswith(_MODULE_PREFIX):
            outer = a
    if outer is None:
        return None
    cls = host.names[outer][len(_MODULE_PREFIX):].rsplit("_", 1)[0]
    frame = frame_of_row(trace, user_frame_row(host, outer))
    if frame is None or not cls:
        return None
    sites = reader.sites(frame)
    if not sites:
        return None
    names: set[str] = set()
    for file in list(reader._lines):
        names |= reader.names_bound_to(file, [cls], through_methods=True)
    calls = [s for s in sites if s.kind == "call" and s.name in names]
    if not calls:  # the model handed to a trainer class: `Trainer(Net())`, `model = self.model`
        for file in list(reader._lines):
            names |= reader.names_carried_from(file, [cls])
        calls = [s for s in sites if s.kind == "call" and s.name in names]
    if not reader.is_entry_line(frame):
        loops = [lp for lp in reader.loops(frame) if lp[0] <= frame.line <= lp[1]]
        if loops:
            lo, hi = min(loops, key=lambda lp: lp[1] - lp[0])
            calls = [c for c in calls if lo <= c.line <= hi] or calls
    if not calls:
        return None
    line = calls[0].line
    source = reader.line(frame.file, line)
    return Location(file=frame.file, line=line, function=frame.function,
                    source=source.rstrip() if source is not None else None)
