"""PFT210 on `t.new_tensor([...])` in a CPU capture: the new tensor lands on t's device, so it is a
host→device copy of Python data only where t would be on the accelerator (device provenance:
t came from a `.to(device)`), never where t was made on the host."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""\
    import torch
    from torch import nn


    def normalize(batch):
        mean = batch.new_tensor([0.5, 0.4, 0.3]).view(-1, 1, 1)  # on the batch's device
        return batch - mean


    def host_offsets(n):
        base = torch.zeros(n)
        return base.new_tensor([1.0, 2.0, 3.0])  # made on the host, stays there


    def main():
        torch.manual_seed(0)
        device = torch.device("cpu")
        model = nn.Conv2d(3, 4, 3).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(12):
            x = torch.randn(2, 3, 16, 16).to(device)
            loss = model(normalize(x)).mean() + host_offsets(3).sum()
            loss.backward()
            opt.step()
            opt.zero_grad()


    if __name__ == "__main__":
        main()
""")


def test_new_tensor_is_a_hazard_only_on_accelerator_bound_tensors(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from perftune.pipeline import RuleSelection, analyze_paths

    script = tmp_path / "norm.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PERFTUNE_KNOBS"}
    done = subprocess.run([sys.executable, "-m", "perftune", "profile", "--out", str(tmp_path / "run"),
                           str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    lines = SCRIPT.splitlines()
    device_line = next(k for k, t in enumerate(lines, 1) if "on the batch's device" in t)
    host_line = next(k for k, t in enumerate(lines, 1) if "made on the host" in t)
    findings = analyze_paths([tmp_path / "run" / "trace.json.gz"], RuleSelection(select=("PFT210",)),
                             [tmp_path]).findings
    at = {(f.code, f.location.line) for f in findings if Path(f.location.file or "").name == "norm.py"}
    assert ("PFT210", device_line) in at
    assert ("PFT210", host_line) not in at
    (found,) = [f for f in findings if f.location.line == device_line]
    assert found.latent and "new_tensor" in found.message
