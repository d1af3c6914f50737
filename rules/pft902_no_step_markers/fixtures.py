"""Fixture traces of PFT902: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft902`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft902`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import (
    Fixture,
    op_kernel,
)
from perftune.engine.testing import TraceBuilder


def _steps(n: int, marked: bool = True) -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(n):
        if marked:
            with b.step(), b.frame("bad.py", 1, "train_step"):
                op_kernel(b, "aten::mm", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 500.0)
        else:
            with b.frame("bad.py", 1, "train_step"):
                op_kernel(b, "aten::mm", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 500.0)
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "no_markers": lambda: _steps(3, marked=False),
    "marked": lambda: _steps(3),
}
