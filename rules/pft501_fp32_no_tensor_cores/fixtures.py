"""Fixture traces of PFT501: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft501`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft501`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import (
    A100,
    ADD_KERNEL,
    BF16,
    F32,
    V100,
    Fixture,
    op_kernel,
)
from perftune.engine.testing import TraceBuilder


def _gemm(props: dict[str, Any], kernel: str, dtype: str) -> dict[str, Any]:
    b = TraceBuilder(device=True, device_properties=[dict(props)])
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "forward"):
            for _ in range(4):
                op_kernel(b, "aten::mm", kernel, 1500.0, [[4096, 4096], [4096, 4096]], [dtype, dtype],
                           grid=(1024, 1, 1), block=(256, 1, 1), registers_per_thread=120,
                           shared_memory=16384)
            op_kernel(b, "aten::relu", ADD_KERNEL, 60.0, [[4096, 4096]], [dtype])
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "v100": lambda: _gemm(V100, 'volta_sgemm_128x64_nn', F32),
    "a100": lambda: _gemm(A100, 'ampere_sgemm_128x64_nn', F32),
    "clean": lambda: _gemm(A100, 'sm80_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x32_stage4_warpsize2x2x1_tensor16x8x16_kernel', BF16),
}
