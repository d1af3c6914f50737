"""Fixture traces of PFT403: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft403`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft403`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import (
    ADD_KERNEL,
    BF16,
    Fixture,
)
from perftune.engine.testing import TraceBuilder


def _memory(peak: int) -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "train_step"):
            base = 20 << 30
            with b.op("aten::linear", input_dims=[[64, 2048, 4096], [4096, 4096]], input_types=[BF16, BF16]):
                b.memory_event(peak - base, total_allocated=peak, total_reserved=peak + (512 << 20))
                b.kernel("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", dur=500)
            with b.op("aten::add"):
                b.memory_event(-(peak - base), total_allocated=base, total_reserved=peak + (512 << 20))
                b.kernel(ADD_KERNEL, dur=50)
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: _memory(74 << 30),
    "clean": lambda: _memory(30 << 30),
}
