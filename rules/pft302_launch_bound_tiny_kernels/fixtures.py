"""Fixture traces of PFT302: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft302`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft302`; review both diffs.
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


def tiny_gpu() -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "update"):
            for _ in range(200):
                op_kernel(b, "aten::add_", ADD_KERNEL, 2.0, [[256], [256], []], [F32, F32, "Scalar"],
                           grid=(1, 1, 1), block=(128, 1, 1), launch_dur=6.0)
    return b.to_dict()


def tiny_clean() -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "update"):
            for _ in range(20):
                op_kernel(b, "aten::add_", ADD_KERNEL, 500.0, [[1 << 24], [1 << 24], []], [F32, F32, "Scalar"])
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "gpu": tiny_gpu,
    "clean": tiny_clean,
}
