"""The hooks that feed the step detector (perftune.capture.stepdetect) and what steps carry.

- optimizer steps: the global optimizer step pre/post hooks (only the outermost step of nested
  optimizers counts), reported once the optimizer's `step()` has returned (outside its
  `record_function` region, see `wrap_step`), and `GradScaler.step`, which marks the step even
  when the scaler skips the update because of inf/nan gradients;
- backward: `torch.autograd.backward` and `torch.Tensor.backward`, outermost call only (the
  recomputation of activation checkpointing calls backward inside backward), on the thread
  that runs the script;
- top-level module calls: `nn.Module.__call__` at nesting depth 0, outside DataLoader
  iteration (torchvision transforms are modules) and never while torch.compile traces. Only
  until a stronger detector is seen: then the patch is removed, so that training steps pay
  nothing for it;
- the script's own profiler: `profile.step()` calls, and where its traces go
  (`tensorboard_trace_handler`, `export_chrome_trace`);
- `torch.manual_seed`: whether the script seeds (perftune fix's loss check says so);
- `GradScaler.scale`: the loss recorded is the unscaled one.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.profiler as torch_profiler
import torch.profiler.profiler as profiler_module
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

if TYPE_CHECKING:
    from perftune.capture.child.session import CaptureSession


def _is_compiling() -> bool:
    try:
        return bool(torch.compiler.is_compiling())
    except AttributeError:  # older torch
        return False


class StepHooks:
    """Installs the detector's hooks for one capture session; `remove()` undoes them all."""

    def __init__(self, session: CaptureSession) -> None:
        self.session = session
        self._undo: list[Callable[[], None]] = []
        self._main = threading.main_thread()
        self._optimizer_depth = 0
        self._scaler_depth = 0
        self._backward_depth = 0
        self._module_depth = 0
        self._module_undo: Callable[[], None] | None = None
        # Optimizer.step calls under way (wrap_step) and the step they will report on return.
        self._step_depth = 0
        self._pending_step: Any = None
        # (id of the scaled loss, the loss before scaling) of the last GradScaler.scale call
        self._scaled: tuple[int, Any] | None = None

    def _patch(self, owner: Any, name: str, replacement: Any) -> Callable[[], None]:
        original = inspect.getattr_static(owner, name)
        setattr(owner, name, replacement)

        def undo() -> None:
            setattr(owner, name, original)

        self._undo.append(undo)
        return undo

    def install(self) -> None:
        self._optimizers()
        self._scaler()
        self._backward()
        self._modules()
        self._script_profiler()
        self._seeds()

    def remove(self) -> None:
        while self._undo:
            self._undo.pop()()
        self._module_undo = None

    def _on_main_thread(self) -> bool:
        return threading.current_thread() is self._main

    # -- optimizer steps -----------------------------------------------------------------------
    def _optimizers(self) -> None:
        session = self.session

        def pre(optimizer: Any, args: Any, kwargs: Any) -> None:
            self._optimizer_depth += 1

        def post(optimizer: Any, args: Any, kwargs: Any) -> None:
            self._optimizer_depth = max(self._optimizer_depth - 1, 0)
            # A wrapper optimizer stepping an inner one (ZeroRedundancyOptimizer) is one step;
            # so is GradScaler.step (it reports the step itself, skipped or not).
            if self._optimizer_depth == 0 and self._scaler_depth == 0:
                if self._step_depth:
                    self._pending_step = optimizer  # reported once step() has returned
                else:
                    session.on_optimizer_step(optimizer)

        pre_handle = register_optimizer_step_pre_hook(pre)  # type: ignore[no-untyped-call]
        post_handle = register_optimizer_step_post_hook(post)  # type: ignore[no-untyped-call]
        self._undo.append(pre_handle.remove)
        self._undo.append(post_handle.remove)

    def wrap_step(self, cls: type) -> None:
        """Report `cls.step`'s boundary after it returns, not from the post hook.

        The post hook runs inside the step's `record_function("Optimizer.step#...")` region.
        A boundary that stops perftune's profiler there and starts a new one (steps regrouped
        in a --skip 0 window) leaves the region's end to the new session with the old
        session's observer context, which points into the old session's freed event storage:
        a use-after-free in torch.profiler that crashed the capture now and then (SIGSEGV).
        Called for each optimizer class when an optimizer is created (after torch wrapped the
        class's step)."""
        step = cls.__dict__.get("step")
        if step is None or getattr(step, "_perftune_step", False):
            return
        hooks = self
        session = self.session

        @functools.wraps(step)
        def wrapped(optimizer: Any, *args: Any, **kwargs: Any) -> Any:
            hooks._step_depth += 1
            try:
                result = step(optimizer, *args, **kwargs)
            except BaseException:
                hooks._pending_step = None if hooks._step_depth == 1 else hooks._pending_step
                raise
            finally:
                hooks._step_depth -= 1
            if hooks._step_depth == 0 and hooks._pending_step is not None:
                done, hooks._pending_step = hooks._pending_step, None
                session.on_optimizer_step(done)
            return result

        wrapped._perftune_step = True  # type: ignore[attr-defined]
        self._patch(cls, "step", wrapped)

    def _scaler(self) -> None:
        scaler_cls = getattr(getattr(torch, "amp", None), "GradScaler", None)
        if scaler_cls is None:
            return
        original_step = scaler_cls.step
        original_scale = scaler_cls.scale
        session = self.session

        @functools.wraps(original_step)
        def step(scaler: Any, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
            self._scaler_depth += 1
            try:
                result = original_step(scaler, optimizer, *args, **kwargs)
            finally:
                self._scaler_depth -= 1
            if self._scaler_depth == 0 and self._optimizer_depth == 0:
                session.on_optimizer_step(optimizer)
            return result

        @functools.wraps(original_scale)
        def scale(scaler: Any, outputs: Any) -> Any:
            scaled = original_scale(scaler, outputs)
            if isinstance(outputs, torch.Tensor) and isinstance(scaled, torch.Tensor):
                self._scaled = (id(scaled), outputs.detach())
            return scaled

        self._patch(scaler_cls, "step", step)
        self._patch(scaler_cls, "scale", scale)

    # -- backward ------------------------------------------------------------------------------
    def _loss_of(self, tensor: Any) -> None:
        if not isinstance(tensor, torch.Tensor):
            return
        scaled = self._scaled
        if scaled is not None and scaled[0] == id(tensor):
            self.session.on_loss(scaled[1])  # the loss before GradScaler.scale
        else:
            self.session.on_loss(tensor)

    def _backward(self) -> None:
        session = self.session
        autograd = torch.autograd
        original_fn = autograd.backward
        original_method = torch.Tensor.backward

        def run(loss: Any, call: Callable[[], Any]) -> Any:
            if not self._on_main_thread():
                return call()
            outermost = self._backward_depth == 0
            if outermost:
                self._loss_of(loss)
            self._backward_depth += 1
            try:
                result = call()
            finally:
                self._backward_depth -= 1
            if outermost:
                session.on_backward()
            return result

        @functools.wraps(original_fn)
        def backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            first = tensors[0] if isinstance(tensors, (list, tuple)) and tensors else tensors
            return run(first, lambda: original_fn(tensors, *args, **kwargs))

        @functools.wraps(original_method)
        def tensor_backward(tensor: Any, *args: Any, **kwargs: Any) -> Any:
            return run(tensor, lambda: original_method(  # type: ignore[no-untyped-call]
                tensor, *args, **kwargs))

        self._patch(autograd, "backward", backward)
        self._patch(torch.Tensor, "backward", tensor_backward)

    # -- top-level module calls ----------------------------------------------------------------
    def _modules(self) -> None:
        module_cls = torch.nn.Module
        original = module_cls.__call__
        session = self.session
        hooks = self

        # The first parameter must be named `self`: with with_stack=True, torch.profiler's
        # Python tracer takes the code of nn.Module.__call__ (this function, while patched) to
        # spot module calls and reads the frame's `self` local; any other name crashes it.
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            if hooks._module_depth or _is_compiling() or session.in_loader:
                return original(self, *args, **kwargs)
            if not hooks._on_main_thread():
                return original(self, *args, **kwargs)
            hooks._module_depth += 1
            try:
                result = original(self, *args, **kwargs)
            finally:
                hooks._module_depth -= 1
            session.on_module_call(self)
            return result

        functools.update_wrapper(call, original)
        self._module_undo = self._patch(module_cls, "__call__", call)
        _dynamo_sees_the_patch(original, call)

    def drop_module_hook(self) -> None:
        """A stronger detector is in charge: module calls cost nothing from now on."""
        undo, self._module_undo = self._module_undo, None
        if undo is not None:
            undo()
            if undo in self._undo:
                self._undo.remove(undo)

    # -- the script's own profiler ---------------------------------------------------------------
    def _script_profiler(self) -> None:
        session = self.session
        cls = torch_profiler.profile
        original_step = cls.step

        @functools.wraps(original_step)
        def step(prof: Any, *args: Any, **kwargs: Any) -> Any:
            result = original_step(prof, *args, **kwargs)
            if not session.window.own_call:
                session.on_script_profiler_step()
            return result

        self._patch(cls, "step", step)

        original_export = cls.export_chrome_trace

        @functools.wraps(original_export)
        def export_chrome_trace(prof: Any, path: str, *args: Any, **kwargs: Any) -> Any:
            result = original_export(prof, path, *args, **kwargs)
            full = os.path.abspath(path)
            # tensorboard_trace_handler exports into the folder already recorded.
            inside = any(os.path.dirname(full) == known for known in session.script_traces)
            if not session.window.own_call and not inside:
                session.on_script_trace(full)
            return result

        self._patch(cls, "export_chrome_trace", export_chrome_trace)

        original_handler = profiler_module.tensorboard_trace_handler

        @functools.wraps(original_handler)
        def tensorboard_trace_handler(dir_name: str, *args: Any, **kwargs: Any) -> Any:
            session.on_script_trace(os.path.abspath(dir_name))
            return original_handler(dir_name, *args, **kwargs)

        self._patch(profiler_module, "tensorboard_trace_handler", tensorboard_trace_handler)
        if getattr(torch_profiler, "tensorboard_trace_handler", None) is original_handler:
            self._patch(torch_profiler, "tensorboard_trace_handler", tensorboard_trace_handler)

    # -- seeds ---------------------------------------------------------------------------------
    def _seeds(self) -> None:
        session = self.session
        original = torch.random.manual_seed

        @functools.wraps(original)
        def manual_seed(seed: Any) -> Any:
            session.on_seed()
            return original(seed)

        self._patch(torch.random, "manual_seed", manual_seed)
        current = torch.manual_seed
        if current is original:
            self._patch(torch, "manual_seed", manual_seed)
        elif inspect.unwrap(current) is original:
            # torch._dynamo, once imported (a zygote preloads it), replaces torch.manual_seed
            # by a wrapper that calls the original function directly, past the patch above.
            @functools.wraps(current)
            def wrapped_seed(seed: Any) -> Any:
                session.on_seed()
                return current(seed)

            self._patch(torch, "manual_seed", wrapped_seed)


def _dynamo_sees_the_patch(original: Any, patched: Any) -> None:
    """torch._dynamo keeps the nn.Module.__call__ it finds when it is imported
    (`unpatched_nn_module_call`) and inlines, with a guard on its closure, any other. A fresh
    child imports dynamo after this patch (the script's first optimizer or torch.compile does),
    so dynamo takes the patch for the plain call; a child forked from the zygote, which imported
    dynamo before, would guard on the patch and recompile every compiled module once the patch
    is dropped (drop_module_hook). Pointing dynamo at the patch makes both alike. Nothing
    happens where dynamo is not imported yet or keeps no such reference."""
    for name in ("torch._dynamo.utils", "torch._dynamo.variables.nn_module"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "unpatched_nn_module_call", None) is original:
            setattr(module, "unpatched_nn_module_call", patched)  # noqa: B010

