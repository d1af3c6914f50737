"""Fixture traces of PFT101: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft101`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft101`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    loader_loop,
)
from perftune.engine.testing import TraceBuilder


def pft101(gpu: bool) -> TraceBuilder:
    return loader_loop(gpu, "bad.py", wait_us=3000, single=True, compute_us=2000)


def pft101_clean(gpu: bool) -> TraceBuilder:
    return loader_loop(gpu, "good.py", wait_us=40, single=False, compute_us=2000)


FIXTURES: dict[str, Fixture] = {
    "cpu": lambda: pft101(False),
    "gpu": lambda: pft101(True),
    "clean": lambda: pft101_clean(True),
}
