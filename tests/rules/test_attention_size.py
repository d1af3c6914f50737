"""PFT402 only at sizes where it matters (issue 13, section 6): hand-written attention that is
a sliver of the step is not worth a rewrite; the same pattern filling the step is reported."""

from __future__ import annotations

from pathlib import Path

from perftune.engine.registry import run_rules, select_rules
from perftune.engine.testing import TraceBuilder
from perftune.trace import load

F32 = "float"
Q, K_T, S = [4, 8, 128, 64], [4, 8, 64, 128], [4, 8, 128, 128]


def _trace(tmp: Path, other_us: float) -> Path:
    """Three steps of two attention layers (2.4 ms) beside `other_us` of convolutions."""
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step(), b.frame("model.py", 10, "forward"):
            b.leaf("aten::conv2d", dur=other_us, input_dims=[[64, 64, 56, 56], [64, 64, 3, 3]],
                   input_types=[F32, F32])
            for _ in range(2):
                b.leaf("aten::matmul", dur=400, input_dims=[Q, K_T], input_types=[F32, F32])
                b.leaf("aten::div", dur=200, input_dims=[S, []], input_types=[F32, "Scalar"])
                b.leaf("aten::softmax", dur=200, input_dims=[S, [], []], input_types=[F32, "Scalar", ""])
                b.leaf("aten::matmul", dur=400, input_dims=[S, Q], input_types=[F32, F32])
    return b.write(tmp / "trace.json.gz")


def _pft402(path: Path) -> list:
    return [f for f in run_rules(load(path), select_rules(select=["PFT402"])) if f.code == "PFT402"]


def test_attention_that_is_a_sliver_of_the_step_is_not_reported(tmp_path: Path) -> None:
    assert _pft402(_trace(tmp_path, other_us=100_000.0)) == []  # 2.4 ms of a 102 ms step


def test_attention_that_fills_the_step_is(tmp_path: Path) -> None:
    (f,) = _pft402(_trace(tmp_path, other_us=1_000.0))  # 2.4 ms of a 3.4 ms step
    assert f.evidence["seq_len"] == 128 and f.evidence["share_of_step"] > 0.5
