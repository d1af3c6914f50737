"""Helpers for capture tests: tiny scripts written into tmp_path and `perftune profile` runs.

Every test runs the real thing: a child Python process under the real bootstrap, with the real
torch.profiler. Scripts stay tiny (a Linear layer) so each run is about the cost of importing
torch.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

# A training loop of --steps steps on a Linear layer; `{before_step}` and `{after_step}` are
# spliced into the loop body (indented 4) so tests can plant behaviour at a given step.
TRAIN = """\
import argparse
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=1000)
args = parser.parse_args()
torch.manual_seed(0)
model = torch.nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(4, 8), torch.randn(4, 1)
for step in range(args.steps):
{before_step}
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
{after_step}
print("TRAINING DONE", flush=True)
"""


def train_script(before_step: str = "", after_step: str = "", header: str = "") -> str:
    def indent(code: str) -> str:
        return textwrap.indent(textwrap.dedent(code).strip("\n"), "    ") if code else "    pass"

    return textwrap.dedent(header) + TRAIN.format(
        before_step=indent(before_step), after_step=indent(after_step)
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PERFTUNE_KNOBS", None)
    env.update(extra)
    return env


def fresh_env(**extra: str) -> dict[str, str]:
    """child_env without the suite's zygote (tests/conftest.py): a `perftune profile` launch
    that starts a new python."""
    env = child_env(**extra)
    env.pop("PERFTUNE_ZYGOTE", None)
    return env


@dataclass
class Profiled:
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path

    @property
    def steps(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.run_dir / "steps.json").read_text())
        return data

    @property
    def meta(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.run_dir / "meta.json").read_text())
        return data

    def trace(self) -> dict[str, Any]:
        with gzip.open(self.run_dir / "trace.json.gz", "rt", encoding="utf-8") as fh:
            data: dict[str, Any] = json.load(fh)
        return data


def profile_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "perftune", "profile", *args]


@pytest.fixture
def profile(tmp_path: Path) -> Callable[..., Profiled]:
    """Run `perftune profile --no-analyze --out RUN ARGS...` and return what it left behind."""

    def run(
        *args: str,
        cwd: Path | None = None,
        out: Path | None = None,
        timeout: float = 300,  # an upper bound for a busy runner, not a speed
        stdin: str | None = None,
        analyze: bool = False,
    ) -> Profiled:
        run_dir = out or tmp_path / "run"
        flags = ["--out", str(run_dir)] + ([] if analyze else ["--no-analyze"])
        done = subprocess.run(
            profile_command(*flags, *args),
            cwd=cwd or tmp_path,
            env=child_env(),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Profiled(done.returncode, done.stdout, done.stderr, run_dir)

    return run
