"""Fixture traces of PFT204: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft204`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft204`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    compute,
    masked_relabel_clean,
    nonzero,
    steps,
)
from perftune.engine.testing import TraceBuilder


def pft204(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("bad.py", 4, "fill_invalid"):
            compute(b, "aten::lt", 10)
            with b.op("aten::index", input_dims=[[4096], []]):  # fallback[invalid]
                nonzero(b)
            with b.op("aten::index_put_", input_dims=[[4096], [], [512]]), b.op("aten::_index_put_impl_"):
                nonzero(b)
                if b.device:
                    b.kernel("void at::native::index_put_kernel", dur=10)
        with b.frame("bad.py", 10, "replace_kept"), \
                b.op("aten::index_put_", input_dims=[[4096], [], [512]]), b.op("aten::_index_put_impl_"):
            nonzero(b)
    return steps(TraceBuilder(device=gpu), body)


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: pft204(True),
    "cpu": lambda: pft204(False),
    "clean": lambda: masked_relabel_clean(True),
}
