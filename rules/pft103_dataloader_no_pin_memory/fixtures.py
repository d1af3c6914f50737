"""Fixture traces of PFT103: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft103`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft103`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    loader_loop,
)
from perftune.engine.testing import TraceBuilder


def pft103(gpu: bool) -> TraceBuilder:
    return loader_loop(gpu, "bad.py", wait_us=50, single=False, compute_us=3000, copies="Pageable")


def pft103_clean(gpu: bool) -> TraceBuilder:
    return loader_loop(gpu, "good.py", wait_us=50, single=False, compute_us=3000, copies="Pinned")


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: pft103(True),
    "clean": lambda: pft103_clean(True),
    "cpu": lambda: pft103(False),
}
