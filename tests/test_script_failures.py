"""After the script itself fails (a SyntaxError, an argparse error), every command that runs it
shows the script's own error and its exit code, exits 3, and gives no advice about marking steps
(`perftune.step()`) or lowering `--skip`: those are for scripts that run but show no steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FAILURES = {
    "syntax": ("def broken(:\n    pass\n", "SyntaxError", "exit code 1"),
    "argparse": ("import argparse\nparser = argparse.ArgumentParser()\n"
                 "parser.add_argument('--n', type=int, required=True)\nparser.parse_args()\n",
                 "the following arguments are required: --n", "exit code 2"),
}
COMMANDS = {
    "tune": ["--knob", "batch_size=2,4"],
    "gate": ["--against", "HEAD", "--no-explain", "--launches", "2", "--max-launches", "2"],
    "fix": [],
    "baseline": ["--launches", "2", "--no-explain"],
    "calibrate": ["--launches", "2"],
}


# gate, baseline and calibrate share one launch path (capture/parent/measure.py): the quick
# subset runs one of them, and the other two are run with one of the failures (the failure only
# changes what the script prints, which that path hands on unchanged).
CASES = [pytest.param(command, failure, marks=pytest.mark.slow)
         if command in ("baseline", "calibrate") else (command, failure)
         for command in sorted(COMMANDS) for failure in sorted(FAILURES)
         if command not in ("baseline", "calibrate") or failure == "argparse"]


@pytest.mark.parametrize(("command", "failure"), CASES)
def test_a_failing_script_shows_its_error_and_no_step_advice(tmp_path: Path, command: str,
                                                              failure: str) -> None:
    source, message, code = FAILURES[failure]
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "train.py").write_text(source)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=tmp_path, check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY")}
    done = subprocess.run(
        [sys.executable, "-m", "perftune", command, *COMMANDS[command], "--out",
         str(tmp_path / "run"), "train.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    said = done.stdout + done.stderr
    assert done.returncode == 3, said
    assert "perftune: error:" in done.stderr
    assert message in done.stderr and code in done.stderr, done.stderr
    assert "perftune.step()" not in said and "--skip" not in said, said
