"""The num_threads knob: injected before the script runs, and the script's own
torch.set_num_threads call does not undo it (the tuner measures the knob's value)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from perftune.capture.parent.knobs import validate
from perftune.capture.parent.runner import CaptureOptions, ScriptTarget, run_capture
from perftune.errors import ConfigError

SCRIPT = textwrap.dedent("""\
    import json, os, sys
    import torch

    torch.set_num_threads(1)
    seen = []
    w = torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    for _ in range(4):
        opt.zero_grad()
        (w * 2).sum().backward()
        opt.step()
        seen.append(torch.get_num_threads())
    with open(os.environ["THREADS_OUT"], "w") as fh:
        json.dump(seen, fh)
""")


def test_num_threads_knob_overrides_the_scripts_setting(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    script = tmp_path / "threads.py"
    script.write_text(SCRIPT)
    out = tmp_path / "seen.json"
    result = run_capture(ScriptTarget(path=script, cwd=tmp_path), tmp_path / "run",
                         CaptureOptions(skip=1, active=2, profile=False, knobs={"num_threads": 2},
                                        quiet=True, env={"THREADS_OUT": str(out)},
                                        inject_report=tmp_path / "injectors.json", full=True))
    assert result.status == "ok", result.error
    assert set(json.loads(out.read_text())) == {2}
    report = json.loads((tmp_path / "injectors.json").read_text())
    assert report["num_threads"]["value"] == 2
    assert report["num_threads"]["script_calls"][0]["requested"] == 1
    assert report["num_threads"]["script_calls"][0]["where"].endswith("threads.py:4")


def test_num_threads_values_are_positive_integers() -> None:
    assert validate("num_threads", 4) == 4
    for bad in (0, -1, "4", 2.5, True):
        with pytest.raises(ConfigError):
            validate("num_threads", bad)
