"""Fixture traces of PFT301: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft301`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft301`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import (
    Fixture,
    op_kernel,
)
from perftune.engine.testing import TraceBuilder


def idle_input() -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(4):
        with b.step(), b.frame("bad.py", 1, "train"):
            with b.dataloader(dur=3000):
                pass
            for _ in range(4):
                op_kernel(b, "aten::linear", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 250)
    return b.to_dict()


def idle_clean() -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(4):
        with b.step(), b.frame("bad.py", 1, "train"):
            with b.dataloader(dur=40):
                pass
            for _ in range(4):
                op_kernel(b, "aten::linear", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 1500)
            b.advance(5000)  # the host runs ahead; the device stays busy across steps
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "gpu": idle_input,
    "clean": idle_clean,
}
