"""Fixture traces of PFT102: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft102`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft102`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    STEPS,
    Fixture,
    compute,
)
from perftune.engine.testing import TraceBuilder


def pft102(gpu: bool) -> TraceBuilder:
    b = TraceBuilder(device=gpu)
    with b.frame("bad.py", 4, "make_loader"):
        b.leaf("aten::empty", dur=2)  # the DataLoader is built once, before the loop
    with b.frame("train.py", 10, "<module>"):
        for _ in range(STEPS):
            with b.step():
                with b.dataloader(single_process=True, dur=600):
                    pass
                compute(b, "aten::conv2d", 2000)
    return b


def pft102_clean(gpu: bool) -> TraceBuilder:
    b = TraceBuilder(device=gpu)
    with b.frame("good.py", 4, "make_loader"):
        b.leaf("aten::empty", dur=2)
    with b.frame("train.py", 10, "<module>"):
        for _ in range(STEPS):
            with b.step():
                with b.dataloader(single_process=False, dur=30):
                    pass
                compute(b, "aten::conv2d", 2000)
    return b


FIXTURES: dict[str, Fixture] = {
    "cpu": lambda: pft102(False),
    "clean": lambda: pft102_clean(False),
}
