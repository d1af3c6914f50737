"""Fixture traces of PFT207: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft207`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft207`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    compute,
    cpu_item_clean,
    pycall,
    steps,
)
from perftune.engine.testing import TraceBuilder


def pft207(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        with b.frame("bad.py", 1, "evaluate_step"):
            compute(b, "aten::linear", 400)
            compute(b, "aten::argmax", 10)
            with pycall(b, "cpu"), b.op("aten::to"), b.op("aten::_to_copy"), b.op("aten::copy_"):
                if b.device:
                    b.memcpy("DtoH", nbytes=512, dur=3.0, blocking=True)
                    b.sync()
            with pycall(b, "tolist"):
                b.leaf("aten::resolve_conj", dur=1)
    return steps(TraceBuilder(device=gpu), body)


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: pft207(True),
    "cpu": lambda: pft207(False),
    "clean": lambda: cpu_item_clean(True),
}
