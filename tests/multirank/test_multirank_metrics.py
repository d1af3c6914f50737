"""trace.multirank on hand-built jobs whose waits, exposure and straggler are known exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from multirank_helpers import device_rank, host_job, write_ranks

from perftune.documents import document_data
from perftune.engine import analyze
from perftune.pipeline import analyze_paths, selection_from_config, summary_of
from perftune.report.schema import validate_summary
from perftune.trace import load
from perftune.trace import multirank as M
from perftune.trace.model import Trace


def job(tmp_path: Path, compute_us: list[list[float]], **kw: float) -> Trace:
    return load(write_ranks(tmp_path / "job", host_job(compute_us, **kw)))


def test_gloo_collectives_are_matched_across_ranks_and_their_waits_measured(tmp_path: Path) -> None:
    # rank 1 works 5 ms longer every step: rank 0 waits 5 ms at the start of each bucket
    trace = job(tmp_path, [[4000.0, 9000.0]] * 4)
    assert M.comm_source(trace) == {0: "host", 1: "host"}
    calls = M.collective_calls(trace)
    assert len(calls) == 16 and {c.kind for c in calls} == {"all_reduce"}
    assert [(c.step, c.seq) for c in calls if c.rank == 0] == [(k, b) for k in range(4) for b in (0, 1)]
    waits = M.collective_waits(trace)
    assert len(waits) == 8
    for w in waits:
        assert w.last_rank == 1
        assert w.wait_ms[1] == 0.0
        assert w.wait_ms[0] == pytest.approx(5.0, abs=1e-6)
        assert w.dur_ms[1] == pytest.approx(0.5, abs=1e-6)


def test_concurrent_buckets_count_their_wait_once(tmp_path: Path) -> None:
    # two buckets reduced at the same time on two gloo threads, 10 µs apart: the summed wait
    # would be 10 ms, the time actually spent waiting is 5.01 ms
    trace = job(tmp_path, [[4000.0, 9000.0]] * 3)
    rows = {(r.rank, r.step): r for r in M.rank_steps(trace)}
    for step in range(3):
        waiting, last = rows[(0, step)], rows[(1, step)]
        assert waiting.wait_ms == pytest.approx(5.01, abs=1e-6)
        assert waiting.busy_ms == pytest.approx(waiting.dur_ms - 5.01, abs=1e-6)
        assert last.wait_ms == 0.0 and last.busy_ms == last.dur_ms
        assert waiting.calls == waiting.matched == 2
        assert waiting.wait_ms <= waiting.comm_ms <= waiting.dur_ms


def test_host_exposure_subtracts_operators_that_run_during_the_collective(tmp_path: Path) -> None:
    hidden = job(tmp_path / "a", [[4000.0, 9000.0]] * 2, overlap_us=2000.0)
    bare = job(tmp_path / "b", [[4000.0, 9000.0]] * 2)
    for step in range(2):
        h = next(r for r in M.rank_steps(hidden) if r.rank == 0 and r.step == step)
        b = next(r for r in M.rank_steps(bare) if r.rank == 0 and r.step == step)
        assert h.comm_ms == pytest.approx(b.comm_ms, abs=1e-6)
        assert b.exposed_ms == pytest.approx(b.comm_ms, abs=1e-6)  # nothing ran meanwhile
        assert h.exposed_ms == pytest.approx(b.comm_ms - 2.0, abs=1e-6)


def test_the_straggler_is_the_rank_the_others_wait_for(tmp_path: Path) -> None:
    trace = job(tmp_path, [[4000.0, 4000.0, 9000.0]] * 4)
    table = M.steps_across_ranks(trace)
    assert [s.slowest_rank for s in table] == [2, 2, 2, 2]
    assert all(s.busy_skew_ms == pytest.approx(5.01, abs=1e-6) for s in table)
    found = M.straggler(trace)
    assert found is not None and found.rank == 2 and found.slowest_in == found.steps == 4
    assert found.margin_ms == pytest.approx(5.01, abs=1e-6) and found.persistent
    assert found.slowest_counts == {2: 4}


def test_balanced_ranks_have_no_straggler_and_small_jitter_stays_below_the_threshold(
        tmp_path: Path) -> None:
    even = job(tmp_path / "even", [[4000.0, 4000.0]] * 4)
    assert M.straggler(even) is None
    assert all(r.wait_ms == 0.0 for r in M.rank_steps(even))
    # the slowest rank changes from step to step by 0.2 ms: jitter, not a straggler
    jitter = job(tmp_path / "jitter", [[4000.0, 4200.0], [4200.0, 4000.0]] * 2)
    assert M.straggler(jitter) is None
    candidate = M.straggler_candidate(jitter)
    assert candidate is not None and candidate.margin_ms == pytest.approx(0.0, abs=0.21)
    # thresholds: a 5 ms straggler in a 9.8 ms step passes 1 ms / 5 %, not 6 ms or 60 %
    slow = job(tmp_path / "slow", [[4000.0, 9000.0]] * 3)
    assert M.straggler(slow) is not None
    assert M.straggler(slow, min_ms=6.0) is None
    assert M.straggler(slow, min_share=0.6) is None


def test_device_collectives_use_the_nccl_kernels(tmp_path: Path) -> None:
    # rank 1 computes 4 ms per step, rank 0 2 ms; rank 0's all-reduces take 2 ms, rank 1's 1 ms
    folder = write_ranks(tmp_path / "gpu", [device_rank(0, [2000.0] * 3),
                                            device_rank(1, [1000.0] * 3, compute_us=4000.0)])
    trace = load(folder)
    assert M.comm_source(trace) == {0: "device", 1: "device"}
    assert {c.source for c in M.collective_calls(trace)} == {"device"}
    waits = M.collective_waits(trace)
    assert len(waits) == 6 and all(w.last_rank == 1 for w in waits)
    assert all(w.wait_ms[0] == pytest.approx(1.0) for w in waits)
    rank0 = [r for r in M.rank_steps(trace) if r.rank == 0]
    assert all(r.wait_ms == pytest.approx(2.0) and r.comm_ms == pytest.approx(4.0) for r in rank0)
    found = M.straggler(trace)
    assert found is not None and found.rank == 1


def test_different_collectives_at_the_same_position_are_not_compared(tmp_path: Path) -> None:
    builders = host_job([[4000.0, 9000.0]] * 2)
    data = builders[1].to_dict()
    for event in data["traceEvents"]:
        if event.get("name") == "gloo:all_reduce":
            event["name"] = "gloo:broadcast"
    folder = tmp_path / "mismatch"
    builders[0].write(folder / "rank-0.trace.json.gz")
    (folder / "rank-1.trace.json").write_text(json.dumps(data))
    trace = load(folder)
    assert len(M.collective_calls(trace)) == 8
    assert M.collective_waits(trace) == []
    assert all(r.wait_ms == 0.0 and r.matched == 0 for r in M.rank_steps(trace))


def test_one_rank_has_no_multi_rank_section(tmp_path: Path) -> None:
    builders = host_job([[4000.0, 9000.0]] * 2)
    trace = load(builders[0].write(tmp_path / "rank-0.trace.json.gz"))
    assert M.multi_rank_summary(trace) is None
    assert M.steps_across_ranks(trace) == [] and M.straggler_candidate(trace) is None
    assert "multi_rank" not in document_data(summary_of(trace))


def test_summary_section_validates_and_names_the_straggler(tmp_path: Path) -> None:
    folder = write_ranks(tmp_path / "job", host_job([[4000.0, 9000.0]] * 4))
    analysis = analyze_paths([folder], selection_from_config(config={}))
    summary = json.loads(json.dumps(document_data(analysis.summary)))
    parsed = validate_summary(summary)
    section = parsed.multi_rank
    assert section is not None and section.ranks == 2 and section.comm_source == "host"
    assert section.straggler is not None and section.straggler.rank == 1
    assert [r.rank for r in section.per_rank] == [0, 1]
    assert section.per_rank[0].wait_ms_per_step == pytest.approx(5.01, abs=1e-3)
    assert section.per_rank[1].slowest_in_steps == 4 and section.steps_compared == 4
    assert len(section.rank_steps) == 8 and section.collectives.matched == 8
    codes = [f.code for f in analysis.findings]
    assert "PFT602" in codes


def test_summary_straggler_follows_the_pft602_options(tmp_path: Path) -> None:
    folder = write_ranks(tmp_path / "job", host_job([[4000.0, 9000.0]] * 3))
    strict = selection_from_config(config={"rules": {"PFT602": {"min_skew_ms": 20.0}}})
    analysis = analyze_paths([folder], strict)
    section = analysis.summary.ranks_section
    assert section is not None and section.straggler is None
    assert section.largest_margin is not None and section.largest_margin.rank == 1
    assert not [f for f in analysis.findings if f.code == "PFT602"]


def test_pft602_on_a_cpu_job_names_the_rank_and_keeps_its_evidence(tmp_path: Path) -> None:
    trace = job(tmp_path, [[4000.0, 4000.0, 9000.0]] * 4)
    (f,) = [f for f in analyze(trace, select=["PFT602"]) if f.code == "PFT602"]
    assert f.rank == 2 and f.severity.value == "warning"
    assert "rank 2 is the slowest in 4 of 4 steps" in f.message
    assert f.est_saving_ms_per_step == pytest.approx(5.01, abs=1e-3)
    assert f.evidence["slowest_counts"] == {"2": 4} and f.evidence["communication"] == ["host"]
    assert f.evidence["median_by_rank"]["0"]["wait_ms"] == pytest.approx(5.01, abs=1e-3)
    assert not [g for g in analyze(job(tmp_path / "even", [[4000.0] * 3] * 4), select=["PFT602"])
                if g.code == "PFT602"]


def test_pft601_leaves_the_wait_for_a_slower_rank_to_pft602(tmp_path: Path) -> None:
    # rank 0's all-reduces are fully exposed (4 ms per step), half of it waiting for rank 1
    folder = write_ranks(tmp_path / "gpu", [device_rank(0, [2000.0] * 3),
                                            device_rank(1, [1000.0] * 3, compute_us=4000.0)])
    (alone,) = analyze(load(folder / "rank-0.trace.json.gz"), select=["PFT601"])
    assert alone.est_saving_ms_per_step == pytest.approx(4.0)
    trace = load(folder)
    rows = [r for r in M.rank_steps(trace) if r.rank == 0]
    assert all(r.exposed_wait_ms == pytest.approx(2.0) == r.wait_ms for r in rows)
    (together,) = analyze(trace, select=["PFT601"])
    assert together.est_saving_ms_per_step == pytest.approx(2.0)
    assert together.evidence["waiting_for_other_ranks_ms_per_step"] == pytest.approx(2.0)
    assert together.evidence["exposed_ms_per_step_with_waits"] == pytest.approx(4.0)


def test_a_wait_hidden_by_compute_is_not_exposed(tmp_path: Path) -> None:
    # rank 0 computes 2 ms more while its buckets wait: that part of its 5 ms wait is hidden
    trace = job(tmp_path, [[4000.0, 9000.0]] * 2, overlap_us=2000.0)
    for row in (r for r in M.rank_steps(trace) if r.rank == 0):
        assert row.wait_ms == pytest.approx(5.01, abs=1e-6)
        assert row.exposed_wait_ms == pytest.approx(3.01, abs=1e-6)


def test_a_rank_slowest_in_two_of_three_steps_is_not_called_a_straggler(tmp_path: Path) -> None:
    # Two ranks on busy cores take turns being slowest (tests/field/ddp_gloo.py, 3 steps): a
    # large median margin from 2 of 3 steps is chance. The same pattern over 6 steps, or a
    # rank slowest in all 3, is one.
    turns = [[9000.0, 4000.0], [9000.0, 4000.0], [4000.0, 9000.0]]
    few = job(tmp_path / "few", turns)
    candidate = M.straggler_candidate(few)
    assert candidate is not None and candidate.rank == 0 and candidate.slowest_in == 2
    assert M.straggler(few) is None
    assert not [f for f in analyze(few, select=["PFT602"]) if f.code == "PFT602"]
    assert document_data(summary_of(few))["multi_rank"]["straggler"] is None
    more = job(tmp_path / "more", turns * 2)
    assert M.straggler(more) is not None
    assert [f.rank for f in analyze(more, select=["PFT602"]) if f.code == "PFT602"] == [0]
    every = job(tmp_path / "every", [[9000.0, 4000.0]] * 3)
    assert [f.rank for f in analyze(every, select=["PFT602"]) if f.code == "PFT602"] == [0]
    # the option: a user who trusts 3 steps says so
    assert [f.rank for f in analyze(few, select=["PFT602"], options={"PFT602": {"min_steps": 3}})
            if f.code == "PFT602"] == [0]
