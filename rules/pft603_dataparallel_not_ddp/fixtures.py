"""Fixture traces of PFT603: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft603`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft603`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import (
    A100,
    Fixture,
    op_kernel,
)
from perftune.engine.testing import TraceBuilder


def _data_parallel(dp: bool) -> dict[str, Any]:
    props = [dict(A100), {**A100, "id": 1}]
    b = TraceBuilder(device=True, device_properties=props)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "train"):
            if dp:
                with b.pycall("torch/nn/parallel/data_parallel.py(171): forward"):
                    with b.pycall("torch/nn/parallel/replicate.py(80): replicate"), b.op("Broadcast"):
                        b.memcpy("DtoD", nbytes=1 << 26, dur=300)
                    with b.pycall("torch/nn/parallel/scatter_gather.py(60): scatter"), b.op("Scatter"):
                        b.memcpy("DtoD", nbytes=1 << 22, dur=40)
                    with b.pycall("torch/nn/parallel/parallel_apply.py(40): parallel_apply"):
                        for dev in (0, 1):
                            b.device_id = dev
                            op_kernel(b, "aten::mm", "ampere_s16816gemm_tf32_128x128_nn", 800.0)
                        b.device_id = 0
                    with b.pycall("torch/nn/parallel/scatter_gather.py(90): gather"), b.op("Gather"):
                        b.memcpy("DtoD", nbytes=1 << 20, dur=20)
            else:
                with b.annotation("DistributedDataParallel.forward"):
                    op_kernel(b, "aten::mm", "ampere_s16816gemm_tf32_128x128_nn", 800.0)
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: _data_parallel(True),
    "clean": lambda: _data_parallel(False),
}
