"""Knob injectors applied inside the child process (precision, checkpointing, batch size,
torch.compile mode).

The capture bootstrap calls `install(knobs)` before the user's script runs. Nothing here changes
the script's source: the injectors hook into torch instead.

- precision: at the first forward of the script's model (the outermost module call that owns
  parameters), perftune wraps that module's forward in `torch.autocast` and casts its
  reduced-precision outputs back to float32, so a loss computed outside the model runs in fp32
  as autocast would run it. fp16 also scales the loss (an injected `GradScaler`) unless the
  script has its own scaler. tf32 and fp16 need a CUDA model.
- checkpoint: at the same first forward, perftune finds the model's repeated blocks (the largest
  group of same-class composite children of one module, e.g. the layers of a `ModuleList`) and
  runs the chosen ones under `torch.utils.checkpoint` (non-reentrant).
- batch_size: `DataLoader(..., batch_size=...)` gets the knob's value, unless the script reads
  the knob itself through `perftune.knob("batch_size", ...)`.
- compile: the model the script's optimizer trains gets a torch.compile'd forward when the
  optimizer is created (perftune/capture/child/compile_injector.py); `none` leaves it eager.
- num_threads: `torch.set_num_threads(value)` before the script runs; the script's own
  `torch.set_num_threads(n)` calls are recorded and leave the knob's value in force.

Unknown knobs are left alone (the script reads them with `perftune.knob`). What was applied is
written as JSON to the child spec's inject_report file, for the tuner's "how to apply" text.

With a report file, the script's own defaults are observed too (`"defaults"` in the report), for
the tuner's baseline: the batch size of the first DataLoader the script iterates, and the value
every option of the script's argparse parser ended up with (its default when not given).
"""

from __future__ import annotations

import functools
import json
import random
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from perftune import _runtime
from perftune.capture.child.compile_injector import CompileInjector
from perftune.capture.parent.knobs import (
    BATCH_SIZE,
    CHECKPOINT,
    COMPILE,
    COMPILE_NONE,
    CUDA_ONLY_PRECISIONS,
    INJECTED_KNOBS,
    NUM_THREADS,
    PRECISION,
    CheckpointPlacement,
    parse_batch_size,
    parse_checkpoint,
    parse_compile,
    parse_num_threads,
    parse_precision,
)

_PERFTUNE_DIR = str(Path(__file__).resolve().parents[2])
_TORCH_DIR = str(Path(torch.__file__).resolve().parent)


class InjectionError(RuntimeError):
    """A knob that cannot be applied to this script; ends the trial with this message."""


class _Patches:
    """Attributes replaced on torch classes, so tests can put them back."""

    def __init__(self) -> None:
        self._saved: list[tuple[object, str, object]] = []
        self.handles: list[Any] = []

    def replace(self, owner: object, name: str, value: object) -> None:
        self._saved.append((owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)))
        setattr(owner, name, value)

    def restore(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        for owner, name, value in reversed(self._saved):
            setattr(owner, name, value)
        self._saved.clear()


class _Report:
    """What the injectors did, rewritten to the child spec's inject_report whenever it changes."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.data: dict[str, Any] = {}

    def update(self, key: str, value: Any) -> None:
        self.data[key] = value
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)


_patches = _Patches()
_report = _Report(None)


def install(knobs: Mapping[str, Any], *, inject: Sequence[str] | None = None,
            report: str | None = None, seed: int | None = None,
            memory_budget: int | None = None) -> list[str]:
    """Apply the injected knobs; return the names of the knobs applied.

    Knobs this module does not know are ignored. `inject` narrows the set (None: every knob
    this module knows), e.g. to leave `batch_size` alone when the tuner passes it as a script
    flag instead. `report`: the file what was done is described in (JSON); `seed` seeds torch,
    random and numpy; `memory_budget` (bytes) caps the CUDA caching allocator. All four come
    from the child spec (perftune/capture/parent/spec.py).
    """
    global _report
    _report = _Report(report)
    if seed is not None:
        _seed(seed)
    enabled = INJECTED_KNOBS if inject is None else tuple(k for k in INJECTED_KNOBS if k in inject)
    names = [name for name in enabled if name in knobs]
    precision = parse_precision(knobs[PRECISION]) if PRECISION in names else None
    placement = parse_checkpoint(knobs[CHECKPOINT]) if CHECKPOINT in names else None
    budget = memory_budget
    scaler = _LossScaling() if precision == "fp16" else None
    if scaler is not None:
        scaler.install(_patches)
    if precision is not None or placement is not None or budget is not None:
        _ModelAdopter(precision, placement, budget, scaler).install(_patches)
    if BATCH_SIZE in names:
        _install_batch_size(parse_batch_size(knobs[BATCH_SIZE]), _patches)
    if NUM_THREADS in names:
        _install_num_threads(parse_num_threads(knobs[NUM_THREADS]), _patches)
    if COMPILE in names:
        mode = parse_compile(knobs[COMPILE])
        if mode == COMPILE_NONE:
            _report.update(COMPILE, {"mode": mode, "models": []})
        else:
            CompileInjector(mode, _report.update).install(_patches.replace, _patches.handles)
    if report is not None:
        _observe_defaults(_patches)
    _report.update("applied", names)
    return names


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy
    except ImportError:  # numpy is optional for torch
        return
    numpy.random.seed(seed)


def _caller_location() -> str | None:
    """file:line of the innermost frame outside torch and perftune (the user's call)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith((_PERFTUNE_DIR, _TORCH_DIR, "<")):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return None


# --- intra-op threads ----------------------------------------------------------------------
def _install_num_threads(value: int, patches: _Patches) -> None:
    original = torch.set_num_threads
    original(value)
    ignored: list[dict[str, Any]] = []
    _report.update(NUM_THREADS, {"value": value, "script_calls": ignored})

    @functools.wraps(original)
    def set_num_threads(n: int) -> None:
        # The trial's value stays: the script's own setting is what the knob replaces.
        ignored.append({"requested": n, "where": _caller_location()})
        _report.update(NUM_THREADS, {"value": value, "script_calls": ignored})

    patches.replace(torch, "set_num_threads", set_num_threads)


# --- batch size ----------------------------------------------------------------------------


def _install_batch_size(value: int, patches: _Patches) -> None:
    from torch.utils.data import DataLoader

    original = DataLoader.__init__
    loaders: list[dict[str, Any]] = []
    _report.update(BATCH_SIZE, {"value": value, "dataloaders": loaders})

    @functools.wraps(original)
    def init(self: Any, dataset: Any, *args: Any, **kwargs: Any) -> None:
        # A script reading perftune.knob("batch_size") sizes its loader itself.
        if BATCH_SIZE not in _runtime.declared_knobs:
            args, kwargs, before = _with_batch_size(args, kwargs, value)
            if before is not None:
                loaders.append({"from": before, "to": value, "where": _caller_location()})
                _report.update(BATCH_SIZE, {"value": value, "dataloaders": loaders})
        original(self, dataset, *args, **kwargs)

    patches.replace(DataLoader, "__init__", init)


def _with_batch_size(
    args: tuple[Any, ...], kwargs: dict[str, Any], value: int
) -> tuple[tuple[Any, ...], dict[str, Any], int | None]:
    """DataLoader arguments with batch_size replaced, and the value replaced (None: untouched)."""
    # DataLoader(dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, ...)
    batch_sampler = args[3] if len(args) > 3 else kwargs.get("batch_sampler")
    if batch_sampler is not None:
        return args, kwargs, None  # the sampler decides the batches
    if args:
        if args[0] is None:
            return args, kwargs, None  # batch_size=None: the dataset yields whole batches
        return (value, *args[1:]), kwargs, int(args[0])
    before = kwargs.get("batch_size", 1)
    if before is None:
        return args, kwargs, None
    return args, {**kwargs, "batch_size": value}, int(before)


# --- the script's own defaults (observed for the tuner's baseline) ---------------------------

# Flag values kept: what a knob value can be (a flag whose value is a list or a path is no knob).
_SCALARS = (bool, int, float, str)


def _observe_defaults(patches: _Patches) -> None:
    """Record the batch size of the first DataLoader iterated and the script's parsed flags."""
    import argparse

    from torch.utils.data import DataLoader

    # Torch's intra-op threads as the script leaves them: the default, or its own
    # torch.set_num_threads(n) (the last call wins).
    observed: dict[str, Any] = {"num_threads": torch.get_num_threads()}
    original_threads = torch.set_num_threads

    @functools.wraps(original_threads)
    def set_num_threads(n: int) -> None:
        original_threads(n)
        observed["num_threads"] = torch.get_num_threads()
        _report.update("defaults", observed)

    original_iter = DataLoader.__iter__
    original_parse = argparse.ArgumentParser.parse_known_args

    @functools.wraps(original_iter)
    def iterate(self: Any) -> Any:
        if "dataloader" not in observed:
            size = self.batch_size
            if size is None:  # a batch_sampler decides: its own batch size, when it has one
                size = getattr(self.batch_sampler, "batch_size", None)
            if isinstance(size, int) and not isinstance(size, bool):
                observed["dataloader"] = {"batch_size": size, "where": _caller_location()}
                _report.update("defaults", observed)
        return original_iter(self)

    @functools.wraps(original_parse)
    def parse_known_args(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        namespace, extras = original_parse(self, *args, **kwargs)
        flags = observed.setdefault("flags", {})
        for action in self._actions:
            value = getattr(namespace, action.dest, None) if action.dest else None
            if not action.option_strings or not (value is None or isinstance(value, _SCALARS)):
                continue
            for option in action.option_strings:
                flags.setdefault(option, value)  # the first parse is the script's main one
        _report.update("defaults", observed)
        return namespace, extras

    patches.replace(DataLoader, "__iter__", iterate)
    patches.replace(argparse.ArgumentParser, "parse_known_args", parse_known_args)
    patches.replace(torch, "set_num_threads", set_num_threads)
    _report.update("defaults", observed)


# --- the model: precision and checkpointing -------------------------------------------------


class _ModelAdopter:
    """Finds the script's model at its first forward and applies precision and checkpointing.

    Global module hooks see every module call until the model is found; they are then replaced
    by hooks on the model alone, so the measured steps pay for two hook calls per step, not per
    module.
    """

    def __init__(
        self,
        precision: str | None,
        placement: CheckpointPlacement | None,
        budget: int | None,
        scaler: _LossScaling | None,
    ) -> None:
        self.precision = precision
        self.placement = placement
        self.budget = budget
        self.scaler = scaler
        self.model: torch.nn.Module | None = None
        self.autocast: Callable[[], Any] | None = None
        self._local = threading.local()
        self._global_handles: list[Any] = []
        self._patches: _Patches | None = None

    def install(self, patches: _Patches) -> None:
        from torch.nn.modules import module as nn_module

        self._patches = patches
        pre = nn_module.register_module_forward_pre_hook(self._global_pre)
        post = nn_module.register_module_forward_hook(self._global_post, always_call=True)
        self._global_handles = [pre, post]
        patches.handles.extend(self._global_handles)

    def _depth(self) -> int:
        return getattr(self._local, "depth", 0)  # type: ignore[no-any-return]

    def _global_pre(self, module: torch.nn.Module, args: Any) -> None:
        depth = self._depth()
        self._local.depth = depth + 1
        if self.model is None and depth == 0 and _owns_parameters(module):
            self._adopt(module)
            self._enter(module, args)

    def _global_post(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        self._local.depth = max(0, self._depth() - 1)
        if module is self.model and self._depth() == 0:
            result = self._exit(module, args, output)
            # From now on only the model's own hooks run (registered after this call's hook
            # list was taken, so they do not fire twice for it).
            for handle in self._global_handles:
                handle.remove()
            if self.autocast is not None:
                handles = [
                    module.register_forward_pre_hook(self._enter),
                    module.register_forward_hook(self._exit, always_call=True),
                ]
                if self._patches is not None:
                    self._patches.handles.extend(handles)
            return result
        return None

    def _adopt(self, model: torch.nn.Module) -> None:
        self.model = model
        device = next(model.parameters()).device
        info: dict[str, Any] = {"class": type(model).__name__, "device": device.type}
        if self.budget is not None and device.type == "cuda":
            total = torch.cuda.get_device_properties(device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, self.budget / total), device)
            info["memory_fraction"] = min(1.0, self.budget / total)
        _report.update("model", info)
        if self.precision is not None:
            self.autocast = _precision_context(self.precision, device)
            _report.update(PRECISION, {"value": self.precision, "device": device.type})
            if self.scaler is not None:
                self.scaler.activate(device.type)
        if self.placement is not None and self.placement.mode != "none":
            _report.update(CHECKPOINT, _checkpoint_blocks(model, self.placement))
        elif self.placement is not None:
            _report.update(CHECKPOINT, {"placement": "none", "checkpointed": []})

    def _contexts(self) -> list[Any]:
        stack = getattr(self._local, "contexts", None)
        if stack is None:
            stack = self._local.contexts = []
        return stack  # type: ignore[no-any-return]

    def _enter(self, module: torch.nn.Module, args: Any) -> None:
        if self.autocast is None:
            return
        context = self.autocast()
        context.__enter__()
        self._contexts().append(context)

    def _exit(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        if self.autocast is None:
            return None
        contexts = self._contexts()
        if contexts:
            contexts.pop().__exit__(None, None, None)
        # A loss computed outside the model then runs in fp32, as it would under autocast.
        return _to_float32(output) if output is not None else None


def _owns_parameters(module: torch.nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _precision_context(precision: str, device: torch.device) -> Callable[[], Any] | None:
    """A factory for the autocast context of `precision` (None: no autocast), after setting
    the matmul flags; raises InjectionError when the device cannot take it."""
    if precision in CUDA_ONLY_PRECISIONS and device.type != "cuda":
        raise InjectionError(
            f"perftune: precision={precision} needs a CUDA model; this model is on "
            f"{device.type} (use fp32 or bf16 there)"
        )
    if device.type == "cuda":
        # fp32 means true fp32: cuDNN convolutions default to TF32 otherwise.
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    if precision in ("fp32", "tf32"):
        return None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InjectionError("perftune: precision=bf16: this GPU does not support bfloat16")
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype)


def _to_float32(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        if output.dtype in (torch.bfloat16, torch.float16):
            return output.float()
        return output
    if type(output) is tuple:
        return tuple(_to_float32(item) for item in output)
    if type(output) is list:
        return [_to_float32(item) for item in output]
    if type(output) is dict:
        return {key: _to_float32(item) for key, item in output.items()}
    return output  # custom output classes are left as they are


def repeated_blocks(model: torch.nn.Module) -> tuple[str, list[tuple[str, torch.nn.Module]]]:
    """The model's repeated blocks: the largest group (by parameter count) of same-class,
    composite children of one module, e.g. the layers of a ModuleList. ("", []) if none."""
    best: tuple[int, str, list[tuple[str, torch.nn.Module]]] = (0, "", [])
    for parent_name, parent in model.named_modules():
        groups: dict[type, list[tuple[str, torch.nn.Module]]] = {}
        for child_name, child in parent.named_children():
            # Leaf layers (two Linear layers of an MLP) are not blocks worth checkpointing.
            if next(child.children(), None) is None:
                continue
            groups.setdefault(type(child), []).append((child_name, child))
        for group in groups.values():
            if len(group) < 2:
                continue
            size = sum(p.numel() for _, block in group for p in block.parameters())
            if size > best[0]:
                best = (size, parent_name, group)
    return best[1], best[2]


def _checkpoint_blocks(model: torch.nn.Module, placement: CheckpointPlacement) -> dict[str, Any]:
    container, blocks = repeated_blocks(model)
    if not blocks:
        raise InjectionError(
            f"perftune: checkpoint={placement.canonical()}: found no repeated blocks in "
            f"{type(model).__name__} (a ModuleList/Sequential of modules of one class)"
        )
    chosen = [index for index in range(len(blocks)) if placement.selects(index)]
    for index in chosen:
        _wrap_in_checkpoint(blocks[index][1])
    return {
        "placement": placement.canonical(),
        "container": container,
        "block_class": type(blocks[0][1]).__name__,
        "blocks": [name for name, _ in blocks],
        "checkpointed": chosen,
    }


def _wrap_in_checkpoint(block: torch.nn.Module) -> None:
    from torch.utils.checkpoint import checkpoint

    forward = block.forward

    @functools.wraps(forward)
    def checkpointed(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)  # evaluation: nothing to save
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    # nn.Module.__call__ looks up self.forward, so an instance attribute takes over.
    block.forward = checkpointed  # type: ignore[method-assign]


# --- fp16 loss scaling ---------------------------------------------------------------------


class _LossScaling:
    """An injected GradScaler for fp16: scales each scalar `loss.backward()`, and runs each
    optimizer step through `scaler.step` + `scaler.update`.

    It stays out of the way when the script makes its own GradScaler, and falls back to
    unscaled steps when the script's backward is not a `loss.backward()` call (say
    `torch.autograd.backward`), reporting that in the injector report.
    """

    def __init__(self) -> None:
        self.scaler: Any = None
        self.creating = False
        self.active = False
        self.script_scaler = False
        self.scaled_since_step = False
        self.unscaled_steps = 0
        self._stepping = threading.local()
        self._optimizers: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()

    def install(self, patches: _Patches) -> None:
        scaling = self
        tensor_backward: Callable[..., Any] = torch.Tensor.backward

        @functools.wraps(tensor_backward)
        def backward(self: torch.Tensor, gradient: Any = None, *args: Any, **kwargs: Any) -> Any:
            if scaling.should_scale(self, gradient):
                scaling.scaled_since_step = True
                return tensor_backward(scaling.scaler.scale(self), None, *args, **kwargs)
            return tensor_backward(self, gradient, *args, **kwargs)

        patches.replace(torch.Tensor, "backward", backward)

        scaler_init = torch.amp.GradScaler.__init__

        @functools.wraps(scaler_init)
        def init_scaler(self: Any, *args: Any, **kwargs: Any) -> None:
            scaler_init(self, *args, **kwargs)
            if not scaling.creating and self.is_enabled():
                scaling.script_scaler = True
                _report.update("fp16_scaler", "the script's own GradScaler")

        patches.replace(torch.amp.GradScaler, "__init__", init_scaler)

        optimizer_init = torch.optim.Optimizer.__init__

        @functools.wraps(optimizer_init)
        def init_optimizer(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
            optimizer_init(self, *args, **kwargs)
            scaling.wrap(self)

        patches.replace(torch.optim.Optimizer, "__init__", init_optimizer)

    def activate(self, device_type: str) -> None:
        # Created here (not in install) so the script's own scaler, made before the first
        # forward, has been seen by then.
        self.creating = True
        try:
            self.scaler = torch.amp.GradScaler(device_type)
        finally:
            self.creating = False
        self.active = not self.script_scaler
        _report.update(
            "fp16_scaler", "injected GradScaler" if self.active else "the script's own GradScaler"
        )

    def should_scale(self, tensor: torch.Tensor, gradient: Any) -> bool:
        return (
            self.active
            and gradient is None
            and tensor.numel() == 1
            and tensor.requires_grad
            and not getattr(self._stepping, "inside", False)
        )

    def wrap(self, optimizer: torch.optim.Optimizer) -> None:
        if optimizer in self._optimizers:
            return
        self._optimizers.add(optimizer)
        step = optimizer.step
        scaling = self

        @functools.wraps(step)
        def scaled_step(*args: Any, **kwargs: Any) -> Any:
            # scaler.step calls optimizer.step again: that inner call is the real step.
            if getattr(scaling._stepping, "inside", False) or not scaling.active:
                return step(*args, **kwargs)
            if not scaling.scaled_since_step:
                scaling.unscaled_steps += 1
                _report.update("fp16_unscaled_steps", scaling.unscaled_steps)
                return step(*args, **kwargs)
            scaling._stepping.inside = True
            try:
                result = scaling.scaler.step(optimizer, *args, **kwargs)
                scaling.scaler.update()
            finally:
                scaling._stepping.inside = False
                scaling.scaled_since_step = False
            return result

        optimizer.step = scaled_step  # type: ignore[method-assign]

    def optimizers(self) -> Iterator[torch.optim.Optimizer]:
        return iter(self._optimizers)
