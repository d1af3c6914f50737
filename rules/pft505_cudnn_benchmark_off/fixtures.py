"""Fixture traces of PFT505: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft505`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft505`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import (
    A100,
    F32,
    Fixture,
    op_kernel,
)
from perftune.engine.testing import TraceBuilder


def _convs(static: bool) -> dict[str, Any]:
    b = TraceBuilder(device=True, device_properties=[dict(A100)])
    kernel = ("sm80_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32_nhwckrsc_nchw_tilesize128x128x16_"
              "stage4_warpsize2x2x1_g1_tensor16x8x8_execute_kernel_cudnn")
    for k in range(3):
        batch = 64 if static else (64, 32, 48)[k]
        with b.step(), b.frame("bad.py", 1, "train_step"):
            for _ in range(6):
                op_kernel(b, "aten::cudnn_convolution", kernel, 400.0,
                           [[batch, 64, 56, 56], [64, 64, 3, 3], [], [], [], [], [], [], []],
                           [F32, F32, "ScalarList", "ScalarList", "ScalarList", "Scalar", "Scalar",
                            "Scalar", "Scalar"])
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: _convs(True),
    "clean": lambda: _convs(False),
}
