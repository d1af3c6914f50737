"""compare_runs / `perftune diff` logic: step change with spread, ops, findings matching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import BIG, SMALL

from perftune.engine.types import Finding, Location, Severity, Suggestion
from perftune.pipeline import analyze_paths
from perftune.report.compare import compare_runs, match_findings, step_change
from tests.conftest import shared_trace


def finding(code: str, file: str | None = None, line: int | None = None,
            function: str | None = None, saving: float = 1.0) -> Finding:
    return Finding(code=code, name="n", message=f"{code} at {file}:{line}", severity=Severity.WARNING,
                   location=Location(file, line, function), suggestion=Suggestion("fix"),
                   est_saving_ms_per_step=saving)


def test_a_run_against_itself_changes_nothing() -> None:
    analysis = analyze_paths([shared_trace("HolisticTraceAnalysis__nccl_data.json.gz")])
    c = compare_runs(analysis, analysis)
    assert c.steps.ratio == 1.0 and c.steps.delta_ms == 0.0
    assert c.steps.verdict in ("no clear change", "too few steps")
    assert c.slower == () and c.faster == ()
    assert c.fixed == () and c.new == () and len(c.kept) == len(analysis.findings)
    assert all(d.delta_ms == 0 for d in c.breakdown)
    json.dumps(c.to_dict(), allow_nan=False)  # diff.json is strict JSON


def test_bigger_layer_makes_its_matmul_slower(cpu_traces: dict[int, Path]) -> None:
    small = analyze_paths([cpu_traces[SMALL]])
    big = analyze_paths([cpu_traces[BIG]])
    c = compare_runs(small, big, labels=("small", "big"))
    assert c.shapes_matched  # both traces recorded shapes
    gemms = [d for d in c.slower if d.kind == "op" and d.name in ("aten::addmm", "aten::mm", "aten::linear")]
    assert gemms, [d.name for d in c.slower]
    # Matched by name and shape: the hidden size is part of the shape.
    assert any(str(BIG) in (d.shape or "") for d in gemms)
    assert any(str(SMALL) in (d.shape or "") for d in c.faster if d.status == "gone")
    doc = c.to_dict()
    assert doc["a"]["label"] == "small" and doc["b"]["label"] == "big"
    assert doc["slower"][0]["delta_ms"] > 0


def test_step_change_uses_the_spread() -> None:
    slower = step_change([10.0, 10.2, 9.9, 10.1, 10.0], [12.0, 12.3, 11.9, 12.1, 12.2])
    assert slower.verdict == "slower" and slower.ci_low > 1.0
    assert slower.ratio == pytest.approx(12.1 / 10.0)
    faster = step_change([12.0, 12.3, 11.9, 12.1], [10.0, 10.2, 9.9, 10.1])
    assert faster.verdict == "faster" and faster.ci_high < 1.0
    noisy = step_change([10, 14, 9, 13, 11], [11, 13, 10, 14, 10])
    assert noisy.verdict == "no clear change" and noisy.ci_low < 1.0 < noisy.ci_high
    assert step_change([10.0, 11.0], [12.0, 12.0, 12.0]).verdict == "too few steps"
    assert step_change([], [1.0]).verdict == "not measured"


def test_findings_match_by_location_then_function() -> None:
    a = [finding("PFT206", "train.py", 26, "log_step", 2.0),
         finding("PFT202", "train.py", 40, "loss_fn"),
         finding("PFT101"),
         finding("PFT303", "train.py", 73, "main")]
    b = [finding("PFT206", "train.py", 26, "log_step", 0.5),     # same line
         finding("PFT202", "train.py", 44, "loss_fn"),            # moved 4 lines: same function
         finding("PFT101"),                                       # trace-level, no location
         finding("PFT212", "train.py", 41, "loss_fn")]            # new
    changes = {(c.status, c.code): c for c in match_findings(a, b)}
    assert changes[("kept", "PFT206")].matched_by == "location"
    assert (changes[("kept", "PFT206")].a_saving_ms, changes[("kept", "PFT206")].b_saving_ms) == (2.0, 0.5)
    assert changes[("kept", "PFT202")].matched_by == "function"
    assert changes[("kept", "PFT202")].location == "train.py:44"
    assert changes[("kept", "PFT101")].matched_by == "location"
    assert ("fixed", "PFT303") in changes and ("new", "PFT212") in changes
    assert len(changes) == 5
