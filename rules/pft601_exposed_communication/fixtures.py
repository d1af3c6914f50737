"""Fixture traces of PFT601: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft601`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft601`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import (
    A100,
    NCCL_ALLREDUCE,
    Fixture,
    op_kernel,
)
from perftune.engine.testing import TraceBuilder


def _allreduce(exposed: bool) -> dict[str, Any]:
    b = TraceBuilder(device=True, rank=0, world_size=2, device_properties=[dict(A100)])
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "train_step"):
            for _ in range(6):
                op_kernel(b, "aten::mm", "ampere_s16816gemm_tf32_128x128_nn", 500.0)
            if exposed:
                b.advance(3200)  # all-reduce only after backward has finished
            for _ in range(2):
                with b.op("c10d::allreduce_"), b.annotation("nccl:all_reduce"):
                    b.kernel(NCCL_ALLREDUCE, dur=1200.0, stream=20, grid=(2, 1, 1), block=(512, 1, 1))
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: _allreduce(True),
    "clean": lambda: _allreduce(False),
}
