"""The compute-bound advice (PFT507-PFT510) on real CPU traces: `perftune profile` on tiny
scripts. A compute-bound NCHW fp32 convolution step on one thread gets the advice the machine
allows; the same step in channels_last under bf16 autocast, and a Python-bound step, get none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from perftune.analysis.efficiency import host_facts, threads_oversubscribed
from perftune.trace import load

ROOT = Path(__file__).resolve().parents[2]
ADVICE = {"PFT507", "PFT508", "PFT509", "PFT510"}

CONV = textwrap.dedent("""\
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    torch.set_num_threads(1)
    CHANNELS_LAST = {channels_last}
    AUTOCAST = {autocast}


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
                                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU())
            self.head = nn.Linear(64, 10)

        def forward(self, x):
            return self.head(self.features(x).mean((2, 3)))


    model = Net()
    if CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(8, 3, 24, 24)
    if CHANNELS_LAST:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (8,))
    for _ in range(6):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=AUTOCAST):
            out = model(x)
        loss = nn.functional.cross_entropy(out.float(), y)
        loss.backward()
        opt.step()
""")

PYTHON_BOUND = textwrap.dedent("""\
    import torch

    torch.set_num_threads(1)
    w = torch.zeros(4, 4, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    for _ in range(6):
        opt.zero_grad()
        loss = (torch.ones(2, 4) @ w).sum()
        total = 0.0
        for k in range(20000):  # Python between ops fills the step
            total += k * 0.5
        loss.backward()
        opt.step()
""")


def _profile(tmp_path: Path, name: str, source: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    pytest.importorskip("torch")
    script = tmp_path / f"{name}.py"
    script.write_text(source)
    out = tmp_path / f"run-{name}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PERFTUNE_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "perftune", "profile", "--out", str(out), "--skip", "2",
                           "--active", "2", str(script)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    # What the rules read: the host facts and what the window saw of other processes.
    host = host_facts(load(out / "trace.json.gz"))
    assert host is not None
    findings = json.loads((out / "findings.json").read_text())["findings"]
    summary = json.loads((out / "summary.json").read_text())
    return host, findings, summary


def test_compute_bound_nchw_fp32_step_on_one_thread(tmp_path: Path) -> None:
    host, findings, summary = _profile(tmp_path, "conv", CONV.format(channels_last=False, autocast=False))
    codes = {f["code"] for f in findings}
    # The capture recorded what the advice needs: the thread count set by the script and the
    # cores the process may use.
    assert host["torch_threads"] == 1
    assert host["usable_cores"] == len(os.sched_getaffinity(0))
    if threads_oversubscribed(host):
        # Other processes took the cores during the window (a parallel test run): the step
        # only looks compute-bound, and the compute advice says nothing.
        assert not {"PFT507", "PFT508"} & codes, codes
        return
    assert "PFT508" in codes  # NCHW convolutions dominate a compute-bound step
    # Under-use is claimed only when the spare cores are free (the machine's load, recorded
    # with the counts, leaves at least one core to this process's extra threads).
    spare = host["usable_cores"] - 1 - max(0.0, (host["loadavg"] or 0.0) - 1)
    if host["usable_cores"] > 1 and spare >= 1.0:
        thread = next(f for f in findings if f["code"] == "PFT510")
        assert thread["evidence"]["torch_threads"] == 1
        assert "set_num_threads" in thread["suggestion"]["title"]
        assert thread["location"]["line"] == 5  # the script's torch.set_num_threads(1)
        assert thread["suggestion"]["knobs"] == {"num_threads": sorted({1, host["usable_cores"]})}
    else:
        assert "PFT510" not in codes
    fast_bf16 = {"amx_bf16", "avx512_bf16"} & set(host["cpu_flags"])
    assert ("PFT507" in codes) == bool(fast_bf16)
    if fast_bf16:
        precision = next(f for f in findings if f["code"] == "PFT507")
        assert precision["suggestion"]["knobs"] == {"precision": ["fp32", "bf16"]}
        assert precision["est_saving_ms_per_step"] < precision["evidence"]["fp32_matrix_ms_per_step"]
        # Where autocast goes: the model's call in the training loop, not `def forward`.
        assert precision["location"]["line"] == 32
    assert "PFT509" not in codes  # one CPU trace cannot show per-sample cost falling with batch
    channels = next(f for f in findings if f["code"] == "PFT508")
    # The line an expert changes: the model's call in the training loop (its input to
    # channels_last there; the model through its name), not the `def forward` the profiler names.
    assert channels["location"]["line"] == 32 and channels["location"]["file"].endswith("conv.py")
    assert channels["location"]["source"].strip() == "out = model(x)"
    # Each saving is bounded by the step.
    step = summary["phases"]["step_ms"] if "step_ms" in summary.get("phases", {}) else None
    for f in findings:
        if f["code"] in ADVICE and step:
            assert f["est_saving_ms_per_step"] <= step
    # The module view names the modules by attribute path.
    assert summary["modules"]["names"] == "attribute"
    assert summary["modules"]["modules"][0]["path"].startswith("Net.features.")


def test_channels_last_under_autocast_gets_no_layout_or_precision_advice(tmp_path: Path) -> None:
    _, findings, _ = _profile(tmp_path, "fixed", CONV.format(channels_last=True, autocast=True))
    codes = {f["code"] for f in findings}
    assert not codes & {"PFT507", "PFT508", "PFT509"}, codes


def test_python_bound_step_gets_no_compute_advice(tmp_path: Path) -> None:
    _, findings, _ = _profile(tmp_path, "python_bound", PYTHON_BOUND)
    assert not {f["code"] for f in findings} & ADVICE
