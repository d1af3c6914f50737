"""PFT101 names the host function that fills a DataLoader wait (issue 13, section 6), and the
Dataset's `.item()` calls as host overhead in the loader, not a device sync: a real profile
of the corpus's tests/field/getitem_item.py (`num_workers=0`, `label.item()` and a
`torch.rand(1).item()` per sample in `__getitem__`, a costly per-sample transform)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_wait_is_named_after_the_datasets_getitem(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "perftune", "profile", "--no-analyze", "--quiet", "--out", str(run),
         str(ROOT / "tests" / "field" / "getitem_item.py"), "--steps", "8"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from perftune.pipeline import RuleSelection, analyze_paths
    from perftune.rundir import RunDir

    findings = analyze_paths(RunDir(run).traces(), RuleSelection(select=("PFT101", "PFT206")),
                             [ROOT]).findings
    (wait,) = [f for f in findings if f.code == "PFT101"]
    hot = wait.evidence["host_function"]
    assert (hot["function"], Path(hot["file"]).name, hot["line"]) == ("__getitem__", "getitem_item.py", 28)
    assert hot["user_code"] is True and hot["share_of_wait"] >= 0.5
    assert 0 < hot["ms_per_batch"] <= wait.evidence["wait_ms_per_step"] * wait.evidence["steps"]
    # two explicit .item() per sample, 64 samples a batch (and the crop offsets used as ints)
    assert hot["item_calls_per_batch"] >= 128
    assert "__getitem__ (getitem_item.py:28" in wait.message and "not a device sync" in wait.message
    assert "cheaper __getitem__" in wait.suggestion.title
    assert not [f for f in findings if f.code == "PFT206"]  # never reported as a sync
