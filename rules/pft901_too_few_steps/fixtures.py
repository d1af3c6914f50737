"""Fixture traces of PFT901: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft901`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft901`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    gemm_steps,
)

FIXTURES: dict[str, Fixture] = {
    "one_step": lambda: gemm_steps(1),
    "five_steps": lambda: gemm_steps(5),
}
