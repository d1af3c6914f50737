"""Fixture traces of PFT203: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft203`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft203`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import (
    Fixture,
    compute,
    masked_relabel_clean,
    pycall,
    readback,
    steps,
)
from perftune.engine.testing import TraceBuilder


def pft203(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("bad.py", 6, "class_counts"), \
                b.pycall("torch/_jit_internal.py(627): fn"), \
                b.pycall("torch/functional.py(803): _unique_impl"), pycall(b, "_unique2", "type"), \
                b.op("aten::_unique2", input_dims=[[4096], [], [], []],
                     concrete_inputs=["", "True", "False", "True"]):
            if b.device:
                b.kernel("void at::native::radix_sort_kernel", dur=40)
            readback(b)
        with b.frame("bad.py", 6, "class_counts"):
            compute(b, "aten::zeros", 5)
    return steps(TraceBuilder(device=gpu), body)


FIXTURES: dict[str, Fixture] = {
    "gpu": lambda: pft203(True),
    "cpu": lambda: pft203(False),
    "clean": lambda: masked_relabel_clean(True),
}
