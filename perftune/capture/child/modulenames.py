"""The attribute paths of the modules the profiled steps call (`features.3`, `wide`), for the
module view.

torch.profiler names a module range by its class and the order it first met the instance
(`nn.Module: Conv2d_2`). During the first profiled step a global forward pre-hook records every
module call in order, each under its attribute path in the outermost module that owns it (from
`named_modules()` of that root, e.g. `Net.features.3`); the hook is removed at the end of that
step. The calls, per class in call order, go into the trace's `perftune_modules` header; the
analysis pairs them with the same step's `nn.Module` ranges of that class in the same order
(analysis/modules.py), so no assumption about the profiler's numbering is made.

Not recorded once the script called torch.compile (or compiled anything) before the window, nor once a compiled
model (`OptimizedModule`) is called in it: a global hook changes what dynamo traces (and would
recompile), so those runs keep the profiler's names (a compiled plain function first called
inside the window with `--skip 0` is not detected).
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import torch
from torch.nn.modules import module as nn_module

__all__ = ["ModuleNames"]

# A model has rarely more module calls per step; beyond this the recording stops (and says so).
MAX_CALLS = 50_000


_compile_called = False


def _watch_compile() -> None:
    """Note every torch.compile / Module.compile call of the script (idempotent)."""
    if getattr(torch.compile, "_perftune_watched", False):
        return

    def watch(fn: Any) -> Any:
        @functools.wraps(fn)
        def watched(*args: Any, **kwargs: Any) -> Any:
            global _compile_called
            _compile_called = True
            return fn(*args, **kwargs)

        watched._perftune_watched = True  # type: ignore[attr-defined]
        return watched

    torch.compile = watch(torch.compile)  # type: ignore[assignment]
    torch.nn.Module.compile = watch(torch.nn.Module.compile)  # type: ignore[method-assign]


def _compiling() -> bool:
    if _compile_called:
        return True
    dynamo = sys.modules.get("torch._dynamo.utils")
    counters = getattr(dynamo, "counters", None)
    if counters is None:
        return False
    try:
        return any(v for v in counters.get("frames", {}).values())
    except Exception:
        return True  # unknown state: stay out of dynamo's way


class ModuleNames:
    """Records module calls by attribute path between `start()` and `stop()`."""

    def __init__(self) -> None:
        _watch_compile()
        self._handle: Any = None
        self._paths: dict[int, str] = {}  # id(module) -> path ("Net.features.3")
        self._keep: list[torch.nn.Module] = []  # ids stay valid while recording
        self._roots: dict[str, int] = {}
        self.calls: dict[str, list[str]] = {}
        self.note: str | None = None
        self.recorded = False
        self._count = 0

    def start(self) -> None:
        if self._handle is not None or self.recorded:
            return
        if _compiling():
            self.note = ("module names are the profiler's (Conv2d_2): torch.compile ran, and a "
                         "module hook would change what it compiles")
            return
        try:
            self._handle = nn_module.register_module_forward_pre_hook(self._pre)
        except Exception as exc:  # never end the training run
            self.note = f"module names could not be recorded ({type(exc).__name__}: {exc})"

    def stop(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        handle.remove()
        self.recorded = True
        self._keep.clear()

    def _index(self, root: torch.nn.Module) -> None:
        cls = type(root).__name__
        n = self._roots.get(cls, 0)
        self._roots[cls] = n + 1
        name = cls if n == 0 else f"{cls}#{n}"
        for qualified, sub in root.named_modules(remove_duplicate=False):
            key = id(sub)
            if key not in self._paths or not qualified:
                self._paths[key] = f"{name}.{qualified}" if qualified else name
                self._keep.append(sub)

    def _pre(self, module: torch.nn.Module, args: Any) -> None:
        if self._count >= MAX_CALLS:
            return
        if type(module).__name__ == "OptimizedModule":
            # A torch.compile'd model about to be traced (window at its first call): step out
            # before dynamo sees the hook; the profiler's names stay.
            handle, self._handle = self._handle, None
            if handle is not None:
                handle.remove()
            self.calls.clear()
            self.note = ("module names are the profiler's (Conv2d_2): the model is compiled, and a "
                         "module hook would change what torch.compile traces")
            return
        key = id(module)
        if key not in self._paths:
            self._index(module)
        self._count += 1
        self.calls.setdefault(type(module).__name__, []).append(self._paths[key])

    def document(self) -> dict[str, Any] | None:
        """The trace header `perftune_modules` (None: nothing recorded)."""
        if not self.recorded or not self.calls:
            return None
        doc: dict[str, Any] = {"version": 1, "calls": self.calls}
        if self._count >= MAX_CALLS:
            doc["truncated"] = True
        return doc
