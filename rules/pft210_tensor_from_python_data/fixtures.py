"""Fixture traces of PFT210: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft210`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft210`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    compute,
    copy_to_device,
    masked_relabel_clean,
    pycall,
    steps,
)
from perftune.engine.testing import TraceBuilder


def pft210(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b, "aten::linear", 400)
        with b.frame("bad.py", 4, "weighted_loss"):
            with pycall(b, "tensor", "type"):
                b.leaf("aten::empty", dur=1)
                if b.device:
                    copy_to_device(b, 12, "Pageable", non_blocking=False, dims=[3])
                b.leaf("aten::lift_fresh", dur=1)
                b.leaf("aten::detach_", dur=1)
            compute(b, "aten::mul", 10)
            compute(b, "aten::sum", 10)
    return steps(TraceBuilder(device=gpu), body)


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: pft210(True),
    "cpu": lambda: pft210(False),
    "clean": lambda: masked_relabel_clean(True),
}
