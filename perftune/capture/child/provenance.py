"""Device provenance of the training step on a CPU run (provenance.json).

On a CPU trace every `.item()`, `nonzero()` or boolean mask looks the same; on a GPU only the
ones whose tensor lives on the device synchronise the host. This module tells them apart by
running the profiled steps under a `torch.overrides.TorchFunctionMode` that *tags* tensors that
would be on the accelerator:

- model parameters (`nn.Parameter`) and the buffers of every module called in the window;
- results of `.to(device)` / `.cuda()` (whatever `device` is in this run: the script chose to
  move them), and factories given `device=` (`torch.zeros(..., device=device)`), also through
  a library helper the user passed the device to (`generate_square_subsequent_mask(n, device=d)`);
- outputs of any op with a tagged input (the tag propagates through the step).

Host→device copies: a `.to(device)` / `.cuda()` whose input is not tagged is a copy from host
memory on a GPU run. The mode records its line as `to[batch]` (a tensor the DataLoader just
yielded, from a loader without `pin_memory=True`), `to[pinned]` (the same from a loader that
asks for pinned memory: a CPU run cannot pin, a GPU run would) or `to[host]` (a tensor the step
made on the host — a label matrix, a concatenation of the loader's views — pageable memory
whatever the loader pins); a move of a tagged tensor (or a dtype-only `.to`) copies nothing
and is recorded as `to[none]`, so that every move of a call is in the record, in order. On a
CPU run `.to(device)` returns its input itself; a move of an untagged tensor returns a view of
it instead (the device copy a GPU run would make), so that the host tensor stays untagged and a
tensor built once on the host and copied every step is a copy every step.

Not tagged, hence never hazards: index tensors made without `device=` (`torch.randint`),
module-level constants, what the Dataset/collate code builds, the optimizer's step counters,
Python bools (the mode never sees those). For every sync-prone call (`item`, `tolist`, `cpu`,
`numpy`, `bool(t)`, `int(t)`, `nonzero`, one-argument `torch.where`, `unique`, boolean-mask
indexing, ...) the mode records
the innermost frame of the user's code (and the library function in between) with how many
calls ran on tagged and untagged inputs; the latent-sync rules read that back.

Cost: a Python call per torch function, for a few steps only. The session runs the mode over
the last warm-up steps before the profiler window (the same code as the profiled steps, and
steps that are never measured): its hook would otherwise inflate the host time the profiled
steps record (benchmarks/provenance_overhead.py measures it). With no warm-up steps it runs
inside the window. `.to()`/`.cuda()` results are tagged from the script's start by a thin
wrapper, so data moved to the device before the mode starts counts too. On a CUDA run the mode
is off by default (the trace measures the real syncs); PERFTUNE_PROVENANCE=1/0 forces it.
"""

from __future__ import annotations

import ast
import contextlib
import linecache
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from perftune.documents import ProvenanceDocument, ProvenanceSite
from perftune.documents.capture import BATCH_COPY, HOST_COPY, NO_COPY, PINNED_BATCH_COPY
from perftune.trace.frames import Frame, dotted_name, is_user_frame

ENV = "PERFTUNE_PROVENANCE"

# Calls that read a device value on the host (or whose output size depends on device data).
_SYNC_PRONE = frozenset({
    "item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__",
    "__complex__", "nonzero", "argwhere", "nonzero_static", "unique", "unique_consecutive",
    "masked_select", "equal", "allclose", "repeat_interleave", "bincount",
    # not a read-back: Python data copied to the receiver's device (PFT210 on a CPU run asks
    # whether the receiver would be on the accelerator)
    "new_tensor",
})
_INDEXING = frozenset({"__getitem__", "__setitem__"})
# Ops whose implementation copies some of their tensor arguments to the host before it starts
# (positions, keyword names): on a GPU, device tensors there are read back every call.
_READS_ARGUMENTS: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "ctc_loss": ((2, 3), ("input_lengths", "target_lengths")),  # its tensor-lengths overload
}
# Ops some of whose outputs are host tensors whatever their inputs: a PackedSequence's
# `batch_sizes`, the lengths `pad_packed_sequence` returns.
_HOST_OUTPUTS: dict[str, frozenset[int]] = {
    "_pack_padded_sequence": frozenset({1}),
    "_pad_packed_sequence": frozenset({1}),
}
_MOVES = frozenset({"to", "cuda", "pin_memory"})
# Factories from Python data: given a list of tensors (`torch.tensor([loss, acc])`) they read
# each element back to the host (an `item()` per tensor: on a GPU, a sync per device scalar).
_FROM_DATA = frozenset({"tensor", "as_tensor"})
# (perftune's own capture hooks too: the optimizer step wrapper sits above torch/optim.)
_PLUMBING = ("/perftune/capture/", "/torch/nn/modules/module.py", "/torch/_tensor.py", "/torch/overrides.py",
             "/torch/utils/_contextlib.py", "/torch/_dynamo/", "/torch/functional.py",
             "/torch/_jit_internal.py", "/torch/utils/_device.py")
# Libraries whose tensors stay on the host even in a GPU job (optimizer step counters, data
# loading, the scaler's bookkeeping, the profiler, the compiler's own guards).
_HOST_SIDE = ("/torch/optim/", "/torch/utils/data/", "/torch/amp/", "/torch/cuda/amp/",
              "/torch/profiler/", "/torch/autograd/profiler", "/torch/_dynamo/", "/torch/_inductor/",
              "/perftune/")
_THIS = __file__
_PLAIN, _SYNC, _INDEX, _MOVE, _WHERE, _READS, _DATA = 0, 1, 2, 3, 4, 5, 6


def enabled_for(cuda: bool) -> bool:
    """Whether a capture records provenance: on CPU runs, unless PERFTUNE_PROVENANCE says."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("0", "false", "off", "no"):
        return False
    if value in ("1", "true", "on", "yes"):
        return True
    return not cuda


def _tensors(values: Iterable[Any]) -> Iterable[torch.Tensor]:
    for v in values:
        if isinstance(v, torch.Tensor):
            yield v
        elif isinstance(v, (list, tuple)):
            for w in v:
                if isinstance(w, torch.Tensor):
                    yield w


def _moves_to_device(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> bool:
    """`.to(device)`, `.to(other_tensor)`, `.cuda()`; not a dtype-only `.to(torch.float16)`."""
    if name == "cuda":
        return True
    if name == "pin_memory":
        return True  # pinned memory exists to feed a device
    if "device" in kwargs:
        return True
    for a in args[1:]:
        if isinstance(a, (str, torch.device, int)) and not isinstance(a, bool):
            return True
        if isinstance(a, torch.Tensor):
            return True
    return False


def _to_host(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """A `.to()` whose target device is the CPU (whatever the source wrote)."""
    target = kwargs.get("device")
    if target is None:
        target = next((a for a in args[1:] if isinstance(a, (str, torch.device))), None)
    if target is None:
        return False
    with contextlib.suppress(RuntimeError, TypeError):
        return torch.device(target).type == "cpu"
    return False


# `.to("cpu")`, `.to(torch.device("cpu"))`, `.to(device="cpu")`: a move the source sends to the
# host in so many words (on a CPU run `.to(device)` is a move to the CPU too, and the same at
# run time; only the source tells them apart).
_HOST_LITERAL = re.compile(r"""\.to\(\s*(?:device\s*=\s*)?(?:(?:torch\.)?device\(\s*)?["']cpu["']""")
# `.to(host_device)`, `.to(self.cpu_device)`, `.to(device=host)`: a move to a name (or an
# attribute) the file only ever binds to the host in so many words
_NAMED_TARGET = re.compile(r"""\.to\(\s*(?:device\s*=\s*)?(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*)\s*[,)]""")
_host_lines: dict[tuple[str, int], bool] = {}
_host_names_of: dict[str, frozenset[str]] = {}


def _is_host_expr(node: ast.expr) -> bool:
    """`"cpu"`, `torch.device("cpu")`, `torch.device(type="cpu")`."""
    if isinstance(node, ast.Constant):
        return node.value == "cpu"
    if isinstance(node, ast.Call) and not node.args[1:] and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == "device")
            or (isinstance(node.func, ast.Name) and node.func.id == "device")):
        values = list(node.args) + [k.value for k in node.keywords if k.arg == "type"]
        return len(values) == 1 and isinstance(values[0], ast.Constant) and values[0].value == "cpu"
    return False


def _host_names(file: str) -> frozenset[str]:
    """The names (variables or attributes, by their last part) that every assignment of the
    file binds to the host in so many words (`host_device = torch.device("cpu")`); a name also
    bound to anything else (`device = "cpu"` then `device = "cuda"`, a parameter) is not one.
    Only in a file that also binds an accelerator (`"cuda"`, `torch.cuda.is_available()`):
    where the source never names one, its `device = "cpu"` is the run's device, whatever it
    would be on a GPU."""
    known = _host_names_of.get(file)
    if known is not None:
        return known
    bound: dict[str, bool] = {}
    accelerator = False
    try:
        tree = ast.parse("".join(linecache.getlines(file)))
    except (SyntaxError, ValueError):
        tree = None
    for node in ast.walk(tree) if tree is not None else ():
        pairs: list[tuple[ast.expr, ast.expr | None]] = []
        if isinstance(node, ast.Assign):
            pairs = [(t, node.value) for t in node.targets]
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
            pairs = [(node.target, node.value)]
        elif isinstance(node, (ast.For, ast.With, ast.comprehension)):
            targets = [node.target] if not isinstance(node, ast.With) else \
                [i.optional_vars for i in node.items if i.optional_vars is not None]
            pairs = [(t, None) for t in targets]
        elif isinstance(node, ast.arg):
            bound[node.arg] = False  # a parameter: whatever the caller passes
        for target, value in pairs:
            if value is not None and _names_accelerator(value):
                accelerator = True
            for t in ast.walk(target):
                name = t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else None
                if name is not None:
                    host = value is not None and t is target and _is_host_expr(value)
                    bound[name] = bound.get(name, True) and host
    known = _host_names_of[file] = frozenset(n for n, host in bound.items() if host and accelerator)
    return known


_ACCELERATORS = ("cuda", "mps", "xpu", "hip", "accelerator")


def _names_accelerator(node: ast.expr) -> bool:
    """An expression that names an accelerator: `"cuda"`, `"cuda:0"`, `torch.cuda.is_available()`."""
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) \
                and n.value.split(":")[0] in _ACCELERATORS:
            return True
        if isinstance(n, ast.Attribute) and n.attr in _ACCELERATORS:
            return True
    return False


def _host_literal_at(frame: FrameType | None) -> bool:
    """Whether the innermost frame of the user's code (from `frame` outwards) moves to the
    host in so many words on its line (`.to("cpu")`, or `.to(host_device)` where the file binds
    `host_device` to the host and to nothing else)."""
    while frame is not None and _frame_file(frame) == _THIS:
        frame = frame.f_back
    # the user's own `.to()`, not one a library makes inside the user's call
    if frame is None or not is_user_frame(Frame(file=_frame_file(frame), line=0, function="")):
        return False
    key = (_frame_file(frame), frame.f_lineno)
    known = _host_lines.get(key)
    if known is None:
        text = linecache.getline(*key)
        known = bool(_HOST_LITERAL.search(text)) or any(
            m.group(1) in _host_names(key[0]) for m in _NAMED_TARGET.finditer(text))
        _host_lines[key] = known
    return known


def _is_bool_index(args: tuple[Any, ...]) -> bool:
    if len(args) < 2:
        return False
    index = args[1]
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


def _batch_tensors(batch: Any, depth: int = 0) -> Iterable[torch.Tensor]:
    """The tensors of a DataLoader batch: a tensor, or lists/tuples/dicts of them, nested (a
    detection batch is a tuple of images and a tuple of target dicts), 4 levels at most."""
    if isinstance(batch, torch.Tensor):
        yield batch
    elif depth < 4 and isinstance(batch, (list, tuple)):
        for v in batch:
            yield from _batch_tensors(v, depth + 1)
    elif depth < 4 and isinstance(batch, dict):
        for v in batch.values():
            yield from _batch_tensors(v, depth + 1)


def _device_copy(src: torch.Tensor, out: Any, tags: TagSet) -> Any:
    """The result of a move to the device, as a GPU run would have it: a tensor of its own.

    On a CPU run `.to(device)` of a host tensor returns that very tensor; on a GPU it returns
    a copy and the host tensor stays on the host. Tagging the returned tensor would then tag
    the host tensor itself, and its next move (a label matrix built once before the loop and
    copied every step) would look like a move of device data that copies nothing. So a move
    that returned its untagged input returns a view of it instead (same storage, same
    autograd history): the view is the device copy, the input stays a host tensor. A
    parameter, a leaf that requires grad (a view of it is no leaf: the optimizer would refuse
    it) and a tensor without strides (sparse) are returned as they are."""
    if out is not src or isinstance(src, torch.nn.Parameter) or src in tags \
            or (src.requires_grad and src.is_leaf) or src.layout != torch.strided:
        return out
    try:
        return src.view_as(src)
    except Exception:  # a layout or subclass without views: the tensor itself, as before
        return out


def _host_copy(src: torch.Tensor, out: Any) -> Any:
    """The result of `.to("cpu")` of `src`: a tensor of its own (a view when the move returned
    its input), never tagged, so that what the host copy feeds is host data."""
    if out is not src or isinstance(src, torch.nn.Parameter) or (src.requires_grad and src.is_leaf) \
            or src.layout != torch.strided:
        return out
    try:
        return src.view_as(src)
    except Exception:
        return out


def _frame_file(frame: FrameType) -> str:
    return frame.f_code.co_filename


class TagSet:
    """Tensors by identity, forgotten when they die: a set of ids (a lookup is one hash) plus
    a weak reference per tensor whose callback removes its id before the id can be reused."""

    def __init__(self) -> None:
        self._refs: dict[int, weakref.ref[torch.Tensor]] = {}

    def __contains__(self, t: object) -> bool:
        return id(t) in self._refs

    def __len__(self) -> int:
        return len(self._refs)

    def add(self, t: torch.Tensor) -> None:
        key = id(t)
        if key in self._refs:
            return
        refs = self._refs

        def forget(_ref: weakref.ref[torch.Tensor], k: int = key) -> None:
            refs.pop(k, None)

        with contextlib.suppress(TypeError):  # not weak-referenceable: not kept alive by us
            refs[key] = weakref.ref(t, forget)


class ProvenanceMode(TorchFunctionMode):
    """Tags accelerator-bound tensors and records sync-prone call sites (see the module doc)."""

    def __init__(self, tags: TagSet, batches: TagSet | None = None,
                 pinned_batches: TagSet | None = None) -> None:
        super().__init__()
        self.tags = tags
        # the tensors of the DataLoader's latest batches (from loaders that do / do not ask
        # for pinned memory): what a `.to(device)` of them copies
        self.batches = batches if batches is not None else TagSet()
        self.pinned_batches = pinned_batches if pinned_batches is not None else TagSet()
        self.ops = 0
        self.sites: dict[tuple[str, int, str, str, str | None], list[int]] = {}
        self._user_files: dict[str, bool] = {}
        self._kinds: dict[Any, int] = {}

    # ------------------------------------------------------------------ tags
    def tagged(self, t: torch.Tensor) -> bool:
        return isinstance(t, torch.nn.Parameter) or t in self.tags

    def _any_tagged(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        tags, param, tensor = self.tags, torch.nn.Parameter, torch.Tensor
        for v in (*args, *kwargs.values()) if kwargs else args:
            if isinstance(v, tensor):
                if id(v) in tags._refs or isinstance(v, param):
                    return True
            elif isinstance(v, (list, tuple)):
                for w in v:
                    if isinstance(w, tensor) and (id(w) in tags._refs or isinstance(w, param)):
                        return True
        return False

    def tag(self, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            self.tags.add(out)
        elif isinstance(out, (list, tuple)):
            for t in out:
                if isinstance(t, torch.Tensor):
                    self.tags.add(t)

    # ------------------------------------------------------------------ sites
    def _is_user(self, file: str) -> bool:
        known = self._user_files.get(file)
        if known is None:
            known = file != _THIS and is_user_frame(Frame(file=file, line=0, function=""))
            self._user_files[file] = known
        return known

    def _record(self, call: str, tagged: bool) -> None:
        frame: FrameType | None = sys._getframe(2)
        library: FrameType | None = None
        while frame is not None and not self._is_user(_frame_file(frame)):
            path = _frame_file(frame).replace("\\", "/")
            if path != _THIS and not any(p in path for p in _PLUMBING):
                library = frame  # the outermost library frame below the user's wins
            frame = frame.f_back
        if frame is None:
            return
        via = None
        if library is not None:
            via = dotted_name(Frame(file=_frame_file(library), line=library.f_lineno,
                                    function=library.f_code.co_name))
        key = (_frame_file(frame), frame.f_lineno, frame.f_code.co_name, call, via)
        counts = self.sites.get(key)
        if counts is None:
            counts = self.sites[key] = [0, 0, len(self.sites)]
        counts[0 if tagged else 1] += 1

    # ------------------------------------------------------------------ the mode
    def _kind(self, func: Callable[..., Any]) -> int:
        name = getattr(func, "__name__", "")
        kind = _SYNC if name in _SYNC_PRONE else _INDEX if name in _INDEXING \
            else _MOVE if name in _MOVES else _WHERE if name == "where" \
            else _READS if name in _READS_ARGUMENTS else _DATA if name in _FROM_DATA else _PLAIN
        with contextlib.suppress(TypeError):  # an unhashable callable: classified every call
            self._kinds[func] = kind
        return kind

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        self.ops += 1
        kind = self._kinds.get(func)
        if kind is None:
            kind = self._kind(func)
        tagged_in = self._any_tagged(args, kwargs)
        if kind == _SYNC:
            name = func.__name__
            if not (name == "repeat_interleave" and "output_size" in kwargs) \
                    and not torch.compiler.is_compiling():
                self._record(name, tagged_in)
            if name == "cpu" and args and isinstance(args[0], torch.Tensor):
                # a copy to the host: what it returns is host data (a view on this CPU run)
                return _host_copy(args[0], func(*args, **kwargs))
        elif kind == _INDEX and _is_bool_index(args):
            self._record(f"{func.__name__}[bool]", tagged_in)
        elif kind == _WHERE and len(args) == 1 and not kwargs:
            # one-argument `torch.where(cond)` is `nonzero(cond, as_tuple=True)`: a read-back
            self._record("where", tagged_in)
        elif kind == _READS:
            positions, names = _READS_ARGUMENTS[func.__name__]
            read = [args[k] for k in positions if k < len(args)] + [kwargs[n] for n in names if n in kwargs]
            tensors = [t for t in read if isinstance(t, torch.Tensor)]
            if tensors:
                self._record(func.__name__, any(self.tagged(t) for t in tensors))
        elif kind == _DATA and args and isinstance(args[0], (list, tuple)):
            # `torch.tensor([loss, acc])`: one read-back per tensor of the list
            for t in _tensors(args[0]):
                self._record("item", self.tagged(t))
        elif kind == _MOVE and func.__name__ == "to" and args and isinstance(args[0], torch.Tensor) \
                and _to_host(args, kwargs) and _host_literal_at(sys._getframe(1)):
            # `.to("cpu")`: a device→host copy of device data (recorded as `.cpu()`); what it
            # returns is host data (a view on this CPU run: the input stays what it was)
            self._record(NO_COPY, True)  # no host→device copy (the rules' record of moves)
            self._record("cpu", self.tagged(args[0]))
            return _host_copy(args[0], func(*args, **kwargs))
        elif kind == _MOVE and func.__name__ != "pin_memory" and args and isinstance(args[0], torch.Tensor):
            # every `.to()` / `.cuda()`, in the order they ran (the rules lay the trace's moves
            # of a call over them): a copy counts as untagged (its input is on the host)
            copy = not self.tagged(args[0]) and _moves_to_device(args, kwargs, func.__name__)
            self._record(self._copy_of(args[0]) if copy else NO_COPY, not copy)
        out = func(*args, **kwargs)
        if kind == _MOVE and _moves_to_device(args, kwargs, func.__name__):
            if args and isinstance(args[0], torch.Tensor) and not self.tagged(args[0]):
                out = _device_copy(args[0], out, self.tags)
            self.tag(out)
        elif tagged_in or (kwargs.get("device") is not None and self._device_factory_of_user()):
            host = _HOST_OUTPUTS.get(getattr(func, "__name__", ""))
            if host and isinstance(out, (list, tuple)):
                self.tag([t for k, t in enumerate(out) if k not in host])
            else:
                self.tag(out)
        return out

    def _copy_of(self, t: torch.Tensor) -> str:
        """What a `.to(device)` of the host tensor `t` copies from (see the module doc)."""
        if t in self.pinned_batches:
            return PINNED_BATCH_COPY
        if t in self.batches:
            return BATCH_COPY
        return HOST_COPY

    def _device_factory_of_user(self) -> bool:
        """A factory given `device=` on behalf of the user's code: called from it directly, or
        through a library helper the user handed the device to
        (`nn.Transformer.generate_square_subsequent_mask(n, device=device)`). Not when a
        host-side library sits in between: its explicit device="cpu" counters (Adam's step,
        GradScaler's growth tracker, the DataLoader's collate) never reach the accelerator."""
        frame: FrameType | None = sys._getframe(2)
        while frame is not None:
            file = _frame_file(frame)
            if self._is_user(file):
                return True
            path = file.replace("\\", "/")
            if any(part in path for part in _HOST_SIDE):
                return False
            frame = frame.f_back
        return False


class Provenance:
    """The capture's provenance recorder: `install()` at start, `start()`/`stop()` around the
    profiled steps, `document()` for provenance.json."""

    def __init__(self, *, cuda: bool) -> None:
        self.enabled = enabled_for(cuda)
        self.device = "cuda" if cuda else "cpu"
        self.tags = TagSet()
        self.batches = TagSet()
        self.pinned_batches = TagSet()
        self.mode: ProvenanceMode | None = None
        self.steps = 0
        self.window_s = 0.0
        self._started: float | None = None
        self._hook: Any = None
        self._originals: dict[str, Any] = {}
        self._recorded: ProvenanceMode | None = None
        self._thread: int | None = None
        self.note: str | None = None

    # ------------------------------------------------------------------ before the window
    def install(self) -> None:
        """Tag `.to(device)` / `.cuda()` results from the script's start (data moved to the
        device before the window is device data in the window too)."""
        if not self.enabled or self._originals:
            return
        tags = self.tags
        for name in ("to", "cuda"):
            original = getattr(torch.Tensor, name)

            def wrapper(self_: torch.Tensor, *args: Any, __orig: Any = original,
                        __name: str = name, **kwargs: Any) -> Any:
                out = __orig(self_, *args, **kwargs)
                if not isinstance(out, torch.Tensor) or not _moves_to_device((self_, *args), kwargs, __name):
                    return out
                if __name == "to" and _to_host((self_, *args), kwargs) and _host_literal_at(sys._getframe(1)):
                    return out if out is not self_ or self_ not in tags else _host_copy(self_, out)
                out = _device_copy(self_, out, tags)
                tags.add(out)
                return out

            wrapper.__name__ = original.__name__
            wrapper.__doc__ = original.__doc__
            self._originals[name] = original
            setattr(torch.Tensor, name, wrapper)

    def uninstall(self) -> None:
        for name, original in self._originals.items():
            setattr(torch.Tensor, name, original)
        self._originals.clear()

    # ------------------------------------------------------------------ the window
    def _tag_buffers(self, module: torch.nn.Module, inputs: Any) -> None:
        for b in module.buffers(recurse=False):
            self.tags.add(b)

    def start(self) -> None:
        if not self.enabled or self.mode is not None:
            return
        try:
            self.mode = ProvenanceMode(self.tags, self.batches, self.pinned_batches)
            self.mode.__enter__()  # type: ignore[no-untyped-call]
            self._hook = torch.nn.modules.module.register_module_forward_pre_hook(self._tag_buffers)
            self._thread = threading.get_ident()
            self._started = time.perf_counter()
        except Exception as exc:  # provenance is a help: never break the script for it
            self.note = f"device provenance could not start ({type(exc).__name__}: {exc})"
            self.mode = None

    def on_batch(self, batch: Any, pinned: bool | None) -> None:
        """A DataLoader batch (`pinned`: whether its loader asked for pinned memory): its
        tensors, while the mode runs, so that a `.to(device)` of them is told from a copy of
        a tensor the step made on the host."""
        if self.mode is None:
            return
        into = self.pinned_batches if pinned else self.batches
        for t in _batch_tensors(batch):
            into.add(t)

    def step(self) -> None:
        """A step boundary: counts the steps the mode covered."""
        if self.mode is not None:
            self.steps += 1

    def abandon(self) -> None:
        """In a forked child (a DataLoader worker): leave the mode, record nothing."""
        mode, self.mode = self.mode, None
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if mode is not None:
            with contextlib.suppress(Exception):
                mode.__exit__(None, None, None)  # type: ignore[no-untyped-call]
        self.uninstall()
        self.enabled = False

    @property
    def running(self) -> bool:
        return self.mode is not None

    def stop(self) -> None:
        mode, self.mode = self.mode, None
        if mode is None:
            return
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        try:
            if threading.get_ident() == self._thread:
                mode.__exit__(None, None, None)  # type: ignore[no-untyped-call]
            else:  # pragma: no cover - a window closed from another thread
                self.note = "device provenance was stopped from another thread"
        except Exception as exc:
            self.note = f"device provenance did not stop cleanly ({type(exc).__name__}: {exc})"
        if self._started is not None:
            self.window_s += time.perf_counter() - self._started
            self._started = None
        self._recorded = mode

    def document(self) -> ProvenanceDocument | None:
        if not self.enabled:
            return None
        mode = self._recorded or self.mode
        sites = [] if mode is None else [
            ProvenanceSite(file=file, line=line, function=function, call=call, via=via,
                           tagged=counts[0], untagged=counts[1], order=counts[2])
            for (file, line, function, call, via), counts in sorted(
                mode.sites.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][3]))]
        return ProvenanceDocument(enabled=mode is not None, device=self.device, steps=self.steps,
                                  ops_seen=mode.ops if mode is not None else 0,
                                  note=self.note, sites=sites)
