"""Fixture traces of PFT209: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft209`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft209`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import Fixture, batch_copy_loop

FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: batch_copy_loop(True, "bad.py", "Pinned", non_blocking=False),
    "cpu": lambda: batch_copy_loop(False, "bad.py", "Pinned", non_blocking=False),
    "clean": lambda: batch_copy_loop(True, "good.py", "Pinned", non_blocking=True),
}
