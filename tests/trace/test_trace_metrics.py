"""metrics.py on exact, hand-checkable cases (times in µs, figures in ms where named so)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from builder import doc, gpu_step, kernel, memcpy, op, runtime, write, x
from hypothesis import given, settings
from hypothesis import strategies as st

from perftune.trace import load, metrics


def _row(trace, name: str) -> int:
    rows = np.flatnonzero(trace.name_isin([name]))
    assert len(rows) == 1, f"{name}: {len(rows)} rows"
    return int(rows[0])


@pytest.fixture
def step_trace(tmp_path: Path):
    return load(write(tmp_path / "t.json", doc(gpu_step(t0=0.0))))


# ---------------------------------------------------------------------------- intervals
def _covered(intervals: list[tuple[int, int]], lo: int | None = None, hi: int | None = None) -> int:
    cells: set[int] = set()
    for s, e in intervals:
        a = s if lo is None else max(s, lo)
        b = e if hi is None else min(e, hi)
        cells.update(range(a, b))
    return len(cells)


interval_lists = st.lists(st.tuples(st.integers(-50, 200), st.integers(0, 80)).map(
    lambda p: (p[0], p[0] + p[1])), max_size=30)


@settings(max_examples=300, deadline=None)
@given(interval_lists)
def test_union_length_counts_overlaps_once(intervals) -> None:
    s = np.array([a for a, _ in intervals], dtype=float)
    e = np.array([b for _, b in intervals], dtype=float)
    assert metrics.union_length(s, e) == _covered(intervals)


@settings(max_examples=300, deadline=None)
@given(interval_lists, st.integers(-60, 150), st.integers(0, 200))
def test_clipped_union_and_gaps_partition_the_window(intervals, lo, width) -> None:
    hi = lo + width
    s = np.array([a for a, _ in intervals], dtype=float)
    e = np.array([b for _, b in intervals], dtype=float)
    busy = metrics.clipped_union(s, e, lo, hi)
    assert busy == _covered(intervals, lo, hi)
    holes = metrics.gaps(s, e, lo, hi)
    assert sum(b - a for a, b in holes) + busy == width
    assert all(lo <= a < b <= hi for a, b in holes)
    assert all(holes[k][1] < holes[k + 1][0] for k in range(len(holes) - 1))


def test_union_length_small_cases() -> None:
    u = metrics.union_length
    assert u(np.array([]), np.array([])) == 0.0
    assert u(np.array([0.0, 5.0]), np.array([10.0, 7.0])) == 10.0  # contained
    assert u(np.array([0.0, 10.0]), np.array([10.0, 20.0])) == 20.0  # touching
    assert u(np.array([0.0, 30.0, 5.0]), np.array([10.0, 40.0, 12.0])) == 22.0
    assert u(np.array([5.0]), np.array([3.0])) == 0.0  # inverted: empty


def test_distribution() -> None:
    d = metrics.Distribution.of([4.0, 1.0, 3.0, 2.0])
    assert (d.count, d.median, d.mean, d.min, d.max) == (4, 2.5, 2.5, 1.0, 4.0)
    assert d.p10 == pytest.approx(1.3) and d.p90 == pytest.approx(3.7)
    assert metrics.Distribution.of([]).count == 0


# ---------------------------------------------------------------------------- steps
def test_step_times(step_trace) -> None:
    df = metrics.step_times(step_trace)
    assert df[["index", "name", "start", "end", "dur_ms"]].values.tolist() == [
        [0, "ProfilerStep#0", 0.0, 1000.0, 1.0]]


def test_step_breakdown_exact(step_trace) -> None:
    (b,) = metrics.step_breakdown(step_trace)
    assert b.dur_ms == 1.0
    assert b.compute_ms == pytest.approx(0.310)   # gemm 300 + add 10
    assert b.memcpy_ms == pytest.approx(0.002)
    assert b.memset_ms == 0.0 and b.communication_ms == 0.0
    assert b.device_busy_ms == pytest.approx(0.312)
    assert b.device_idle_ms == pytest.approx(0.688)
    # Host blocked in the pageable DtoH cudaMemcpyAsync (20) and cudaStreamSynchronize (330).
    assert b.sync_ms == pytest.approx(0.350)
    assert b.kernel_count == 2
    assert b.dataloader_ms == 0.0 and b.optimizer_ms == 0.0


def test_device_time_is_clipped_to_the_step_window(tmp_path: Path) -> None:
    events = [
        x("ProfilerStep#0", 0, 1000, cat="user_annotation"),
        x("ProfilerStep#1", 1000, 1000, cat="user_annotation"),
        runtime("cudaLaunchKernel", 890, 5, 1),
        kernel("long_kernel", 900, 200, 1),          # straddles the boundary
        runtime("cudaLaunchKernel", 1500, 5, 2),
        kernel("ncclKernel_AllReduce_RING", 1600, 100, 2, stream=30),
        runtime("cudaLaunchKernel", 1510, 5, 3),
        kernel("overlapping_compute", 1650, 100, 3),  # overlaps the all-reduce
        x("enumerate(DataLoader)#_MultiProcessingDataLoaderIter.__next__", 950, 100,
          cat="user_annotation"),
        x("Optimizer.step#AdamW.step", 1800, 150, cat="user_annotation"),
    ]
    t = load(write(tmp_path / "t.json", events))
    b0, b1 = metrics.step_breakdown(t)
    assert b0.compute_ms == pytest.approx(0.1) and b1.compute_ms == pytest.approx(0.2)
    assert b1.communication_ms == pytest.approx(0.1)
    assert b1.device_busy_ms == pytest.approx(0.25)  # [1000,1100) ∪ [1600,1750)
    assert b1.device_idle_ms == pytest.approx(0.75)
    assert (b0.kernel_count, b1.kernel_count) == (1, 1)  # by launching step
    assert b0.dataloader_ms == pytest.approx(0.05) and b1.dataloader_ms == pytest.approx(0.05)
    assert b1.optimizer_ms == pytest.approx(0.15)
    assert metrics.device_event_steps(t)[_row(t, "long_kernel")] == 0
    assert metrics.device_busy(t, rank=0, start=1000, end=2000) == pytest.approx(250.0)
    assert metrics.device_busy(t, rank=0, cats={"kernel"}) == pytest.approx(350.0)


def test_cpu_only_trace_has_no_device_idle(tmp_path: Path) -> None:
    t = load(write(tmp_path / "t.json", [x("ProfilerStep#0", 0, 100, cat="user_annotation"),
                                         op("aten::mm", 10, 50)]))
    (b,) = metrics.step_breakdown(t)
    assert (b.device_busy_ms, b.device_idle_ms, b.kernel_count) == (0.0, 0.0, 0)
    assert not t.has_device_activity and t.runtime == "cpu"


def test_device_idle_gaps(step_trace) -> None:
    gaps = metrics.device_idle_gaps(step_trace, rank=0, start=0.0, end=1000.0)
    assert gaps[["start", "end"]].values.tolist() == [[0, 170], [470, 480], [482, 820], [830, 1000]]
    big = metrics.device_idle_gaps(step_trace, rank=0, start=0.0, end=1000.0, min_gap_us=100)
    assert big["dur_us"].tolist() == [170.0, 338.0, 170.0]


# ---------------------------------------------------------------------------- syncs
def test_host_device_syncs_chain_cause_kind(step_trace) -> None:
    syncs = metrics.host_device_syncs(step_trace)
    assert [(s.call, s.kind, s.dur_us, s.step) for s in syncs] == [
        ("cudaMemcpyAsync", "pageable-copy", 20.0, 0),
        ("cudaStreamSynchronize", "stream-sync", 330.0, 0)]
    for s in syncs:
        assert s.op_chain[:-1] == ("aten::item", "aten::_local_scalar_dense")
        assert s.cause == "aten::item"
        assert s.op_row == _row(step_trace, "aten::_local_scalar_dense")
        assert s.frame is None


def test_sync_cause_is_the_op_that_needed_the_value(tmp_path: Path) -> None:
    events = [
        op("aten::index", 0, 100),
        op("aten::nonzero", 5, 90),
        runtime("cudaMemcpyAsync", 10, 5, 1),
        memcpy("DtoH", "Device", "Pinned", 20, 1, 1),
        runtime("cudaStreamSynchronize", 20, 60, 2),
        runtime("cudaDeviceSynchronize", 200, 30, 3),
        op("aten::to", 300, 50),
        op("aten::copy_", 305, 40),
        runtime("cudaMemcpy", 310, 30, 4),
        memcpy("HtoD", "Pageable", "Device", 320, 10, 4),
        runtime("cudaEventSynchronize", 400, 7, 5),
    ]
    t = load(write(tmp_path / "t.json", events))
    by_call = {s.call: s for s in metrics.host_device_syncs(t)}
    # The pinned async copy does not block; its stream sync does.
    assert set(by_call) == {"cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpy",
                            "cudaEventSynchronize"}
    assert by_call["cudaStreamSynchronize"].cause == "aten::nonzero"
    assert by_call["cudaStreamSynchronize"].op_chain == (
        "aten::index", "aten::nonzero", "cudaStreamSynchronize")
    assert by_call["cudaMemcpy"].kind == "blocking-copy"
    assert by_call["cudaMemcpy"].cause == "aten::to"
    assert by_call["cudaDeviceSynchronize"].cause == "cudaDeviceSynchronize"
    assert by_call["cudaDeviceSynchronize"].op_row == -1
    assert t.step_source == "whole-trace" and by_call["cudaDeviceSynchronize"].step == 0
    assert by_call["cudaEventSynchronize"].kind == "event-sync"


# ---------------------------------------------------------------------------- copies
def test_memcpy_kinds_including_pageable(tmp_path: Path) -> None:
    events = [
        runtime("cudaMemcpyAsync", 0, 5, 1), memcpy("HtoD", "Pageable", "Device", 10, 4, 1, 4096),
        runtime("cudaMemcpyAsync", 20, 5, 2), memcpy("HtoD", "Pinned", "Device", 30, 2, 2, 4096),
        runtime("cudaMemcpyAsync", 40, 5, 3), memcpy("DtoD", "Device", "Device", 50, 1, 3, 64),
        runtime("hipMemcpyAsync", 60, 5, 4),
        kernel("CopyDeviceToHost", 70, 3, 4, cat="gpu_memcpy", args={"bytes": 8}),
    ]
    t = load(write(tmp_path / "t.json", events))
    copies = metrics.memcpy_events(t)
    assert copies[["kind", "src", "dst", "bytes", "dur_us"]].values.tolist() == [
        ["HtoD", "Pageable", "Device", 4096, 4.0], ["HtoD", "Pinned", "Device", 4096, 2.0],
        ["DtoD", "Device", "Device", 64, 1.0], ["DtoH", "unknown", "unknown", 8, 3.0]]
    assert [t.name_of(r) for r in copies["launch"]] == ["cudaMemcpyAsync"] * 3 + ["hipMemcpyAsync"]
    pageable = metrics.pageable_copies(t)
    assert pageable["row"].tolist() == [_row(t, "Memcpy HtoD (Pageable -> Device)")]


# ---------------------------------------------------------------------------- data loading
def test_dataloader_waits(tmp_path: Path) -> None:
    events = [
        x("ProfilerStep#0", 0, 1000, cat="user_annotation"),
        x("enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", 10, 300,
          cat="user_annotation"),
        x("ProfilerStep#1", 1000, 1000, cat="user_annotation"),
        x("enumerate(DataLoader)#_MultiProcessingDataLoaderIter.__next__", 1010, 40,
          cat="user_annotation"),
    ]
    t = load(write(tmp_path / "t.json", events))
    waits = metrics.dataloader_waits(t)
    assert waits[["dur_us", "step", "multiprocess"]].values.tolist() == [[300.0, 0, False],
                                                                      [40.0, 1, True]]
    b0, b1 = metrics.step_breakdown(t)
    assert (b0.dataloader_ms, b1.dataloader_ms) == (pytest.approx(0.3), pytest.approx(0.04))


# ---------------------------------------------------------------------------- operators
def test_self_times_and_top_ops(step_trace) -> None:
    top = metrics.top_host_ops(step_trace, n=10)
    # Step annotations (ProfilerStep#N) are not operators: they are never listed.
    assert top[["name", "calls"]].values.tolist()[:1] == [["aten::_local_scalar_dense", 1]]
    assert not top["name"].str.startswith("ProfilerStep").any()
    by_name = top.set_index("name")
    # item 400 - its child op 380.
    assert by_name.loc["aten::item", "self_ms"] == pytest.approx(0.02)
    assert by_name.loc["aten::item", "total_ms"] == pytest.approx(0.4)
    assert by_name.loc["aten::_local_scalar_dense", "self_ms"] == pytest.approx(0.38)
    kernels = metrics.top_kernels(step_trace)
    assert kernels[["name", "calls"]].values.tolist() == [["sm80_xmma_gemm_f32f32_tf32", 1],
                                                          ["vectorized_elementwise_kernel<add>", 1]]
    assert kernels["total_ms"].tolist() == pytest.approx([0.3, 0.01])

