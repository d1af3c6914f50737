"""Savings that can be true (issue 13, section 4): bounded by the step, one cause counted once,
the headline a union, a sync whose removal moves the wait says so."""

from __future__ import annotations

import pytest

from perftune.engine.fixtures import NCCL_ALLREDUCE, batch_copy_loop, compute
from perftune.engine.registry import run_rules, select_rules
from perftune.engine.savings import headline_ms
from perftune.engine.testing import TraceBuilder
from perftune.trace import load
from tests.conftest import shared_trace, shared_trace_names

REAL = shared_trace_names()


def _all(trace):
    return run_rules(trace, select_rules(preview=True), strict=True)


def _mean_step_ms(trace) -> float:
    return sum(s.dur for s in trace.steps) / len(trace.steps) / 1000.0


def test_pageable_blocking_copies_are_one_cause_with_one_saving() -> None:
    trace = batch_copy_loop(True, "train.py", "Pageable", non_blocking=False).trace()
    found = _all(trace)
    copies = [f for f in found if f.code in ("PFT208", "PFT209") and f.location.line == 4]
    assert {f.code for f in copies} == {"PFT208", "PFT209"}
    for f in copies:
        other = "PFT209" if f.code == "PFT208" else "PFT208"
        assert any(s.startswith(other) for s in f.evidence["same_cause_as"])
    # the headline counts the copies' time once
    saving = max(f.est_saving_ms_per_step for f in copies)
    assert headline_ms(copies) == pytest.approx(saving)
    assert headline_ms(found, _mean_step_ms(trace)) <= _mean_step_ms(trace)


@pytest.mark.parametrize("name", REAL)
def test_no_saving_and_no_headline_above_the_step_on_real_traces(name: str) -> None:
    trace = load(shared_trace(name))
    found = _all(trace)
    if not trace.steps:
        return
    step = _mean_step_ms(trace)
    for f in found:
        assert f.est_saving_ms_per_step <= step + 1e-6, (f.code, f.est_saving_ms_per_step, step)
    assert headline_ms(found, step) <= step + 1e-6
    for f in found:
        share = f.evidence.get("exposed_share_of_step")
        assert share is None or share <= 1.0


def test_the_dataloader_wait_and_the_idle_it_causes_are_counted_once() -> None:
    trace = load(shared_trace("param__resnet_kineto.json.gz"))
    found = _all(trace)
    idle = next(f for f in found if f.code == "PFT301")
    wait = next(f for f in found if f.code == "PFT101")
    # fixing the wait gives back at most the device's idle time
    assert wait.est_saving_ms_per_step <= idle.est_saving_ms_per_step + 1e-6
    assert any(s.startswith("PFT101") for s in idle.evidence["includes"])
    step = _mean_step_ms(trace)
    naive = sum(f.est_saving_ms_per_step for f in found)
    assert headline_ms(found, step) < naive
    assert headline_ms(found, step) <= step


def test_a_sync_followed_by_another_moves_the_wait_and_says_so() -> None:
    trace = load(shared_trace("HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json.gz"))
    found = _all(trace)
    item = next(f for f in found if f.code == "PFT206")
    assert item.evidence["wait_moves_to"].startswith("PFT211")
    assert "moves the wait to the next sync" in item.message
    assert item.est_saving_ms_per_step == pytest.approx(item.evidence["device_idle_after_ms_per_step"], abs=1e-4)


def test_the_last_sync_of_a_step_keeps_its_whole_stall() -> None:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("train.py", 9, "train"):
            compute(b, "aten::mm", 3000)
            with b.op("aten::item"), b.op("aten::_local_scalar_dense"):
                b.memcpy("DtoH", nbytes=4, dur=2.0)
                b.sync()
    found = [f for f in _all(b.trace()) if f.code == "PFT206"]
    assert found and "wait_moves_to" not in found[0].evidence


def test_exposed_communication_is_never_more_than_the_step() -> None:
    # Collectives queued late in a short host step run long past its end on the device.
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("train.py", 5, "train"):
            compute(b, "aten::mm", 50)
            with b.op("c10d::allreduce_"):
                b.kernel(NCCL_ALLREDUCE, dur=5000.0, stream=20, grid=(2, 1, 1), block=(512, 1, 1))
    found = [f for f in _all(b.trace()) if f.code == "PFT601"]
    for f in found:
        assert f.evidence["exposed_share_of_step"] <= 1.0
        assert f.est_saving_ms_per_step <= f.evidence["step_ms"] + 1e-6


def test_the_report_headline_is_the_union_never_above_the_step() -> None:
    from perftune.pipeline import analyze_paths
    from perftune.report.data import view_of_analysis

    analysis = analyze_paths([shared_trace("param__resnet_kineto.json.gz")])
    view = view_of_analysis(analysis, None)
    step = view.summary.steps.mean_ms
    naive = sum(f.est_saving_ms_per_step for f in view.findings)
    assert view.total_saving_ms <= step
    assert view.total_saving_ms < naive


def test_the_terminal_says_which_findings_share_one_saving() -> None:
    from perftune.report.console import finding_lines

    trace = batch_copy_loop(True, "train.py", "Pageable", non_blocking=False).trace()
    lines = finding_lines(_all(trace), top=20)
    assert any("same cause as PFT209" in line and "counted once" in line for line in lines)
