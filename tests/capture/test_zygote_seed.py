"""A launch forked from a zygote sees the script seed torch, as a fresh process does.

The zygote preloads torch._dynamo, which replaces torch.manual_seed by a wrapper calling the
original function directly; the capture's seed hook must still see the call (perftune fix
compares losses only of a script that seeds itself). Real zygote, real capture.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from perftune.capture.parent.measure import MeasureSettings, Side, capture_side, side_zygotes
from perftune.capture.parent.runner import ScriptTarget

SCRIPT = """\
import torch
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
for _ in range(6):
    model(torch.randn(8, 4)).sum().backward()
"""


@pytest.mark.parametrize("reuse", [False, True], ids=["fresh", "zygote"])
def test_the_script_seeding_torch_is_seen(tmp_path: Path, reuse: bool) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    side = Side(name="base", target=ScriptTarget(path=script, args=(), cwd=tmp_path))
    with side_zygotes([side], tmp_path, reuse, []) as pool:
        launcher = pool["base"].command() if reuse else None
        result = capture_side(side, tmp_path / "run", MeasureSettings(warmup=1, steps=3),
                              profile=False, launcher=launcher)
    assert result.ok, result.error
    assert (result.meta.get("launch", {}).get("launcher") == "zygote") is reuse
    assert result.seeded is True
