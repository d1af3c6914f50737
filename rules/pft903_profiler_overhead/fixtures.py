"""Fixture traces of PFT903: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft903`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft903`; review both diffs.
"""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import (
    Fixture,
)
from perftune.engine.testing import TraceBuilder


def _stacks(deep: bool) -> dict[str, Any]:
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "train_step"):
            for _ in range(200):
                if deep:
                    with b.pycall("torch/nn/modules/module.py(1736): _wrapped_call_impl"), \
                            b.pycall("torch/nn/modules/module.py(1747): _call_impl"), \
                            b.pycall("torch/nn/modules/linear.py(125): forward"), \
                            b.pycall("<built-in function linear>"), \
                            b.pycall("torch/_tensor.py(40): wrapped"), \
                            b.pycall("<built-in method add of Tensor object at 0x7f>"):
                        b.leaf("aten::add", dur=2.0)
                else:
                    b.leaf("aten::add", dur=100.0)
    return b.to_dict()


FIXTURES: dict[str, Fixture] = {
    "with_stack": lambda: _stacks(True),
    "light": lambda: _stacks(False),
}
