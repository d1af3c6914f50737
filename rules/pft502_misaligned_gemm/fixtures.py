"""Fixture traces of PFT502: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft502`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft502`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import (
    BF16,
    Fixture,
    op_kernel,
)
from perftune.engine.testing import TraceBuilder


def _lm_head(vocab: int) -> dict[str, Any]:
    b = TraceBuilder(device=True)
    gemm = "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64"
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "lm_head"):
            for _ in range(4):
                op_kernel(b, "aten::linear", gemm, 60.0, [[8, 1024, 768], [768, 768]], [BF16, BF16, ""])
            op_kernel(b, "aten::linear", gemm, 8000.0 if vocab % 8 else 3900.0,
                       [[8, 1024, 768], [vocab, 768]], [BF16, BF16, ""])
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: _lm_head(50257),
    "clean": lambda: _lm_head(50304),
}
