"""Fixture traces of PFT209: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft209`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft209`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    STEPS,
    Fixture,
    compute,
    copy_to_device,
    pycall,
)
from perftune.engine.testing import TraceBuilder


def clean(gpu: bool) -> TraceBuilder:
    b = TraceBuilder(device=gpu)
    with b.frame("good.py", 4, "train"):
        for _ in range(STEPS):
            with b.step():
                with b.dataloader(single_process=True, dur=200):
                    pass
                with pycall(b, "to"):
                    copy_to_device(b, 4 * 64 * 3 * 32 * 32, "Pinned", non_blocking=True,
                                   dims=[64, 3, 32, 32])
                with pycall(b, "to"):
                    copy_to_device(b, 8 * 64, "Pinned", non_blocking=True, dims=[64])
                compute(b, "aten::conv2d", 2000)
    return b


def pft209(gpu: bool) -> TraceBuilder:
    b = TraceBuilder(device=gpu)
    with b.frame("bad.py", 4, "train"):
        for _ in range(STEPS):
            with b.step():
                with b.dataloader(single_process=True, dur=200):
                    pass
                with pycall(b, "to"):
                    copy_to_device(b, 4 * 64 * 3 * 32 * 32, "Pinned", non_blocking=False,
                                   dims=[64, 3, 32, 32])
                with pycall(b, "to"):
                    copy_to_device(b, 8 * 64, "Pinned", non_blocking=False, dims=[64])
                compute(b, "aten::conv2d", 2000)
    return b


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: pft209(True),
    "cpu": lambda: pft209(False),
    "clean": lambda: clean(True),
}
