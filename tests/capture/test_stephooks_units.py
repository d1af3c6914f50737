"""The step detector's hooks, in this process: where an optimizer step is reported from."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from perftune.capture.child.stephooks import StepHooks  # noqa: E402


class _Session:
    """The parts of CaptureSession the hooks call; records where each optimizer step came from."""

    def __init__(self) -> None:
        self.in_loader = False
        self.window = SimpleNamespace(own_call=False)
        self.script_traces: list[str] = []
        self.steps: list[tuple[str, bool]] = []

    def on_optimizer_step(self, optimizer: Any) -> None:
        inside = False
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename.replace("\\", "/").endswith("torch/optim/optimizer.py"):
                inside = True  # torch's step wrapper, under record_function("Optimizer.step#...")
            frame = frame.f_back
        self.steps.append((type(optimizer).__name__, inside))

    def on_backward(self) -> None: ...
    def on_module_call(self, module: Any) -> None: ...
    def on_script_profiler_step(self) -> None: ...
    def on_script_trace(self, path: str) -> None: ...
    def on_seed(self) -> None: ...
    def on_loss(self, loss: Any) -> None: ...


def test_an_optimizer_step_is_reported_after_step_returns_outside_its_profiler_region() -> None:
    """The boundary may stop perftune's profiler and start a new one (a --skip 0 window whose
    steps are regrouped). Done from the post hook, inside `record_function("Optimizer.step#")`,
    the region's end met the new session with the old one's freed observer context (the
    SIGSEGV of test_skip_zero_profiles_from_the_first_step)."""
    session = _Session()
    hooks = StepHooks(session)  # type: ignore[arg-type]
    hooks.install()
    try:
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        other = torch.optim.Adam(model.parameters(), lr=0.1)
        for created in (opt, other):  # what the optimizer-creation hook does (capture/child/hooks.py)
            getattr(hooks, "wrap_step", lambda cls: None)(type(created))
        for optimizer in (opt, other, opt):
            model(torch.randn(2, 4)).sum().backward()
            optimizer.step()
    finally:
        hooks.remove()
    assert session.steps == [("SGD", False), ("Adam", False), ("SGD", False)]
    assert not getattr(torch.optim.SGD.step, "_perftune_step", False)  # removed with the hooks
