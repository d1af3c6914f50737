"""Interval arithmetic, collective overlap, rank skew and collective waits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perftune.engine.testing import TraceBuilder
from perftune.trace import load
from perftune.trace.comm import (
    collective_kind,
    collective_waits,
    comm_overlap,
    covered,
    merge_intervals,
)
from perftune.trace.multirank import straggler_candidate

NCCL = "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm*, unsigned long, ncclWork*)"
GEMM = "ampere_s16816gemm_tf32_128x128_nn"


def test_merge_intervals() -> None:
    s, e = merge_intervals(np.array([5.0, 0.0, 2.0, 10.0]), np.array([7.0, 3.0, 4.0, 11.0]))
    assert s.tolist() == [0.0, 5.0, 10.0] and e.tolist() == [4.0, 7.0, 11.0]
    s, e = merge_intervals(np.empty(0), np.empty(0))
    assert len(s) == 0 and len(e) == 0


intervals = st.lists(st.tuples(st.integers(0, 200), st.integers(1, 40)), min_size=0, max_size=12)


@settings(max_examples=60, deadline=None)
@given(base=intervals, queries=intervals)
def test_covered_matches_a_unit_grid(base: list[tuple[int, int]], queries: list[tuple[int, int]]) -> None:
    bs = np.array([a for a, _ in base], dtype=float)
    be = np.array([a + d for a, d in base], dtype=float)
    ms, me = merge_intervals(bs, be)
    qs = np.array([a for a, _ in queries], dtype=float)
    qe = np.array([a + d for a, d in queries], dtype=float)
    got = covered(ms, me, qs, qe)
    grid = np.zeros(300, dtype=bool)
    for a, d in base:
        grid[a:a + d] = True
    expected = [int(grid[a:a + d].sum()) for a, d in queries]
    assert got.tolist() == pytest.approx(expected)


def test_collective_kinds() -> None:
    assert collective_kind(NCCL) == "all_reduce"
    assert collective_kind("ncclKernel_AllGather_RING_LL_Sum_int8_t") == "all_gather"
    assert collective_kind("ncclDevKernel_ReduceScatter_Sum_bf16_RING_LL") == "reduce_scatter"
    assert collective_kind("ncclKernel_Broadcast_RING_LL_Sum_int8_t") == "broadcast"
    assert collective_kind("ncclDevKernel_SendRecv(ncclDevComm*)") == "send_recv"
    assert collective_kind("void at::native::add_kernel") == "other"


def _job(rank: int, compute_us: float, comm_us: list[float], overlap: bool) -> TraceBuilder:
    b = TraceBuilder(device=True, rank=rank, world_size=2, pid=100 + rank)
    for comm in comm_us:
        with b.step():
            with b.op("aten::mm"):
                b.kernel(GEMM, dur=compute_us)
            if not overlap:
                b.advance(compute_us + 20)
            with b.op("c10d::allreduce_"):
                b.kernel(NCCL, dur=comm, stream=20)
            b.sync(dur=comm + compute_us)
    return b


def test_exposed_communication_is_the_part_no_compute_covers() -> None:
    trace = _job(0, 500.0, [300.0, 300.0], overlap=False).trace()
    steps = comm_overlap(trace)
    assert [round(c.comm_ms, 6) for c in steps] == [0.3, 0.3]
    assert [round(c.exposed_ms, 6) for c in steps] == [0.3, 0.3]
    assert steps[0].by_kind == {"all_reduce": 0.3}
    assert steps[0].kernel_count == 1 and steps[0].exposed_share > 0
    # launched together: the all-reduce (300 µs) runs inside the 500 µs GEMM on another stream
    hidden = comm_overlap(_job(0, 500.0, [300.0], overlap=True).trace())
    assert hidden[0].comm_ms == pytest.approx(0.3)
    assert hidden[0].overlapped_ms == pytest.approx(0.3)
    assert hidden[0].exposed_ms == pytest.approx(0.0)


def test_no_collectives_no_comm_steps() -> None:
    b = TraceBuilder(device=True)
    with b.step(), b.op("aten::mm"):
        b.kernel(GEMM, dur=10)
    trace = b.trace()
    assert comm_overlap(trace) == [] and collective_waits(trace) == []


def test_rank_skew_names_the_straggler(tmp_path: Path) -> None:
    # rank 1 computes 3 ms, rank 0 1 ms; rank 0's all-reduce absorbs the 2 ms difference
    _job(0, 1000.0, [2300.0, 2300.0, 2300.0], overlap=False).write(tmp_path / "rank0.json.gz")
    _job(1, 3000.0, [300.0, 300.0, 300.0], overlap=False).write(tmp_path / "rank1.json.gz")
    trace = load(tmp_path)
    assert trace.rank_ids == (0, 1)
    found = straggler_candidate(trace)  # the one straggler computation (summary and PFT602)
    assert found is not None
    assert (found.rank, found.slowest_in, found.steps) == (1, 3, 3)
    assert found.margin_ms >= 2.0  # at least the 2 ms of compute rank 0 spends waiting


def test_single_rank_waits_from_repeated_collectives() -> None:
    trace = _job(0, 500.0, [300.0, 1300.0, 300.0, 500.0], overlap=False).trace()
    waits = collective_waits(trace)
    assert [round(w.wait_ms, 6) for w in waits] == [0.0, 1.0, 0.0, 0.2]
    assert [w.matched for w in waits] == [1, 1, 1, 1]
    assert straggler_candidate(trace) is None  # one rank: nothing to compare across


def test_middle_is_statistics_median() -> None:
    import random
    import statistics

    from perftune.trace.multirank import _middle

    rng = random.Random(0)
    for n in range(1, 9):
        for _ in range(50):
            floats = [rng.uniform(-1e6, 1e6) for _ in range(n)]
            ints = [rng.randint(-5, 5) for _ in range(n)]
            assert _middle(iter(floats)) == statistics.median(floats)
            got, want = _middle(ints), statistics.median(ints)
            assert got == want and type(got) is type(want)
