"""Each latent sync of one user function at its own line (issue 13): on a CPU run, device
provenance recorded the calls of `segmentation_loss` in the order they ran (`torch.nonzero` at
:64, then the two boolean-mask indexings `[valid]` at :67); a rule that reports only some of
them (PFT212: the masks feeding the loss) must place its occurrences on their own calls, not
on the first recorded call of the same cause."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_masked_loss_and_nonzero_are_each_at_their_own_line(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "perftune", "profile", "--no-analyze", "--quiet", "--skip", "1",
         "--active", "1", "--out", str(run), str(ROOT / "samples" / "segmentation.py"),
         "--steps", "6"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from perftune.pipeline import RuleSelection, analyze_paths
    from perftune.rundir import RunDir

    findings = analyze_paths(RunDir(run).traces(), RuleSelection(select=("PFT2",)), [ROOT]).findings
    lines = {(f.code, f.location.line) for f in findings
             if (f.location.file or "").endswith("segmentation.py")}
    assert lines == {("PFT203", 55), ("PFT202", 64), ("PFT212", 67)}
    (masked,) = [f for f in findings if f.code == "PFT212"]
    assert masked.count == 2  # both `[valid]` indexings of the loss line, once per step
