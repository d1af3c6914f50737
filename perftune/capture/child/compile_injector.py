"""The `compile` knob in the child: the model the optimizer trains runs under torch.compile.

No source change: perftune watches which module owns each parameter and which module holds
which submodule (torch's global registration hooks, so it costs nothing after construction).
When the script creates a `torch.optim` optimizer, the outermost module owning most of its
parameters is "the model", and its `forward` is replaced, on that instance, by
`torch.compile(forward, mode=...)`. The model object, its class, its parameters and its
`state_dict` keys stay what they were, so the script's own code (checkpoints, `isinstance`,
`model.train()`) sees no difference; its forward and backward compile at the first call after
the optimizer exists, which is the first step of a usual training loop.

Why not `model.compile()`: it compiles `Module._call_impl`, a frame in torch's own files that
dynamo skips, so a model whose forward is torch's (an `nn.Sequential`) is never compiled. The
forward is wrapped in a function of this file instead, which dynamo traces and inlines from.

`reduce-overhead` replays CUDA graphs; for a model on the CPU it is refused with one line (as
precision=tf32 is), since it would only be `default` under another name.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any

import torch

from perftune.capture.parent.knobs import COMPILE, COMPILE_CUDA_ONLY, COMPILE_NONE


class CompileError(RuntimeError):
    """The compile knob cannot be applied (the injectors turn it into an InjectionError)."""


class CompileInjector:
    """Compiles the model of every optimizer the script creates (once per model)."""

    def __init__(self, mode: str, report: Callable[[str, Any], None]) -> None:
        self.mode = mode
        self.report = report
        # id(parameter) -> (weak parameter, weak owning module); ids of dead tensors are reused,
        # so an entry counts only while its parameter is the same object.
        self._owner: dict[int, tuple[Any, Any]] = {}
        self._parent: weakref.WeakKeyDictionary[torch.nn.Module, Any] = weakref.WeakKeyDictionary()
        self._compiled: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()
        self.models: list[dict[str, Any]] = []

    def install(self, replace: Callable[[object, str, object], None], handles: list[Any]) -> None:
        from torch.nn.modules import module as nn_module

        handles.append(nn_module.register_module_parameter_registration_hook(self._on_parameter))
        handles.append(nn_module.register_module_module_registration_hook(self._on_module))
        original = torch.optim.Optimizer.__init__
        injector = self

        @functools.wraps(original)
        def init(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            injector.optimizer_created(self)

        replace(torch.optim.Optimizer, "__init__", init)
        self.report(COMPILE, {"mode": self.mode, "models": self.models})

    # -- who owns what ---------------------------------------------------------------------
    def _on_parameter(self, module: torch.nn.Module, name: str, param: Any) -> None:
        if param is not None:
            self._owner[id(param)] = (weakref.ref(param), weakref.ref(module))

    def _on_module(self, module: torch.nn.Module, name: str, submodule: Any) -> None:
        if isinstance(submodule, torch.nn.Module) and submodule not in self._parent:
            self._parent[submodule] = weakref.ref(module)

    def _owner_of(self, param: Any) -> torch.nn.Module | None:
        entry = self._owner.get(id(param))
        if entry is None or entry[0]() is not param:
            return None
        owner: torch.nn.Module | None = entry[1]()
        return owner

    def _root(self, module: torch.nn.Module) -> torch.nn.Module:
        seen = {id(module)}
        while True:
            ref = self._parent.get(module)
            parent = ref() if ref is not None else None
            if parent is None or id(parent) in seen:
                return module
            seen.add(id(parent))
            module = parent

    def model_of(self, optimizer: torch.optim.Optimizer) -> torch.nn.Module | None:
        """The outermost module holding most of the optimizer's parameters."""
        counts: dict[int, tuple[int, torch.nn.Module]] = {}
        for group in optimizer.param_groups:
            for param in group["params"]:
                owner = self._owner_of(param)
                if owner is None:
                    continue
                root = self._root(owner)
                n, _ = counts.get(id(root), (0, root))
                counts[id(root)] = (n + 1, root)
        if not counts:
            return None
        return max(counts.values(), key=lambda item: item[0])[1]

    # -- compiling -------------------------------------------------------------------------
    def optimizer_created(self, optimizer: torch.optim.Optimizer) -> None:
        model = self.model_of(optimizer)
        if model is None:
            raise CompileError(
                f"perftune: compile={self.mode}: no nn.Module owns the parameters of the "
                f"{type(optimizer).__name__} optimizer, so there is no model to compile"
            )
        if model in self._compiled:
            return
        device = _device_of(model)
        if self.mode in COMPILE_CUDA_ONLY and device != "cuda":
            raise CompileError(
                f"perftune: compile={self.mode} replays CUDA graphs and needs a CUDA model; "
                f"this model is on {device} (use default or max-autotune there)"
            )
        compile_in_place(model, self.mode)
        self._compiled.add(model)
        self.models.append({"class": type(model).__name__, "device": device,
                            "optimizer": type(optimizer).__name__})
        self.report(COMPILE, {"mode": self.mode, "models": self.models})


def _device_of(model: torch.nn.Module) -> str:
    param = next(model.parameters(), None)
    return param.device.type if param is not None else "cpu"


def compile_in_place(model: torch.nn.Module, mode: str) -> None:
    """Replace `model.forward` on this instance by its torch.compile'd version."""
    if mode == COMPILE_NONE:
        return
    forward = model.forward

    def compiled_forward(*args: Any, **kwargs: Any) -> Any:
        # A frame dynamo traces (perftune's, not torch's): it inlines the model's forward.
        return forward(*args, **kwargs)

    options: dict[str, Any] = {} if mode == "default" else {"mode": mode}
    model.forward = torch.compile(compiled_forward, **options)
