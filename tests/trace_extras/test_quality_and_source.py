"""Profiler-overhead measures, steps.json phases, and source-line refinement."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import msgspec
import pytest

from perftune.documents import StepsDocument
from perftune.engine.testing import TraceBuilder
from perftune.trace import load
from perftune.trace.frame_source import (
    frame_site,
    function_body,
    is_elementwise,
    is_matmul,
    is_softmax,
    lines_matching,
)
from perftune.trace.frames import Frame
from perftune.trace.quality_metrics import PhaseTimes, event_density, phase_times


def test_event_density_counts_steps_only() -> None:
    b = TraceBuilder(device=False)
    b.leaf("aten::outside", dur=5)
    for _ in range(2):
        with b.step(), b.pycall("train.py(3): step"), b.pycall("torch/nn/module.py(10): forward"):
            b.leaf("aten::add", dur=10)
            b.leaf("aten::mul", dur=10)
    d = event_density(b.trace())
    assert (d.cpu_ops, d.python_events, d.steps) == (4, 4, 2)
    assert d.python_per_op == 1.0
    assert d.estimated_overhead_us(2.0, 1.0) == 4 * 2.0 + 4 * 1.0
    assert 0 < d.estimated_share() <= 1.0
    assert d.ops_per_ms == pytest.approx(4 / (d.host_span_us / 1000.0))


def _steps_json(path: Path, phases: list[tuple[str, float]]) -> Path:
    steps = [{"index": k, "start_s": float(k), "duration_ms": ms, "phase": phase, "loss": None,
              "samples": None} for k, (phase, ms) in enumerate(phases)]
    path.write_text(json.dumps({"schema_version": 1, "status": "ok", "steps": steps}))
    return path


def read_phase_times(path: Path) -> PhaseTimes | None:
    return phase_times(msgspec.json.decode(path.read_bytes(), type=StepsDocument), path)


def test_phase_times_compare_profiled_and_unprofiled_steps(tmp_path: Path) -> None:
    # only the steps measured after the window compare: warm-up steps do not (one number for
    # the overhead, the one `perftune profile` prints)
    path = _steps_json(tmp_path / "steps.json", [("warmup", 500.0), ("warmup", 5.0), ("profiled", 30.0),
                                                 ("profiled", 32.0), ("profiled", 31.0),
                                                 ("measured", 20.0), ("measured", 21.0),
                                                 ("measured", 20.0)])
    pt = read_phase_times(path)
    assert pt is not None
    assert (pt.profiled_ms, pt.unprofiled_ms) == (31.0, 20.0)
    assert (pt.profiled_steps, pt.unprofiled_steps) == (3, 3)
    assert pt.overhead == pytest.approx(31.0 / 20.0 - 1)
    # a run dir: trace.json.gz next to steps.json
    b = TraceBuilder(device=False)
    with b.step():
        b.leaf("aten::add", dur=5)
    trace = load(b.write(tmp_path / "trace.json.gz"))
    # the engine reads it when it builds the run's analysis context (rules read no files)
    from perftune.engine.context import Context

    found = Context.build(trace).phase_times
    assert found is not None and found.path == path


def test_phase_times_need_both_phases(tmp_path: Path) -> None:
    assert read_phase_times(_steps_json(tmp_path / "a.json", [("profiled", 3.0)])) is None
    assert read_phase_times(_steps_json(tmp_path / "b.json", [("warmup", 9.0), ("profiled", 3.0)])) is None


def test_an_unreadable_steps_json_leaves_the_phase_times_out(tmp_path: Path) -> None:
    from perftune.engine.context import Context

    b = TraceBuilder(device=False)
    with b.step():
        b.leaf("aten::add", dur=5)
    trace = load(b.write(tmp_path / "trace.json.gz"))
    assert Context.build(trace).phase_times is None  # no steps.json
    (tmp_path / "steps.json").write_text("[1, 2")
    assert Context.build(trace).phase_times is None
    (tmp_path / "steps.json").write_text(json.dumps({"steps": "none"}))
    assert Context.build(trace).phase_times is None


SOURCE = '''\
import math


def layer_norm(x, w, b, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


@torch.no_grad()
def attention(q, k, v):
    def inner(t):
        return t @ t
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return scores.softmax(dim=-1) @ v
'''


class _Lookup:
    def __init__(self, text: str) -> None:
        self.text = text

    def tree(self, file: str) -> ast.Module | None:
        return ast.parse(self.text) if file == "m.py" else None

    def line(self, file: str | None, lineno: int | None) -> str | None:
        if file != "m.py" or lineno is None:
            return None
        return self.text.splitlines()[lineno - 1]


def test_lines_matching_and_frame_site() -> None:
    tree = ast.parse(SOURCE)
    ln = Frame("m.py", 4, "layer_norm")
    assert lines_matching(tree, ln, is_elementwise) == [5, 6, 7]
    lookup = _Lookup(SOURCE)
    assert frame_site(lookup, ln, is_elementwise, pick="densest")[1] == 7
    assert frame_site(lookup, ln, is_elementwise, pick="first")[1] == 5
    # decorated function: the profiler's first line is the decorator's
    att = Frame("m.py", 10, "attention")
    body = function_body(tree, att)
    assert body is not None and len(body) == 3
    # the nested function's `t @ t` is another frame and does not count
    assert lines_matching(tree, att, is_matmul) == [14, 15]
    assert lines_matching(tree, att, is_softmax) == [15]
    file, line, function, source = frame_site(lookup, att, is_matmul)
    assert (file, line, function) == ("m.py", 14, "attention")
    assert source is not None and source.strip().startswith("scores = q @ k")
    # no source: the frame's own line
    assert frame_site(lookup, Frame("gone.py", 3, "f"), is_matmul) == ("gone.py", 3, "f", None)
    assert function_body(tree, Frame("m.py", 99, "nowhere")) is None
