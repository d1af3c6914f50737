"""Fixture traces of PFT201: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft201`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft201`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    compute,
    item,
    pycall,
    steps,
)
from perftune.engine.testing import TraceBuilder


def pft201(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("bad.py", 4, "class_histogram"), pycall(b, "bincount", "type"), \
                b.op("aten::bincount", input_dims=[[4096], [], []]):
            with b.op("aten::max"):
                if b.device:
                    b.kernel("void at::native::reduce_kernel", dur=5)
            item(b)
            if b.device:
                b.kernel("void at::native::bincount_kernel", dur=20)
    return steps(TraceBuilder(device=gpu), body)


def pft201_clean(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("good.py", 6, "class_histogram"):
            compute(b, "aten::zeros", 5)
            compute(b, "aten::scatter_add_", 10)
    return steps(TraceBuilder(device=gpu), body)


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: pft201(True),
    "clean": lambda: pft201_clean(True),
    "cpu": lambda: pft201(False),
}
