"""Fixture traces of PFT211: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft211`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft211`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    compute,
    cpu_item_clean,
    steps,
)
from perftune.engine.testing import TraceBuilder


def pft211(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        with b.frame("bad.py", 6, "timed_step"):
            compute(b, "aten::linear", 400)
            with b.optimizer_step():
                compute(b, "aten::_foreach_add_", 50)
            with b.pycall("torch/cuda/__init__.py(985): synchronize"):
                if b.device:
                    b.sync("cudaDeviceSynchronize")
    return steps(TraceBuilder(device=gpu), body)


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: pft211(True),
    "cpu": lambda: pft211(False),
    "clean": lambda: cpu_item_clean(True),
}
