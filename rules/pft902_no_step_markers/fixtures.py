"""Fixture traces of PFT902: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft902`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft902`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    gemm_steps,
)

FIXTURES: dict[str, Fixture] = {
    "no_markers": lambda: gemm_steps(3, marked=False),
    "marked": lambda: gemm_steps(3),
}
