"""The child spec: the one document the parent tells the child what to do in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from capture_helpers import child_env, write

from perftune.capture import CaptureOptions, ScriptTarget, run_capture
from perftune.capture.parent.spec import SPEC_ENV, ChildSpec, take_spec, write_spec

REPO = Path(__file__).resolve().parents[2]

SHOW_ENVIRONMENT = """\
import json, os, sys
import torch
model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(4):
    model(torch.randn(3, 2)).sum().backward()
    opt.step()
    opt.zero_grad()
with open(sys.argv[1], "w") as fh:
    json.dump({k: v for k, v in os.environ.items() if k.startswith("PERFTUNE_")}, fh)
"""


def test_a_spec_round_trips_and_leaves_the_environment(tmp_path: Path) -> None:
    spec = ChildSpec(path="train.py", module=None, args=("--lr", "0.1"), skip=2, active=3,
                     run_dir=str(tmp_path), knobs={"lr": 0.1}, inject=("precision",), seed=7,
                     parent_pid=1234)
    write_spec(tmp_path / "spec.json", spec)
    environ = {SPEC_ENV: str(tmp_path / "spec.json"), "OTHER": "x"}
    assert take_spec(environ) == spec
    assert environ == {"OTHER": "x"}
    assert take_spec(environ) is None


def test_the_script_sees_only_perftune_knobs(tmp_path: Path) -> None:
    """Everything else the parent says (injectors, seed, pid, where results go) is in the
    spec, which the child takes out of the environment before the script runs."""
    script = write(tmp_path / "train.py", SHOW_ENVIRONMENT)
    seen = tmp_path / "seen.json"
    options = CaptureOptions(skip=1, active=2, profile=False, full=True, quiet=True,
                             knobs={"lr": 0.5}, inject=("precision",),
                             inject_report=tmp_path / "injectors.json", seed=3,
                             memory_budget=1 << 30)
    result = run_capture(ScriptTarget(path=script, args=(str(seen),), cwd=tmp_path),
                         tmp_path / "run", options)
    assert result.status == "ok", result.error
    assert json.loads(seen.read_text()) == {"PERFTUNE_KNOBS": json.dumps({"lr": 0.5})}
    assert json.loads((tmp_path / "injectors.json").read_text())["applied"] == []
    assert not (tmp_path / "run" / ".capture-spec.json").exists()


def test_an_unreadable_spec_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "spec.json").write_text('{"path": 3}')
    proc = subprocess.run([sys.executable, "-m", "perftune.capture.child.bootstrap"],
                          cwd=tmp_path, env=child_env(**{SPEC_ENV: str(tmp_path / "spec.json"),
                                                         "PYTHONPATH": str(REPO)}),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.startswith("perftune: error: cannot read the capture's child spec")
    assert "Traceback" not in proc.stderr
