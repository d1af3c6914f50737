"""Fixture traces of PFT202: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft202`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft202`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    compute,
    masked_relabel_clean,
    nonzero,
    pycall,
    steps,
)
from perftune.engine.testing import TraceBuilder


def pft202(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("bad.py", 6, "relabel_void"):
            compute(b, "aten::clone", 10)
            compute(b, "aten::eq", 10)
            with pycall(b, "nonzero", "type"):
                nonzero(b)
            # target[void] = IGNORE: long indices from nonzero, no second sync
            with b.op("aten::index_put_"), b.op("aten::_index_put_impl_"):
                if b.device:
                    b.kernel("void at::native::index_put_kernel", dur=10)
        with b.frame("bad.py", 13, "masked_mean"):
            compute(b, "aten::ne", 10)
            with b.op("aten::index", input_dims=[[4096], []], input_types=["float", ""]):
                nonzero(b)
                if b.device:
                    b.kernel("void at::native::index_kernel", dur=10)
            with pycall(b, "mean"):
                compute(b, "aten::mean", 10)
    return steps(TraceBuilder(device=gpu), body)


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: pft202(True),
    "cpu": lambda: pft202(False),
    "clean": lambda: masked_relabel_clean(True),
}
