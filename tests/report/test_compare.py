"""compare_runs / `perftune diff` logic: step change with spread, ops, findings matching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perftune.analysis.stats import geometric_mean, ratio_interval
from perftune.engine.types import Finding, Location, Severity, Suggestion
from perftune.pipeline import analyze_paths
from perftune.report.compare import compare_runs, match_findings, step_change
from tests.conftest import shared_trace
from tests.report.conftest import BIG, SMALL


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
    # The big layer's GEMM is new in B (its shape was never in A), not "slower than A's".
    assert any(str(BIG) in (d.shape or "") and d.status == "new" for d in gemms)
    assert not any(str(SMALL) in (d.shape or "") for d in gemms)
    # (The small GEMM it replaced is "gone" only when it was above the diff's floor, 0.2 % of a
    # step or 5 µs: a 16-wide GEMM sits at that floor on a quiet machine, so it is not asserted.)
    doc = c.to_dict()
    assert doc["a"]["label"] == "small" and doc["b"]["label"] == "big"
    assert doc["slower"][0]["delta_ms"] > 0


def test_step_change_uses_the_spread() -> None:
    slower = step_change([10.0, 10.2, 9.9, 10.1, 10.0], [12.0, 12.3, 11.9, 12.1, 12.2])
    assert slower.verdict == "slower" and slower.ci_low > 1.0
    # The gate's estimate: the ratio of geometric means.
    assert slower.ratio == pytest.approx(geometric_mean([12.0, 12.3, 11.9, 12.1, 12.2])
                                         / geometric_mean([10.0, 10.2, 9.9, 10.1, 10.0]))
    faster = step_change([12.0, 12.3, 11.9, 12.1], [10.0, 10.2, 9.9, 10.1])
    assert faster.verdict == "faster" and faster.ci_high < 1.0
    noisy = step_change([10, 14, 9, 13, 11], [11, 13, 10, 14, 10])
    assert noisy.verdict == "no clear change" and noisy.ci_low < 1.0 < noisy.ci_high
    assert step_change([10.0, 11.0], [12.0, 12.0, 12.0]).verdict == "too few steps"
    assert step_change([], [1.0]).verdict == "not measured"


def test_step_change_keeps_its_confidence_with_few_steps() -> None:
    # Two runs of the same program: "slower" or "faster" must be called at most about 5 % of
    # the time at 95 % confidence. The bootstrap of medians diff used before called it ~10 % of
    # the time with three steps per run (its resampled medians take only three values).
    rng = np.random.default_rng(1)
    calls = 0
    for _ in range(400):
        a, b = (np.exp(rng.normal(np.log(10.0), 0.05, 3)).tolist() for _ in range(2))
        calls += step_change(a, b).verdict in ("slower", "faster")
    assert calls / 400 <= 0.06


def test_step_change_is_the_gates_statistics() -> None:
    a, b = [10.0, 10.4, 9.8, 10.1], [10.9, 11.2, 10.6, 11.4]
    est = ratio_interval(a, b, 0.95)
    change = step_change(a, b)
    assert (change.ratio, change.ci_low, change.ci_high) == (est.ratio, est.low, est.high)


def test_step_change_skips_steps_that_are_not_step_times() -> None:
    change = step_change([0.0, 10.0, 10.1, 9.9], [10.0, 10.2, 9.8])
    assert change.verdict == "no clear change" and change.ci_low is not None


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
