"""Fixture traces of PFT205: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft205`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft205`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    compute,
    item,
    pycall,
    steps,
)
from perftune.engine.testing import TraceBuilder


def pft205(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("bad.py", 4, "expand_tokens"), pycall(b, "repeat_interleave", "type"), \
                b.op("aten::repeat_interleave", input_dims=[[64], [64], [], []],
                     input_types=["long int", "long int", "", ""], concrete_inputs=["", "", "", ""]):
            compute(b, "aten::cumsum", 5)
            item(b)
            compute(b, "aten::index_select", 10)
    return steps(TraceBuilder(device=gpu), body)


def pft205_clean(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("good.py", 4, "expand_tokens"), pycall(b, "repeat_interleave", "type"), \
                b.op("aten::repeat_interleave", input_dims=[[64], [64], [], []],
                     input_types=["long int", "long int", "", ""],
                     concrete_inputs=["", "", "", "2048"]):
            compute(b, "aten::cumsum", 5)
            compute(b, "aten::index_select", 10)
    return steps(TraceBuilder(device=gpu), body)


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: pft205(True),
    "cpu": lambda: pft205(False),
    "clean": lambda: pft205_clean(True),
}
