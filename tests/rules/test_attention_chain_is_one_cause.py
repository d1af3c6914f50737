"""The scaling and masking between a hand-written attention's two products are PFT402's (SDPA
fuses them), not also a PFT401 chain at the same line (tests/field/mingpt_callbacks.py: the
`-inf`-masked causal attention got both). The same chain outside an attention stays PFT401's."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from perftune.engine.fixtures import ADD_KERNEL, F32, encode, op_kernel
from perftune.engine.registry import analyze
from perftune.engine.testing import TraceBuilder
from perftune.trace import load

Q = [4, 8, 512, 64]
S = [4, 8, 512, 512]
CHAIN = [("aten::mul", [S, []], [F32, "Scalar"], 300),
         ("aten::add", [S, S], [F32, F32], 300),
         ("aten::masked_fill", [S, S, []], [F32, "bool", "Scalar"], 300),
         ("aten::mul", [S, []], [F32, "Scalar"], 300)]


def _codes(tmp_path: Path, attention: bool) -> set[str]:
    ops = [("aten::matmul", [Q, [4, 8, 64, 512]], [F32, F32], 600), *CHAIN,
           ("aten::softmax", [S, [], []], [F32, "Scalar", ""], 400),
           ("aten::matmul", [S, Q], [F32, F32], 600)] if attention else CHAIN
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("model.py", 1, "attention"):
            for name, dims, types, dur in ops:
                op_kernel(b, name, "ampere_sgemm_128x64_nn" if "matmul" in name else ADD_KERNEL,
                          dur / 10, dims, types)
    path = tmp_path / f"attention{attention}.json.gz"
    path.write_bytes(encode(b.to_dict()))
    return {f.code for f in analyze(load(path), select=["PFT401", "PFT402"])}


def test_the_chain_inside_an_attention_is_the_attentions_finding(tmp_path: Path) -> None:
    assert _codes(tmp_path, attention=True) == {"PFT402"}


def test_the_same_chain_alone_is_a_chain(tmp_path: Path) -> None:
    assert _codes(tmp_path, attention=False) == {"PFT401"}
