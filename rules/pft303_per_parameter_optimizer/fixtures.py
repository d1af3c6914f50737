"""Fixture traces of PFT303: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft303`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft303`; review both diffs.
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

_ADAM_OPS = ("aten::mul_", "aten::add_", "aten::addcmul_", "aten::sqrt", "aten::div", "aten::addcdiv_")


def _adam(device: bool, foreach: bool, cls: str = "Adam") -> dict[str, Any]:
    b = TraceBuilder(device=device)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "train_step"):
            if device:
                op_kernel(b, "aten::linear", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 800)
            else:
                b.leaf("aten::linear", dur=800, input_dims=[[64, 512], [512, 512], [512]], input_types=[F32] * 3)
            with b.optimizer_step(cls):
                if foreach:
                    for name in ("aten::_foreach_mul_", "aten::_foreach_add_", "aten::_foreach_addcmul_",
                                 "aten::_foreach_sqrt", "aten::_foreach_div_", "aten::_foreach_addcdiv_"):
                        if device:
                            op_kernel(b, name, "void at::native::multi_tensor_apply_kernel<float>", 20)
                        else:
                            b.leaf(name, dur=40)
                    continue
                for _ in range(40):
                    for name in _ADAM_OPS:
                        dims = [[512, 512], [512, 512]]
                        if device:
                            op_kernel(b, name, ADD_KERNEL, 3.0, dims, [F32, F32], launch_dur=5.0)
                        else:
                            b.leaf(name, dur=4.0, input_dims=dims, input_types=[F32, F32])
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: _adam(True, False),
    # On a CPU run torch.optim's Adam is per-parameter by default (on a GPU it picks foreach):
    # the CPU fixture is a custom optimizer, which stays per-parameter on any device.
    "cpu": lambda: _adam(False, False, "Lion"),
    "clean": lambda: _adam(True, True),
}
