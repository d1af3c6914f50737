"""Fixture traces of PFT504: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft504`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft504`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import (
    Fixture,
    op_kernel,
)
from perftune.engine.testing import TraceBuilder


def _occupancy(registers: int) -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "fused"):
            for _ in range(5):
                op_kernel(b, "my_ext::fused", "void my_ext::fused_kernel<float>(float const*, float*, int)",
                           400.0, grid=(4096, 1, 1), block=(256, 1, 1), registers_per_thread=registers,
                           occupancy=None)
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: _occupancy(255),
    "clean": lambda: _occupancy(32),
}
