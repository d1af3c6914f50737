"""Fixture traces of PFT401: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft401`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft401`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import (
    ADD_KERNEL,
    F32,
    Fixture,
    op_kernel,
)
from perftune.engine.testing import TraceBuilder

_GELU = [("aten::pow", [[256, 1024], []], [F32, "Scalar"]),
         ("aten::mul", [[256, 1024], []], [F32, "Scalar"]),
         ("aten::add", [[256, 1024], [256, 1024], []], [F32, F32, "Scalar"]),
         ("aten::mul", [[256, 1024], []], [F32, "Scalar"]),
         ("aten::tanh", [[256, 1024]], [F32]),
         ("aten::add", [[256, 1024], [], []], [F32, "Scalar", "Scalar"]),
         ("aten::mul", [[256, 1024], []], [F32, "Scalar"]),
         ("aten::mul", [[256, 1024], [256, 1024]], [F32, F32])]


_LAYER_NORM = [("aten::mean", [[256, 1024], [], [], []], [F32, "ScalarList", "Scalar", ""]),
               ("aten::sub", [[256, 1024], [256, 1], []], [F32, F32, "Scalar"]),
               ("aten::pow", [[256, 1024], []], [F32, "Scalar"]),
               ("aten::mean", [[256, 1024], [], [], []], [F32, "ScalarList", "Scalar", ""]),
               ("aten::sub", [[256, 1024], [256, 1], []], [F32, F32, "Scalar"]),
               ("aten::add", [[256, 1], [], []], [F32, "Scalar", "Scalar"]),
               ("aten::sqrt", [[256, 1]], [F32]),
               ("aten::div", [[256, 1024], [256, 1]], [F32, F32]),
               ("aten::mul", [[256, 1024], [1024]], [F32, F32]),
               ("aten::add", [[256, 1024], [1024], []], [F32, F32, "Scalar"])]


def _chains(device: bool, fused: bool) -> dict[str, Any]:
    b = TraceBuilder(device=device)
    for _ in range(3):
        with b.step():
            with b.frame("bad.py", 1, "gelu"):
                ops = [("aten::gelu", [[256, 1024], []], [F32, ""])] if fused else _GELU
                for name, dims, types in ops:
                    if device:
                        op_kernel(b, name, ADD_KERNEL, 40.0, dims, types)
                    else:
                        b.leaf(name, dur=150.0, input_dims=dims, input_types=types)
            with b.frame("bad.py", 5, "layer_norm"):
                ops = ([("aten::layer_norm", [[256, 1024], [], [1024], [1024], [], []],
                         [F32, "ScalarList", F32, F32, "Scalar", "Scalar"])] if fused else _LAYER_NORM)
                for name, dims, types in ops:
                    if device:
                        op_kernel(b, name, ADD_KERNEL, 30.0, dims, types)
                    else:
                        b.leaf(name, dur=120.0, input_dims=dims, input_types=types)
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "cpu": lambda: _chains(False, False),
    "gpu": lambda: _chains(True, False),
    "clean": lambda: _chains(False, True),
}
