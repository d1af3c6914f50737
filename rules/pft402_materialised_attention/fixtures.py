"""Fixture traces of PFT402: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft402`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft402`; review both diffs.
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


def _attention(device: bool, fused: bool) -> dict[str, Any]:
    b = TraceBuilder(device=device)
    q = [4, 8, 512, 64]
    s = [4, 8, 512, 512]
    ops = ([("aten::scaled_dot_product_attention", [q, q, q, [], [], []], [F32, F32, F32, "", "Scalar", "Scalar"], 900)]
           if fused else
           [("aten::matmul", [q, [4, 8, 64, 512]], [F32, F32], 600),
            ("aten::div", [s, []], [F32, "Scalar"], 300),
            ("aten::softmax", [s, [], []], [F32, "Scalar", ""], 400),
            ("aten::matmul", [s, q], [F32, F32], 600)])
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "attention"):
            for _ in range(2):  # two layers
                for name, dims, types, dur in ops:
                    if device:
                        op_kernel(b, name, "ampere_sgemm_128x64_nn" if "matmul" in name else ADD_KERNEL,
                                   dur / 10, dims, types)
                    else:
                        b.leaf(name, dur=dur, input_dims=dims, input_types=types)
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "cpu": lambda: _attention(False, False),
    "gpu": lambda: _attention(True, False),
    "clean": lambda: _attention(False, True),
}
