"""`perftune fix` verifies "wrap the model in torch.compile" (PFT304's rewrite, a libcst
transform in rules/pft304_host_bound_python_overhead/fix.py): made again on the current source,
measured against the original in real launches, kept only with the same losses."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from fix_helpers import REPO, engine_finding, git_repo, perftune, write_run_dir

from perftune.engine.rewrite import rewrite_source
from perftune.engine.types import Applicability

CHAIN = REPO / "tests" / "tune" / "scripts" / "chain.py"
OPTIMIZER_LINE = "optimizer = torch.optim.SGD(model.parameters(), lr=0.01)"


def _line(text: str, needle: str) -> int:
    return next(k for k, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_the_model_the_optimizer_trains_is_wrapped_after_its_assignment() -> None:
    source = CHAIN.read_text(encoding="utf-8")
    made = rewrite_source("PFT304", source, _line(source, "model(inputs)"))
    assert made is not None and made.applicability is Applicability.UNSAFE
    assert "torch.compile" in made.note
    lines = made.code.splitlines()
    at = lines.index("model = Chain()")
    assert lines[at + 1] == "model = torch.compile(model)"
    assert lines[at + 2] == OPTIMIZER_LINE
    assert len(lines) == len(source.splitlines()) + 1  # one line added, nothing else changed


def test_inside_a_function_the_optimizer_of_that_function_is_used() -> None:
    source = textwrap.dedent("""\
        import torch
        from torch import nn

        def pretrain():
            encoder = nn.Linear(2, 2)
            opt = torch.optim.Adam(encoder.parameters())

        def train(model, loader):
            # the optimizer
            optimizer = torch.optim.AdamW(params=model.parameters(), lr=0.1)
            for batch in loader:
                model(batch)
    """)
    made = rewrite_source("PFT304", source, _line(source, "model(batch)"),
                          {"mode": "reduce-overhead"})
    assert made is not None
    lines = made.code.splitlines()
    # `model` is a parameter: the wrap goes right above the optimizer, below its comment.
    at = lines.index("    # the optimizer")
    assert lines[at + 1] == '    model = torch.compile(model, mode="reduce-overhead")'
    assert lines[at + 2].startswith("    optimizer = torch.optim.AdamW(")
    assert "encoder = torch.compile" not in made.code


@pytest.mark.parametrize("source", [
    # already compiled, either way
    "import torch\nm = torch.nn.Linear(2, 2)\nm = torch.compile(m)\n"
    "o = torch.optim.SGD(m.parameters(), lr=1)\n",
    "import torch\nm = torch.nn.Linear(2, 2)\nm.compile()\no = torch.optim.SGD(m.parameters(), lr=1)\n",
    # no optimizer over NAME.parameters()
    "import torch\nm = torch.nn.Linear(2, 2)\no = torch.optim.SGD(params, lr=1)\n",
    # torch not imported under its own name
    "import torch as T\nm = T.nn.Linear(2, 2)\no = T.optim.SGD(m.parameters(), lr=1)\n",
    "this is not python(\n",
])
def test_no_rewrite_where_the_pattern_is_not_there(source: str) -> None:
    assert rewrite_source("PFT304", source, 2) is None


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_fix_measures_the_compiled_model_and_checks_its_losses(tmp_path: Path) -> None:
    root = git_repo(tmp_path / "repo", {"train.py": CHAIN.read_text(encoding="utf-8"),
                                        ".gitignore": "runs/\n"})
    script = root / "train.py"
    finding = engine_finding("PFT304", script, OPTIMIZER_LINE)
    run = write_run_dir(tmp_path / "profile", script, ["12"], root, [finding])
    out = tmp_path / "out"

    proc = perftune("fix", "--launches", "1", "--warmup", "2", "--steps", "4", "--out", str(out),
                    str(run), cwd=tmp_path, timeout=600)

    assert proc.returncode in (0, 1), proc.stderr + proc.stdout
    doc = json.loads((out / "fix.json").read_text(encoding="utf-8"))
    (rewrite,) = doc["rewrites"]
    assert rewrite["rule"] == "PFT304"
    # Made again by the transformer on the current source (the recorded diff is never used) ...
    assert "+model = torch.compile(model)" in rewrite["diff"]
    # ... and measured: the compiled model trains to the same losses, step by step.
    assert rewrite["losses"] == "match", rewrite["reason"]
    assert rewrite["status"] != "changed-results"
    # Kept or dropped on its measured speed alone (this shared machine decides which).
    assert rewrite["status"] in ("verified", "slower"), rewrite["reason"]
    assert rewrite["in_patch"] == (rewrite["status"] == "verified")
