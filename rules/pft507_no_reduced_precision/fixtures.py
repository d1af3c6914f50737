"""Fixture traces of PFT507: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft507`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft507`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import A100, BF16, F32, Fixture, cpu_host, cpu_train_steps, op_kernel
from perftune.engine.testing import TraceBuilder

TF32_GEMM = "ampere_s16816gemm_tf32_128x128_nn"


def _gpu(kernel: str) -> dict[str, Any]:
    b = TraceBuilder(device=True, device_properties=[dict(A100)])
    for _ in range(3):
        with b.step(), b.frame("bad.py", 2, "train_step"):
            for _ in range(4):
                op_kernel(b, "aten::mm", kernel, 1500.0, [[4096, 4096], [4096, 4096]], [F32, F32],
                          grid=(1024, 1, 1), block=(256, 1, 1))
            b.sync(dur=6100.0)
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    # A compute-bound fp32 step on a CPU with AMX: bf16 autocast.
    "cpu_amx": lambda: cpu_train_steps(cpu_host(), line=2),
    # The same step on a CPU without bf16 instructions, and already under autocast: nothing.
    "cpu_no_bf16": lambda: cpu_train_steps(cpu_host(flags=()), line=2),
    "cpu_autocast": lambda: cpu_train_steps(cpu_host(), dtype=BF16, file="good.py", line=3),
    # Overhead-bound: Python between ops fills the step; precision would not help.
    "cpu_overhead": lambda: cpu_train_steps(cpu_host(), conv_us=500.0, python_us=40000.0, line=2),
    # A foreign CPU trace: the CPU's flags are unknown.
    "cpu_foreign": lambda: cpu_train_steps(None, line=2),
    # GPU: fp32 matmuls already on TF32 tensor cores; bf16 autocast doubles the rate again.
    "gpu_tf32": lambda: _gpu(TF32_GEMM),
}
