"""Fixture traces of PFT305: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines users
read. After changing a builder: `python -m perftune.engine.fixtures pft305`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft305`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import Fixture, compute, steps
from perftune.engine.testing import TraceBuilder

PARAMETERS = 24


def _forward_backward(b: TraceBuilder) -> None:
    compute(b, "aten::linear", 400, host=60)
    compute(b, "aten::mse_loss", 40, host=20)
    compute(b, "aten::zero_", 5, host=5)


def bad(gpu: bool) -> TraceBuilder:
    """`for p in model.parameters(): p.add_(p.grad, alpha=-lr)`: one add_ per parameter."""
    def body(b: TraceBuilder) -> None:
        with b.frame("bad.py", 4, "train_step"):
            _forward_backward(b)
            for _ in range(PARAMETERS):
                compute(b, "aten::add_", 4, host=12 if gpu else None)
    return steps(TraceBuilder(device=gpu), body)


def clipped(gpu: bool) -> TraceBuilder:
    """The manual loop after `clip_grad_norm_`, whose own `_foreach_norm` / `_foreach_mul_`
    (a library helper's multi-tensor ops) say nothing about how the parameters are updated."""
    clip = "/usr/lib/python3.11/site-packages/torch/nn/utils/clip_grad.py"

    def body(b: TraceBuilder) -> None:
        with b.frame("bad.py", 4, "train_step"):
            _forward_backward(b)
            with b.frame(clip, 30, "clip_grad_norm_"):
                compute(b, "aten::_foreach_norm", 20, host=15 if gpu else None)
                compute(b, "aten::_foreach_mul_", 20, host=15 if gpu else None)
            for _ in range(PARAMETERS):
                compute(b, "aten::add_", 4, host=12 if gpu else None)
    return steps(TraceBuilder(device=gpu), body)


def clean(gpu: bool) -> TraceBuilder:
    """torch._foreach_add_ over every parameter: one call."""
    def body(b: TraceBuilder) -> None:
        with b.frame("good.py", 4, "train_step"):
            _forward_backward(b)
            compute(b, "aten::_foreach_add_", 30, host=20 if gpu else None)
    return steps(TraceBuilder(device=gpu), body)


def residual_forward(gpu: bool) -> TraceBuilder:
    """In-place adds inside a module's forward, once per block: not a parameter update."""
    def body(b: TraceBuilder) -> None:
        with b.frame("good.py", 4, "train_step"):
            for _ in range(PARAMETERS):
                with b.pycall("nn.Module: Block_0"), b.frame("good.py", 1, "forward"):
                    compute(b, "aten::add_", 4, host=12 if gpu else None)
    return steps(TraceBuilder(device=gpu), body)


FUNCTIONAL = "/usr/lib/python3.11/site-packages/torch/functional.py"
CLIP = "/usr/lib/python3.11/site-packages/torch/nn/utils/clip_grad.py"


def norms(gpu: bool) -> TraceBuilder:
    """`[torch.norm(p.grad, 2) for p in parameters]` stacked and normed again (a masked-
    autoencoder engine's gradient norm): one `torch.norm` call, one norm op, per parameter."""
    def body(b: TraceBuilder) -> None:
        with b.frame("bad.py", 4, "train_step"):
            _forward_backward(b)
        with b.frame("bad.py", 14, "grad_norm"):
            for _ in range(PARAMETERS):
                with b.frame(FUNCTIONAL, 1700, "norm"):
                    compute(b, "aten::linalg_vector_norm", 4, host=12 if gpu else None)
            compute(b, "aten::stack", 4, host=12 if gpu else None)
            with b.frame(FUNCTIONAL, 1700, "norm"):
                compute(b, "aten::linalg_vector_norm", 4, host=12 if gpu else None)
    return steps(TraceBuilder(device=gpu), body)


def clip_fallback(gpu: bool) -> TraceBuilder:
    """`clip_grad_norm_` computing its norms one tensor at a time inside one call (its own
    loop, the library's): not the script's loop."""
    def body(b: TraceBuilder) -> None:
        with b.frame("good.py", 4, "train_step"):
            _forward_backward(b)
            with b.frame(CLIP, 30, "clip_grad_norm_"):
                for _ in range(PARAMETERS):
                    compute(b, "aten::linalg_vector_norm", 4, host=12 if gpu else None)
            compute(b, "aten::_foreach_add_", 30, host=20 if gpu else None)
    return steps(TraceBuilder(device=gpu), body)


def norms_foreach(gpu: bool) -> TraceBuilder:
    """`torch.nn.utils.get_total_norm(grads, foreach=True)`: one `_foreach_norm`."""
    def body(b: TraceBuilder) -> None:
        with b.frame("good.py", 4, "train_step"):
            _forward_backward(b)
            compute(b, "aten::_foreach_add_", 30, host=20 if gpu else None)
        with b.frame("good.py", 14, "grad_norm"):
            compute(b, "aten::_foreach_norm", 20, host=15 if gpu else None)
            compute(b, "aten::linalg_vector_norm", 4, host=12 if gpu else None)
    return steps(TraceBuilder(device=gpu), body)


FIXTURES: dict[str, Fixture] = {
    "norms": lambda: norms(True),
    "norms_clip": lambda: clip_fallback(False),
    "norms_foreach": lambda: norms_foreach(True),
    "residual": lambda: residual_forward(True),
    "bad": lambda: bad(True),
    "cpu": lambda: bad(False),
    "clipped": lambda: clipped(False),
    "clean": lambda: clean(True),
}
