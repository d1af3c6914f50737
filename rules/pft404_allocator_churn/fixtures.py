"""Fixture traces of PFT404: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft404`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft404`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import (
    Fixture,
    op_kernel,
)
from perftune.engine.testing import TraceBuilder


def _churn(every_step: bool) -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for k in range(4):
        with b.step(), b.frame("bad.py", 1, "train_step"):
            with b.op("aten::empty"):
                if every_step or k == 0:
                    b.runtime("cudaMalloc", dur=180.0)
            op_kernel(b, "aten::mm", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 400)
            if every_step:
                with b.pycall("torch/cuda/memory.py(192): empty_cache"):
                    b.runtime("cudaFree", dur=350.0)
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: _churn(True),
    "clean": lambda: _churn(False),
}
