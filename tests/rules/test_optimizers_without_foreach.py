"""PFT303 on torch.optim optimizers with no multi-tensor implementation (tests/field/
lbfgs_sequence.py: L-BFGS's step, which also runs the closure's forward and backward, was
told to use "its multi-tensor or fused implementation" and called "not a torch.optim
optimizer"). A custom optimizer looping over parameters is still reported."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from perftune.engine.fixtures import encode
from perftune.engine.registry import analyze
from perftune.engine.testing import TraceBuilder
from perftune.trace import load


def _pft303(tmp_path: Path, cls: str) -> list:
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step(), b.frame("train.py", 1, "train_step"):
            b.leaf("aten::linear", dur=800)
            with b.optimizer_step(cls):
                for _ in range(60):  # 30 parameters, two elementwise ops each
                    b.leaf("aten::mul_", dur=8)
                    b.leaf("aten::add_", dur=8)
    path = tmp_path / f"{cls}.json.gz"
    path.write_bytes(encode(b.to_dict()))
    return analyze(load(path), select=["PFT303"])


@pytest.mark.parametrize("cls", ["LBFGS", "SparseAdam"])
def test_nothing_to_switch_to_is_not_a_finding(tmp_path: Path, cls: str) -> None:
    assert _pft303(tmp_path, cls) == []


def test_a_custom_per_parameter_optimizer_still_is(tmp_path: Path) -> None:
    (finding,) = _pft303(tmp_path, "MyLion")
    assert "generic advice" in finding.suggestion.title
