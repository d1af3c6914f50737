"""Fixture traces of PFT509: each entry of FIXTURES builds `<name>.json.gz` in this folder.

After changing a builder: `python -m perftune.engine.fixtures pft509`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft509`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import A100, F32, Fixture, op_kernel
from perftune.engine.testing import TraceBuilder

GEMM = "ampere_sgemm_32x32_sliced1x4_nn"


def _small_gemms(allocated: int) -> dict[str, Any]:
    b = TraceBuilder(device=True, device_properties=[dict(A100)])
    for _ in range(3):
        with b.step(), b.frame("bad.py", 2, "train_step"):
            b.memory_event(1 << 20, allocated, allocated + (1 << 20))
            for _ in range(8):
                op_kernel(b, "aten::mm", GEMM, 400.0, [[64, 1024], [1024, 1024]], [F32, F32],
                          grid=(8, 1, 1), block=(128, 1, 1))
            b.sync(dur=3300.0)
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "gpu_small_batch": lambda: _small_gemms(2 << 30),
    # The same kernels with the memory nearly full: no room for a larger batch.
    "gpu_memory_full": lambda: _small_gemms(38 << 30),
}
