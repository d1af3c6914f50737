"""Phases of every step: they partition the step (sum to it) on real traces, and name the work."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from perftune.analysis.phases import PHASES, mean_phases, phases_document, step_phases
from perftune.trace import load
from tests.conftest import shared_trace

SHARED = ["HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json.gz",
          "HolisticTraceAnalysis__df_index_resolver.json.gz",
          "HolisticTraceAnalysis__nccl_data.json.gz",
          "HolisticTraceAnalysis__rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz",
          "HolisticTraceAnalysis__triton_example.json.gz",
          "TraceLens__h100__gaunernst_bert-small-uncased__1016001.json.gz",
          "param__resnet_kineto.json.gz"]
RULE_TRACES = sorted((Path(__file__).resolve().parents[2] / "rules").glob("pft*/*.json.gz"))


def _assert_sums(path: Path) -> list:
    trace = load(path)
    per_step = step_phases(trace)
    assert len(per_step) == len(trace.steps)
    for s in per_step:
        assert set(s.phase_ms) == set(PHASES)
        assert abs(sum(s.phase_ms.values()) - s.dur_ms) <= 0.05 * s.dur_ms + 1e-6, (path.name, s)
        if s.device_ms is not None:
            for p, parts in s.device_ms.items():
                assert abs(sum(parts.values()) - s.phase_ms[p]) <= 1e-6 + 1e-9 * s.dur_ms
    return per_step


@pytest.mark.parametrize("name", SHARED)
def test_phases_sum_to_the_step_on_real_gpu_traces(name: str) -> None:
    _assert_sums(shared_trace(name))


@pytest.mark.parametrize("path", RULE_TRACES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_phases_sum_to_the_step_on_every_fixture_trace(path: Path) -> None:
    _assert_sums(path)


def test_training_traces_have_forward_backward_and_optimizer() -> None:
    """A DDP training step (fwdbwd flows, annotations): forward, backward and optimizer are
    named, and the device's communication lands in backward (DDP's bucketed all-reduce)."""
    per_step = _assert_sums(shared_trace("HolisticTraceAnalysis__nccl_data.json.gz"))
    mean = mean_phases(per_step)
    step = sum(mean.values())
    assert mean["forward"] > 0.2 * step and mean["backward"] > 0.2 * step
    assert mean["optimizer"] > 0
    assert mean["python"] < 0.05 * step
    comm = {p: sum(s.device_ms[p]["communication"] for s in per_step) for p in PHASES}
    assert max(comm, key=comm.__getitem__) == "backward"


def test_dataloader_wait_is_the_data_phase() -> None:
    """param's ResNet run waits for a multi-process DataLoader: the data phase holds it."""
    per_step = _assert_sums(shared_trace("param__resnet_kineto.json.gz"))
    mean = mean_phases(per_step)
    assert mean["data"] == max(mean.values())


def test_phases_document_reports_its_own_error() -> None:
    doc = phases_document(load(shared_trace("HolisticTraceAnalysis__nccl_data.json.gz")))
    assert doc.max_sum_error < 1e-6
    assert [p.name for p in doc.mean] == list(PHASES)
    assert abs(sum(p.share for p in doc.mean) - 1.0) < 1e-6
    assert all(p.device is not None for p in doc.mean)


@pytest.mark.parametrize("name", SHARED)
def test_a_steps_lane_is_its_phases_as_computed_over_every_step(name: str) -> None:
    # phase_segments works on the one step's window (the intervals that reach into it); its
    # lane must still tile the step and carry the time the whole-trace computation gives each
    # phase of that step.
    from perftune.analysis.phases import phase_segments

    trace = load(shared_trace(name))
    per_step = step_phases(trace)
    for k, step in enumerate(trace.steps):
        lane = phase_segments(trace, k)
        assert lane and lane[0][1] == step.start and lane[-1][2] == step.end
        assert all(a[2] == b[1] for a, b in itertools.pairwise(lane))  # contiguous, in time order
        assert all(a[0] != b[0] for a, b in itertools.pairwise(lane))  # neighbours merged
        for phase in PHASES:
            ms = sum(b - a for p, a, b in lane if p == phase) / 1000.0
            assert ms == pytest.approx(per_step[k].phase_ms[phase], rel=1e-9, abs=1e-9), (k, phase)
