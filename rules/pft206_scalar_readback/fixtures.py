"""Fixture traces of PFT206: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft206`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft206`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    compute,
    cpu_item_clean,
    item,
    pycall,
    steps,
)
from perftune.engine.testing import TraceBuilder


def pft206(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        with b.frame("bad.py", 1, "train_step"):
            compute(b, "aten::linear", 400)
            compute(b, "aten::mean", 10)
            with pycall(b, "item"):
                item(b)
            with b.op("aten::gt"):
                if b.device:
                    b.kernel("void at::native::compare_kernel", dur=3)
            item(b, truth_test=True)
    return steps(TraceBuilder(device=gpu), body)


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: pft206(True),
    "cpu": lambda: pft206(False),
    "clean": lambda: cpu_item_clean(True),
}
