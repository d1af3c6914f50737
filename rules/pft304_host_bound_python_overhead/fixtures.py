"""Fixture traces of PFT304: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft304`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft304`; review both diffs.
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


def host_gpu() -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "rnn_step"):
            for _ in range(100):
                b.advance(60)  # Python between ops
                op_kernel(b, "aten::tanh", ADD_KERNEL, 5.0, [[32, 256]], [F32])
    return b.to_dict()


def host_cpu() -> dict[str, Any]:
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "rnn_step"):
            for _ in range(300):
                b.advance(10)
                b.leaf("aten::add", dur=3.0, input_dims=[[32, 256], [32, 256], []], input_types=[F32, F32, "Scalar"])
    return b.to_dict()


def host_clean() -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "rnn_step"):
            for _ in range(10):
                b.advance(20)
                op_kernel(b, "aten::mm", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 800)
            b.advance(8000)
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "gpu": host_gpu,
    "cpu": host_cpu,
    "clean": host_clean,
}
