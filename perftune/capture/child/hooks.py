"""Hooks into torch and the script that feed the capture session, and their removal.

No module forward hooks: a global forward hook changes how torch.compile traces every module
call (dynamo checks the global hook dicts), so perftune would measure a different program. The
batch size is read from DataLoader batches instead.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.autograd.profiler as autograd_profiler
from torch.utils.data import dataloader

from perftune import _runtime
from perftune.capture.child.session import CaptureSession
from perftune.capture.child.stephooks import StepHooks
from perftune.errors import UsageError


class MarkerError(UsageError):
    """The --step-marker cannot be used."""


def wrap_boundary(fn: Callable[..., Any], on_return: Callable[[], None]) -> Callable[..., Any]:
    """`fn` with a step boundary after every call that returns."""

    @functools.wraps(fn)
    def marked(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        on_return()
        return result

    return marked


class Hooks:
    def __init__(self, session: CaptureSession) -> None:
        self.session = session
        self._undo: list[Callable[[], None]] = []
        self.steps = StepHooks(session)

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        original = inspect.getattr_static(owner, name)
        setattr(owner, name, replacement)
        self._undo.append(lambda: setattr(owner, name, original))

    def install(self, step_marker: str | None = None, script: Path | None = None) -> None:
        """Install everything; the step marker module is imported here (sys.path must be set)."""
        self.install_step_hook()
        self._optimizer_created()
        self._batches()
        self._profiler_guard()
        self._evaluation()
        self._user_steps()
        if step_marker is not None:
            self._marker(step_marker, script)

    def remove(self) -> None:
        while self._undo:
            self._undo.pop()()

    # -- step sources ----------------------------------------------------------------------------
    def install_step_hook(self) -> None:
        """The step detector's hooks (optimizer steps, backward(), module calls, the script's
        profiler, seeds; perftune.capture.child.stephooks)."""
        self.steps.install()
        self.session.on_modules_unneeded = self.steps.drop_module_hook
        self._undo.append(self.steps.remove)

    def _evaluation(self) -> None:
        """`model.eval()` (`train(False)`) while the window records: it covered evaluation."""
        session = self.session
        original = torch.nn.Module.train

        @functools.wraps(original)
        def train(module: Any, mode: bool = True) -> Any:
            if not mode and session.profiling:
                session.eval_seen = True
            return original(module, mode)

        self._patch(torch.nn.Module, "train", train)

    def _user_steps(self) -> None:
        session = self.session
        _runtime._step_callback = lambda: session.boundary("perftune.step")

        def undo() -> None:
            _runtime._step_callback = None

        self._undo.append(undo)

    def _marker(self, marker: str, script: Path | None) -> None:
        module_name, _, attr_path = marker.partition(":")
        if module_name == "__main__":
            raise MarkerError(
                f"--step-marker {marker}: functions of the script itself cannot be wrapped "
                "before it runs; call perftune.step() at the end of each step instead"
            )
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise MarkerError(
                f"--step-marker {marker}: cannot import {module_name} ({type(exc).__name__}: {exc})"
            ) from None
        module_file = getattr(module, "__file__", None)
        if script is not None and module_file and os.path.samefile(module_file, script):
            raise MarkerError(
                f"--step-marker {marker}: {module_name} is the script itself, which runs as "
                "__main__; put the function in a module or call perftune.step() instead"
            )
        owner: Any = module
        *parents, name = attr_path.split(".")
        try:
            for part in parents:
                owner = getattr(owner, part)
            raw = inspect.getattr_static(owner, name)
        except AttributeError:
            raise MarkerError(f"--step-marker {marker}: {module_name} has no {attr_path}") from None
        session = self.session

        def boundary() -> None:
            session.boundary("marker")

        if isinstance(raw, (staticmethod, classmethod)):
            wrapped: Any = type(raw)(wrap_boundary(raw.__func__, boundary))
        elif callable(raw):
            wrapped = wrap_boundary(raw, boundary)
        else:
            raise MarkerError(f"--step-marker {marker}: {attr_path} is not a function")
        self._patch(owner, name, wrapped)

    # -- what the steps carry ----------------------------------------------------------------------
    def _optimizer_created(self) -> None:
        original = torch.optim.Optimizer.__init__
        session = self.session
        steps = self.steps

        @functools.wraps(original)
        def __init__(optimizer: Any, *args: Any, **kwargs: Any) -> None:
            session.on_optimizer_created()
            original(optimizer, *args, **kwargs)
            steps.wrap_step(type(optimizer))  # after torch wrapped the class's step

        self._patch(torch.optim.Optimizer, "__init__", __init__)

    def _batches(self) -> None:
        iterator = dataloader._BaseDataLoaderIter
        original = iterator.__next__
        original_init = iterator.__init__
        session = self.session

        @functools.wraps(original_init)
        def __init__(it: Any, loader: Any, *args: Any, **kwargs: Any) -> None:
            original_init(it, loader, *args, **kwargs)
            # what the loader asks for, not what this machine grants (no pinning on a CPU)
            it._perftune_pin_memory = bool(getattr(loader, "pin_memory", False))

        @functools.wraps(original)
        def __next__(it: Any) -> Any:
            outer = session.in_loader
            session.in_loader = True  # transforms are modules: their calls are no steps
            try:
                batch = original(it)
            finally:
                session.in_loader = outer
            session.on_batch(batch, getattr(it, "_perftune_pin_memory", None))
            return batch

        self._patch(iterator, "__init__", __init__)
        self._patch(iterator, "__next__", __next__)

    def _profiler_guard(self) -> None:
        """Notice the script starting its own profiler, before it starts, and step aside."""
        cls = autograd_profiler.profile
        name = "_prepare_trace" if hasattr(cls, "_prepare_trace") else "__enter__"
        original = getattr(cls, name)
        session = self.session

        @functools.wraps(original)
        def guarded(prof: Any, *args: Any, **kwargs: Any) -> Any:
            if not session.window.own_call and session.enabled:
                session.on_script_profiler()
            return original(prof, *args, **kwargs)

        self._patch(cls, name, guarded)
