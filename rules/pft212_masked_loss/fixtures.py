"""Fixture traces of PFT212: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft212`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft212`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    compute,
    nonzero,
    pycall,
    steps,
)
from perftune.engine.testing import TraceBuilder


def pft212(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b, "aten::conv2d", 500)
        with b.frame("bad.py", 6, "segmentation_loss"):
            compute(b, "aten::ne", 10)
            with pycall(b, "permute"):
                b.leaf("aten::permute", dur=2)
            for dims in ([[8, 64, 64, 6], []], [[8, 64, 64], []]):
                with b.op("aten::index", input_dims=dims):
                    nonzero(b, n=8 * 64 * 64, selected=30000)
                    if b.device:
                        b.kernel("void at::native::index_kernel", dur=10)
            with b.pycall("torch/nn/functional.py(3462): cross_entropy"), \
                    b.pycall("<built-in function cross_entropy_loss>"), \
                    b.op("aten::cross_entropy_loss", input_dims=[[30000, 6], [30000], [], [], [], []]):
                compute(b, "aten::log_softmax", 20)
                compute(b, "aten::nll_loss_nd", 10)
    return steps(TraceBuilder(device=gpu), body)


def pft212_clean(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b, "aten::conv2d", 500)
        with b.frame("good.py", 6, "segmentation_loss"), \
                b.op("aten::cross_entropy_loss", input_dims=[[8, 6, 64, 64], [8, 64, 64], [], [], [], []]):
            compute(b, "aten::log_softmax", 20)
            compute(b, "aten::nll_loss2d", 10)
    return steps(TraceBuilder(device=gpu), body)


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: pft212(True),
    "cpu": lambda: pft212(False),
    "clean": lambda: pft212_clean(True),
}
