"""Evaluation loops the profiled window did not cover are named (capture/child/evalscan)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perftune.capture.child.evalscan import evaluation_loops

ROOT = Path(__file__).resolve().parents[2]


def test_evaluation_loops_are_read_from_the_syntax() -> None:
    source = textwrap.dedent("""
        import torch

        def train(model, batches, opt):
            model.train()
            for x in batches:              # 6: training (backward, step)
                model(x).sum().backward()
                opt.step()

        def validate(model, batches):
            model.eval()
            total = 0.0
            for x in batches:              # 13: after .eval()
                total += model(x).sum().item()
            return total

        @torch.inference_mode()
        def predict(model, batches):
            return [model(x) for x in batches] + [model(x) for x in range(2) for _ in batches]

        def test(model, batches):
            with torch.no_grad():
                for x in batches:          # 23: under no_grad
                    for y in x:            #     inside it: the same loop
                        model(y)

        def clip(model):
            with torch.no_grad():
                for p in model.parameters():   # 29: a walk over the parameters: not evaluation
                    p.clamp_(-1, 1)

        def noisy_train(model, batches, opt):
            with torch.no_grad():
                pass
            for x in batches:              # 35: not under no_grad, no .eval() before: not eval
                model(x)
    """)
    loops = evaluation_loops(source)
    assert [(loop.line, loop.why) for loop in loops] == [
        (13, "model.eval()"), (23, "torch.no_grad()")]
    assert evaluation_loops("def broken(:\n") == []


def _profile(tmp_path: Path, body: str, *args: str) -> tuple[str, dict]:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(body), encoding="utf-8")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "perftune", "profile", "--no-analyze",
                           "--skip", "2", "--active", "2", "--out", str(out), str(script), *args],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    steps = json.loads(next(out.rglob("steps.json")).read_text(encoding="utf-8"))
    return done.stdout + done.stderr, steps


TRAIN_THEN_EVALUATE = """
    import sys
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(torch.randn(16, 32), torch.randint(0, 4, (16,))) for _ in range(4)]
    per_epoch = int(sys.argv[1])
    for epoch in range(3):
        model.train()
        for i in range(per_epoch):
            x, y = batches[i % 4]
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in batches:
                correct += (model(x).argmax(1) == y).sum().item()
"""


@pytest.mark.slow
def test_an_evaluation_after_the_window_is_named_in_the_run(tmp_path: Path) -> None:
    # 50 training batches per epoch: the window (steps 2-3) ends long before the evaluation
    out, steps = _profile(tmp_path, TRAIN_THEN_EVALUATE, "50")
    note = next((n for n in steps["notes"] if "evaluation loop" in n), None)
    assert note is not None, steps["notes"]
    assert "train.py:22 (under torch.no_grad())" in note and "did not cover" in note
    assert "evaluation loop at train.py:22" in out  # the terminal summary says it too


@pytest.mark.slow
def test_a_window_that_ran_the_evaluation_says_nothing(tmp_path: Path) -> None:
    # 2 training batches per epoch: the evaluation runs between the profiled steps
    _out, steps = _profile(tmp_path, TRAIN_THEN_EVALUATE, "2")
    assert not [n for n in steps["notes"] if "evaluation loop" in n], steps["notes"]
