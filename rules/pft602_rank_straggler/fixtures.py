"""Fixture traces of PFT602: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft602`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft602`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    straggler_rank,
)

FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: straggler_rank(0, 2000, [1000, 1000, 4000, 1000]).to_dict(),
    "clean": lambda: straggler_rank(0, 2000, [1000, 1010, 1000, 1005]).to_dict(),
}
