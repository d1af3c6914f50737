"""Fixture traces of PFT503: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft503`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft503`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import (
    F32,
    Fixture,
    op_kernel,
)
from perftune.engine.testing import TraceBuilder


def _grid(blocks: int) -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "forward"):
            for _ in range(10):
                op_kernel(b, "aten::sum", "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float> >",
                           300.0, [[16, 65536]], [F32], grid=(blocks, 1, 1), block=(512, 1, 1))
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: _grid(16),
    "clean": lambda: _grid(2640),
}
