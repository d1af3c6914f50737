"""torch.compile seen by the capture (issue #18): `perftune profile` on the two compiled samples
records compilation.json (graphs, graph breaks with reason and the user's line, recompilations
with the failed guard, compile time per step and in total); the fixed variants break nothing and
compile once. Real runs: the inductor CPU backend compiles C++ (a compiler must be on PATH)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from capture_helpers import REPO, child_env

from perftune.capture.child.compilation import parse_graph_break
from perftune.documents import CompilationDocument
from perftune.rundir import RunDir

SAMPLES = REPO / "samples"
# Samples of issue #18 and the variants profiled by the tests below.
VARIANTS = {
    "break": ("compiled_graph_break", ()), "break-fixed": ("compiled_graph_break", ("--fixed",)),
    "recompile": ("compiled_recompile", ()), "recompile-fixed": ("compiled_recompile", ("--fixed",)),
}


def marked_line(sample: str, code: str) -> int:
    for number, line in enumerate((SAMPLES / f"{sample}.py").read_text().splitlines(), start=1):
        if re.search(rf"#\s*perftune:.*expect\[{code}\]", line):
            return number
    raise AssertionError(f"{sample}.py has no expect[{code}]")


class _Runs(dict[str, Path]):
    """Each variant profiled (3 warm-up steps, 2 profiled) the first time a test asks for it,
    then shared: a test (or an xdist worker that took some of this module's tests) pays only
    for the variants it reads."""

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.base = base

    def __missing__(self, key: str) -> Path:
        sample, args = VARIANTS[key]
        run_dir = self.base / key
        done = subprocess.run(
            [sys.executable, "-m", "perftune", "profile", "--out", str(run_dir), "--skip", "3",
             "--active", "2", str(SAMPLES / f"{sample}.py"), *args],
            # Forked from the suite's zygote (tests/conftest.py), which imported torch._dynamo
            # before perftune patched nn.Module.__call__: no recompilation may follow from it
            cwd=self.base, env=child_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=600, check=False)
        assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
        self[key] = run_dir
        return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The variants' run directories, each profiled on first use and shared by the tests here."""
    return _Runs(tmp_path_factory.mktemp("compiled"))


def compilation(run_dir: Path) -> CompilationDocument:
    doc = RunDir(run_dir).read_compilation()
    assert doc is not None, f"{run_dir}: no compilation.json"
    return doc


@pytest.mark.slow
def test_graph_break_is_recorded_at_the_users_line_with_its_reason(runs: dict[str, Path]) -> None:
    doc = compilation(runs["break"])
    line = marked_line("compiled_graph_break", "PFT701")
    assert [(Path(b.file or "").name, b.line) for b in doc.graph_breaks] == \
        [("compiled_graph_break.py", line)]
    found = doc.graph_breaks[0]
    assert found.reason == "Data-dependent branching"
    assert found.explanation and "torch.where" in " ".join(found.hints)
    assert found.step == 0 and found.phase == "warmup"
    # the forward split in two graphs with eager code between: the second resumes at the break
    graphs = doc.graphs()
    assert len(graphs) == 2 and all(g.graph_ops for g in graphs)
    assert any(g.code == f"torch_dynamo_resume_in_forward_at_{line}" for g in graphs)
    # perftune's own hooks add no frames or guards, and device provenance (a TorchFunctionMode
    # with a global module hook over the warm-up steps) is off: traced by dynamo it made the
    # forward fall back to eager and recompiled it in the window
    assert not doc.recompiles()
    assert not (runs["break"] / "provenance.json").exists()
    notes = json.loads((runs["break"] / "steps.json").read_text())["notes"]
    assert any("device provenance was not recorded" in n for n in notes)
    # compile time: in total, per step, and which steps still compiled
    assert doc.compiled and doc.total_compile_s > 0
    assert doc.total_compile_s == pytest.approx(
        sum(s.compile_s for s in doc.steps) + doc.outside_steps_s, abs=1e-5)
    assert [s.index for s in doc.steps] == [0] and doc.compile_s_of(0) > 0


@pytest.mark.slow
def test_fixed_graph_break_sample_compiles_one_graph(runs: dict[str, Path]) -> None:
    doc = compilation(runs["break-fixed"])
    assert doc.graph_breaks == [] and not doc.recompiles()
    assert len(doc.graphs()) == 1


@pytest.mark.slow
def test_recompilation_is_recorded_with_the_failed_guard(runs: dict[str, Path]) -> None:
    doc = compilation(runs["recompile"])
    line = marked_line("compiled_recompile", "PFT702")
    recompiles = doc.recompiles()
    assert len(recompiles) == 1
    again = recompiles[0]
    assert "size mismatch at index 1" in (again.recompile_reason or "")
    assert again.call_site is not None and again.call_site.line == line
    assert again.step == 1 and again.phase == "warmup"
    assert [s.index for s in doc.steps] == [0, 1]  # steps 0 and 1 still compiling
    assert doc.graph_breaks == []


@pytest.mark.slow
def test_fixed_recompile_sample_compiles_once(runs: dict[str, Path]) -> None:
    doc = compilation(runs["recompile-fixed"])
    assert not doc.recompiles() and doc.graph_breaks == []
    assert [s.index for s in doc.steps] == [0]


# ---------------------------------------------------------------------------- the rules
def compile_findings(run_dir: Path) -> list[dict[str, object]]:
    findings = json.loads((run_dir / "findings.json").read_text())["findings"]
    return [f for f in findings if str(f["code"]).startswith("PFT7")]


@pytest.mark.slow
@pytest.mark.parametrize(("key", "sample", "code"), [
    ("break", "compiled_graph_break", "PFT701"), ("recompile", "compiled_recompile", "PFT702")])
def test_samples_findings_are_at_their_planted_lines(runs: dict[str, Path], key: str, sample: str,
                                                      code: str) -> None:
    found = [f for f in compile_findings(runs[key]) if f["code"] in ("PFT701", "PFT702")]
    located = {(f["code"], Path(str(f["location"]["file"])).name, f["location"]["line"])  # type: ignore[index]
               for f in found}
    assert located == {(code, f"{sample}.py", marked_line(sample, code))}
    finding = found[0]
    if code == "PFT701":
        assert "Data-dependent branching" in str(finding["message"])
        # the cost measured in the profiled steps: eager code between the two graphs
        assert finding["evidence"]["eager_between_graphs_us_per_step"] > 0  # type: ignore[index]
        assert "torch.where(norm > CLIP" in str(finding["suggestion"]["diff"])  # type: ignore[index]
    else:
        assert "size mismatch at index 1" in str(finding["message"])
        assert "torch._dynamo.mark_dynamic(tokens, 1)" in str(finding["suggestion"]["diff"])  # type: ignore[index]


@pytest.mark.slow
@pytest.mark.parametrize("key", ["break-fixed", "recompile-fixed"])
def test_fixed_samples_have_no_compilation_findings(runs: dict[str, Path], key: str) -> None:
    assert [f for f in compile_findings(runs[key]) if f["code"] in ("PFT701", "PFT702")] == []


# ---------------------------------------------------------------------------- the log's format
# What torch 2.13's `graph_breaks` log artifact hands a handler (TORCH_LOGS=graph_breaks prints it).
_LOGGED = """\
Graph break in user code at /home/u/model.py:35
Graph Break Reason: Encountered graph break when attempting to trace CALL: a function call, e.g. f(x, y):

Unsupported Tensor.item() call with capture_scalar_outputs=False
  Explanation: Dynamo does not support tracing `Tensor.item()` with config.capture_scalar_outputs=False.
  Hint: Set `torch._dynamo.config.capture_scalar_outputs = True` to include these operations.

  Developer debug context: call_method TensorVariable() item () {}

 For more details about this graph break, please visit: https://example.invalid/gb0124.html

User code traceback:
  File "/home/u/train.py", line 58, in main
    loss = loss_fn(compiled(x), y)
  File "/usr/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1789, in _call_impl
    return forward_call(*args, **kwargs)
  File "/home/u/model.py", line 35, in forward
    v = h.mean().item()
  File "/usr/lib/python3.11/site-packages/torch/_tensor.py", line 40, in wrapped
    return f(*args)
"""


def test_a_logged_graph_break_gives_reason_hints_and_the_innermost_user_frame() -> None:
    parsed = parse_graph_break(_LOGGED)
    assert parsed is not None
    reason, explanation, hints, user, traced = parsed
    assert reason == "Unsupported Tensor.item() call with capture_scalar_outputs=False"
    assert explanation is not None and explanation.startswith("Dynamo does not support")
    assert hints == ["Set `torch._dynamo.config.capture_scalar_outputs = True` to include "
                     "these operations."]
    assert (user.file, user.line, user.function) == ("/home/u/model.py", 35, "forward")
    assert traced is not None and traced.line == 35


def test_a_repeated_graph_break_is_parsed_from_its_short_form() -> None:
    short = ("Graph break (user stack suppressed due to duplicate graph break) in user code at "
             "/home/u/model.py:35\nGraph Break Reason: Data-dependent branching\n"
             "  Explanation: Detected data-dependent branching.")
    parsed = parse_graph_break(short)
    assert parsed is not None
    assert parsed[0] == "Data-dependent branching"
    assert parsed[3] is not None and parsed[3].line == 35
    assert parse_graph_break("Step 1: torchdynamo start tracing forward") is None
