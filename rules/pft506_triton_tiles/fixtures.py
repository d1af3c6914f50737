"""Fixture traces of PFT506: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft506`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft506`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import (
    F32,
    Fixture,
    op_kernel,
)
from perftune.engine.testing import TraceBuilder


def _triton(blocks: int) -> dict[str, Any]:
    b = TraceBuilder(device=True)
    name = "triton_poi_fused_add_mul_0"
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "scale_shift"), b.op("Torch-Compiled Region: 0/0"):
            for _ in range(4):
                op_kernel(b, name, name, 40.0, [[20480], [20480], [20480]], [F32, F32, F32],
                           grid=(blocks, 1, 1), block=(128, 1, 1), launch_call="cuLaunchKernel")
    data = b.to_dict()
    for e in data["traceEvents"]:
        if e.get("cat") == "cpu_op" and e.get("name") == name:
            e["args"].update({"kernel_backend": "triton", "kernel_file": "/tmp/torchinductor/ab/cabc.py",
                              "kernel_kwargs": "XBLOCK=1024, num_warps=4, num_stages=1",
                              "grid": f"grid({blocks * 1024},)"})
    return data


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: _triton(20),
    "clean": lambda: _triton(2640),
}
