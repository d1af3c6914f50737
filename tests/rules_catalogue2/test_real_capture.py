"""PFT401/PFT402 on real torch.profiler CPU traces (record_shapes + with_stack) of real code.

The script runs in a subprocess with torch; its trace is analysed without torch. Lines are
checked against the `# expect` markers in the script's source.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perftune.engine.context import Context
from perftune.engine.registry import run_rules, select_rules
from perftune.trace import load

pytest.importorskip("torch")

SCRIPT = textwrap.dedent('''
    import math
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile, schedule


    def gelu(x):
        return 0.5 * x * (1.0 + torch.tanh(0.7978845608 * (x + 0.044715 * x.pow(3))))  # expect PFT401


    def attention(q, k, v):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # expect PFT402
        return scores.softmax(dim=-1) @ v


    def fused(x, q, k, v):
        return F.gelu(x, approximate="tanh"), F.scaled_dot_product_attention(q, k, v)


    def step(x, q, k, v):
        gelu(x)
        attention(q, k, v)
        fused(x, q, k, v)


    x = torch.randn(512, 512)  # a quarter million elements: the CPU floor of PFT401
    q = k = v = torch.randn(2, 2, 256, 32)  # seq 256: the naive attention well above its 3 % floor under load
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_stack=True,
                 schedule=schedule(wait=0, warmup=1, active=3),
                 on_trace_ready=lambda p: p.export_chrome_trace("trace.json")) as prof:
        for _ in range(4):
            step(x, q, k, v)
            prof.step()
''')


def _expected_lines(source: str, code: str) -> list[int]:
    return [n for n, line in enumerate(source.splitlines(), start=1) if f"# expect {code}" in line]


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("capture")
    (folder / "model.py").write_text(SCRIPT)
    result = subprocess.run([sys.executable, "model.py"], cwd=folder, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return folder / "trace.json"


def test_real_cpu_trace_finds_the_chain_and_the_attention(captured: Path) -> None:
    trace = load(captured)
    ctx = Context.build(trace, [captured.parent])  # source: the script's folder
    assert not trace.has_device_activity and len(trace.steps) == 3
    findings = run_rules(ctx, select_rules(select=["PFT401", "PFT402"]), strict=True)
    by_code: dict[str, list[int | None]] = {}
    for f in findings:
        assert f.location.file is not None and f.location.file.endswith("model.py")
        by_code.setdefault(f.code, []).append(f.location.line)
    assert by_code == {"PFT401": _expected_lines(SCRIPT, "PFT401"),
                       "PFT402": _expected_lines(SCRIPT, "PFT402")}
    chain = next(f for f in findings if f.code == "PFT401")
    assert chain.location.function == "gelu" and chain.count == 3
    assert chain.evidence["shape"] == [512, 512] and chain.evidence["dtype"] == "fp32"
    assert chain.location.source is not None and "torch.tanh" in chain.location.source
    attn = next(f for f in findings if f.code == "PFT402")
    assert attn.evidence["scores_shape"] == [2, 2, 256, 256] and attn.evidence["head_dim"] == 32
    assert attn.evidence["ops"][0] == "aten::matmul" and attn.evidence["ops"][-1] == "aten::matmul"
