"""Device idle gaps and their causes, tiny kernels, host overhead — on built traces."""

from __future__ import annotations

import pytest

from perftune.engine.testing import TraceBuilder
from perftune.trace.idle_metrics import host_overhead, idle_gaps, step_idle, tiny_kernels

GEMM = "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64"


def test_input_gap_is_blamed_on_the_dataloader() -> None:
    b = TraceBuilder(device=True)
    with b.step():
        with b.dataloader(dur=1000):
            pass
        with b.op("aten::mm"):
            b.kernel(GEMM, dur=200)
        b.sync()  # the step waits for its kernel, so all of it lies inside the step
    trace = b.trace()
    (s,) = step_idle(trace)
    gaps = idle_gaps(trace)
    assert gaps[0].cause == "input" and gaps[0].start == 0.0
    # 1000 µs loading and the launch before the kernel starts, 200 µs busy, then the sync returns
    assert gaps[0].dur == pytest.approx(1007.0)
    assert s.busy_ms == pytest.approx(0.2)
    assert s.idle_ms == pytest.approx(s.dur_ms - 0.2)
    assert s.by_cause["input"] == pytest.approx(1.007)


def test_sync_gap_starts_where_the_sync_returns() -> None:
    b = TraceBuilder(device=True)
    with b.step():
        with b.op("aten::mm"):
            b.kernel(GEMM, dur=300)
        with b.op("aten::item"):
            b.sync()
        b.advance(400)  # host work after the sync: the drained device waits for it
        with b.op("aten::mm"):
            b.kernel(GEMM, dur=300)
    trace = b.trace()
    gaps = [g for g in idle_gaps(trace) if g.cause == "sync"]
    assert len(gaps) == 1
    assert gaps[0].dur > 400
    assert trace.name_of(gaps[0].host_row) == "cudaStreamSynchronize"


def test_launch_host_and_dependency_gaps() -> None:
    b = TraceBuilder(device=True)
    with b.step():
        with b.op("aten::add"):
            b.kernel("k1", dur=2, launch_dur=4)
        with b.op("aten::add"):
            b.kernel("k2", dur=2, launch_dur=4)  # a few µs after k1: launch-bound gap
        b.advance(200)
        with b.op("aten::add"):
            b.kernel("k3", dur=2, launch_dur=4)  # 200 µs of host work before it
        with b.op("aten::mm"):
            b.kernel(GEMM, dur=500, stream=20)
        with b.op("aten::add"):
            b.kernel("k4", dur=2, launch_dur=4)
    trace = b.trace()
    by_cause: dict[str, list[float]] = {}
    for g in idle_gaps(trace):
        by_cause.setdefault(g.cause, []).append(g.dur)
    assert "launch" in by_cause and max(by_cause["launch"]) < 10
    assert "host" in by_cause and max(by_cause["host"]) > 200


def test_cpu_traces_have_no_device_timeline() -> None:
    b = TraceBuilder(device=False)
    with b.step():
        b.leaf("aten::add", dur=5)
    trace = b.trace()
    assert idle_gaps(trace) == [] and step_idle(trace) == []


def test_tiny_kernels_and_their_launch_wait() -> None:
    b = TraceBuilder(device=True)
    for _ in range(2):
        with b.step():
            for _ in range(10):
                with b.op("aten::add_"):
                    b.kernel("tiny", dur=2.0, launch_dur=6.0)
            with b.op("aten::mm"):
                b.kernel(GEMM, dur=50.0, launch_dur=6.0)
    tk = tiny_kernels(b.trace())
    assert len(tk.rows) == 20 and tk.kernel_count == 22
    assert set(tk.steps.tolist()) == {0, 1}
    assert tk.dur_us.tolist() == [2.0] * 20
    # each launch takes 6 µs (+1 µs gap) and the kernel 2: the device waits ≤ the launch time
    assert all(0 <= w <= 6.0 for w in tk.wait_us.tolist())
    # 9 µs of host per op (open, 6 µs launch, close, gaps) minus a 2 µs kernel: 7 µs, capped at 6
    assert tk.wait_us[1:10].tolist() == pytest.approx([6.0] * 9)


def test_host_overhead_splits_ops_and_python() -> None:
    b = TraceBuilder(device=False)
    with b.step():
        for _ in range(10):
            b.advance(10.0)
            b.leaf("aten::add", dur=4.0)
    (o,) = host_overhead(b.trace())
    assert o.op_count == 10 and o.top_level_ops == 10
    assert o.tiny_op_ms == pytest.approx(0.04)
    assert o.op_ms == pytest.approx(0.04)
    assert o.python_ms == pytest.approx(o.dur_ms - 0.04)
    assert o.overhead_share == pytest.approx(1.0)


def test_step_idle_adds_each_steps_gaps_in_order() -> None:
    """step_idle (computed over the gap columns) gives exactly what adding the gap list up one
    gap at a time gives: per cause in gap order, the step's idle in first-seen cause order."""
    b = TraceBuilder(device=True)
    for n in range(3):
        with b.step():
            with b.dataloader(dur=300 + 7 * n):
                pass
            with b.op("aten::add"):
                b.kernel("k1", dur=2, launch_dur=4)
            with b.op("aten::add"):
                b.kernel("k2", dur=2, launch_dur=4)
            b.advance(100 + n)
            with b.op("aten::mm"):
                b.kernel(GEMM, dur=300)
            with b.op("aten::item"):
                b.sync()
            b.advance(200 + 3 * n)
            with b.op("aten::mm"):
                b.kernel(GEMM, dur=300)
    trace = b.trace()
    gaps = idle_gaps(trace)
    assert {g.cause for g in gaps} >= {"input", "sync", "launch", "host"}
    expected: dict[int, dict[str, float]] = {}
    for g in gaps:
        slot = expected.setdefault(g.step, {})
        slot[g.cause] = slot.get(g.cause, 0.0) + g.dur / 1000.0
    steps = step_idle(trace)
    assert len(steps) == 3
    for s in steps:
        causes = expected[s.step]
        assert s.idle_ms == sum(causes.values())  # bit for bit, not approximately
        assert s.busy_ms == max(0.0, s.dur_ms - s.idle_ms)
        assert s.by_cause == {c: round(causes.get(c, 0.0), 6) for c in s.by_cause}


def test_module_loops_count_the_most_called_instance_per_step() -> None:
    from perftune.trace.idle_metrics import module_loops

    b = TraceBuilder(device=False)
    for _ in range(2):
        with b.step():
            with b.pycall("nn.Module: Sequence_0"):
                for _ in range(20):  # an RNN cell stepped over 20 time steps
                    with b.pycall("nn.Module: LSTMCell_0"):
                        b.leaf("aten::addmm", dur=3.0)
            with b.pycall("nn.Module: MSELoss_0"):
                b.leaf("aten::mse_loss", dur=3.0)
    (loop,) = module_loops(b.trace())
    assert (loop.module, loop.calls_per_step, loop.steps) == ("LSTMCell_0", 20.0, 2)


def test_module_loops_without_module_events_is_empty() -> None:
    from perftune.trace.idle_metrics import module_loops

    b = TraceBuilder(device=False)
    with b.step():
        b.leaf("aten::add", dur=4.0)
    assert module_loops(b.trace()) == []
