"""Links of the trace model: host nesting, op chains, python stacks, runtime ↔ device, steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from builder import HOST_PID, doc, gpu_step, kernel, op, runtime, write, x
from hypothesis import given, settings
from hypothesis import strategies as st

from perftune.trace import load
from perftune.trace.model import _nesting


def _row(trace, name: str) -> int:
    rows = np.flatnonzero(trace.name_isin([name]))
    assert len(rows) == 1, f"{name}: {len(rows)} rows"
    return int(rows[0])


# ---------------------------------------------------------------------------- nesting
def _frame(intervals: list[tuple[int, int, int]]) -> dict[str, np.ndarray]:
    """(thread, ts, dur) → the columns _nesting reads."""
    tid = np.array([t for t, _, _ in intervals], dtype=np.int64)
    ts = np.array([s for _, s, _ in intervals], dtype=np.float64)
    dur = np.array([d for _, _, d in intervals], dtype=np.float64)
    return {"rank": np.zeros(len(ts), np.int32), "pid": np.ones(len(ts), np.int64),
            "tid": tid, "ts": ts, "dur": dur, "end": ts + dur,
            "is_device": np.zeros(len(ts), bool)}


def _brute_parent(intervals: list[tuple[int, int, int]], tol: float = 0.01) -> list[int]:
    """The definition: the latest event (in start order, longest first, then file order) on the
    same thread that is still open when i starts and ends no earlier than i."""
    order = sorted(range(len(intervals)), key=lambda k: (intervals[k][0], intervals[k][1],
                                                         -intervals[k][2], k))
    pos = {k: p for p, k in enumerate(order)}
    out = []
    for i, (ti, si, di) in enumerate(intervals):
        best, best_pos = -1, -1
        for j, (tj, sj, dj) in enumerate(intervals):
            if j == i or tj != ti or pos[j] > pos[i]:
                continue
            if sj + dj > si and sj + dj + tol >= si + di and pos[j] > best_pos:
                best, best_pos = j, pos[j]
        out.append(best)
    return out


intervals_st = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 60), st.integers(0, 40)),
                        min_size=0, max_size=40)


@settings(max_examples=300, deadline=None)
@given(intervals_st)
def test_nesting_matches_the_definition_on_arbitrary_intervals(intervals) -> None:
    got = _nesting(_frame(intervals), t0_us=0.0).tolist()
    assert got == _brute_parent(intervals)


@st.composite
def trees(draw, depth: int = 0, start: int = 0, length: int = 1000):
    """Properly nested intervals as (ts, dur, parent index) lists, parents before children."""
    nodes: list[tuple[int, int, int]] = []

    def grow(lo: int, hi: int, parent: int, level: int) -> None:
        # Children are non-empty and strictly shorter than their parent: equal spans are
        # ambiguous (file order decides, see test_identical_spans_nest_in_file_order).
        cursor = lo
        for _ in range(draw(st.integers(0, 3 if level < 4 else 0))):
            if hi - cursor < 2:
                return
            s = draw(st.integers(cursor, hi - 1))
            e = draw(st.integers(s + 1, hi))
            if parent >= 0 and e - s >= hi - lo:
                e -= 1
                if e <= s:
                    return
            nodes.append((s, e - s, parent))
            grow(s, e, len(nodes) - 1, level + 1)
            cursor = e
    grow(start, start + length, -1, depth)
    return nodes


@settings(max_examples=200, deadline=None)
@given(trees(), st.randoms(use_true_random=False))
def test_nesting_recovers_generated_trees_in_any_file_order(nodes, rnd) -> None:
    perm = list(range(len(nodes)))
    rnd.shuffle(perm)
    where = {old: new for new, old in enumerate(perm)}
    shuffled = [nodes[old] for old in perm]
    got = _nesting(_frame([(0, s, d) for s, d, _ in shuffled]), t0_us=0.0)
    expected = [where[parent] if parent >= 0 else -1 for _, _, parent in shuffled]
    assert got.tolist() == expected


def test_identical_spans_nest_in_file_order() -> None:
    got = _nesting(_frame([(0, 10, 5), (0, 10, 5), (0, 10, 5)]), t0_us=0.0)
    assert got.tolist() == [-1, 0, 1]


def test_parent_ancestors_children_and_op_chain(tmp_path: Path) -> None:
    t = load(write(tmp_path / "t.json", doc(gpu_step())))
    step, item, local = (_row(t, n) for n in ("ProfilerStep#0", "aten::item",
                                              "aten::_local_scalar_dense"))
    sync = _row(t, "cudaStreamSynchronize")
    assert t.parent[sync] == local and t.parent[local] == item and t.parent[item] == step
    assert t.ancestors(sync) == [local, item, step]
    assert sorted(t.children(local).tolist()) == sorted([_row(t, "cudaMemcpyAsync"), sync])
    # The ProfilerStep marker is not part of the chain; runtime calls only as the last link.
    assert t.op_chain(sync) == ["aten::item", "aten::_local_scalar_dense", "cudaStreamSynchronize"]
    # Device events have no host parent.
    assert t.parent[_row(t, "sm80_xmma_gemm_f32f32_tf32")] == -1


def test_threads_do_not_nest_into_each_other(tmp_path: Path) -> None:
    events = [op("a", 0, 100, tid=1), op("b", 10, 10, tid=2), op("c", 20, 10, tid=1),
              op("d", 30, 5, pid=HOST_PID + 1, tid=1)]
    t = load(write(tmp_path / "t.json", events))
    assert t.parent[_row(t, "b")] == -1
    assert t.parent[_row(t, "c")] == _row(t, "a")
    assert t.parent[_row(t, "d")] == -1


# ---------------------------------------------------------------------------- host ↔ device
def test_runtime_and_device_links(tmp_path: Path) -> None:
    t = load(write(tmp_path / "t.json", doc(gpu_step())))
    gemm = _row(t, "sm80_xmma_gemm_f32f32_tf32")
    launch = t.launched_by(gemm)
    assert launch is not None and t.name_of(launch) == "cudaLaunchKernel"
    assert t.parent[launch] == _row(t, "aten::mm")
    assert t.device_events_of(launch) == [gemm]
    copy = _row(t, "Memcpy DtoH (Device -> Pageable)")
    assert t.name_of(int(t.launch_of_device_event[copy])) == "cudaMemcpyAsync"
    assert t.launch_of_device_event[_row(t, "aten::mm")] == -1
    # Same correlation number on another rank is a different launch.
    assert t.device_events_of(_row(t, "cudaStreamSynchronize")) == []
    assert t.launched_by(_row(t, "aten::mm")) is None


def test_correlations_are_per_rank(tmp_path: Path) -> None:
    a = write(tmp_path / "rank0.json", doc(gpu_step(), distributedInfo={"rank": 0}))
    b = write(tmp_path / "rank1.json", doc(gpu_step(), distributedInfo={"rank": 1}))
    t = load([a, b])
    for gemm in np.flatnonzero(t.name_isin(["sm80_xmma_gemm_f32f32_tf32"])).tolist():
        launch = t.launched_by(gemm)
        assert launch is not None
        assert t.events["rank"].iat[launch] == t.events["rank"].iat[gemm]
        assert t.device_events_of(launch) == [gemm]


def test_streams_and_devices(tmp_path: Path) -> None:
    events = [*gpu_step(t0=0.0),
              runtime("cudaLaunchKernel", 900, 5, 77),
              kernel("ncclKernel_AllReduce_RING_LL_Sum_float", 100, 400, 77, stream=21)]
    t = load(write(tmp_path / "t.json", events))
    streams = t.streams().set_index("stream")
    assert streams.loc[7, "kind"] == "mixed" and streams.loc[7, "kernels"] == 2
    assert streams.loc[7, "busy_us"] == 312.0
    assert streams.loc[21, "kind"] == "comm" and streams.loc[21, "busy_us"] == 400.0
    assert t.device_ids() == [0] and t.device_ids(rank=5) == []


# ---------------------------------------------------------------------------- python stacks
def _stack_trace(tmp_path: Path) -> tuple:
    def py(name: str, ts: float, dur: float, pid_: int, parent: int | None) -> dict:
        return x(name, ts, dur, cat="python_function",
                 args={"Python id": pid_, "Python parent id": parent})

    events = [
        py("train.py(30): <module>", 0, 1000, 1, None),
        py("train.py(12): train_step", 10, 900, 2, 1),
        py("torch/nn/modules/module.py(1501): _call_impl", 20, 500, 3, 2),
        py("/home/me/.venv/lib/python3.11/site-packages/transformers/models/bert.py(88): forward",
           30, 400, 4, 3),
        py("torch/nn/functional.py(2000): dropout", 40, 100, 5, 4),
        # Ends 0.5 µs after its python frame: time nesting alone would put it outside.
        op("aten::dropout", 50, 90.5, ext=1),
        runtime("cudaLaunchKernel", 60, 5, 9),
        kernel("dropout_kernel", 70, 10, 9),
        py("threading.py(1016): _bootstrap_inner", 2000, 50, 6, None),
        op("aten::copy_", 2010, 10),
    ]
    return load(write(tmp_path / "t.json", events)), events


def test_python_stack_follows_python_parent_ids(tmp_path: Path) -> None:
    t, _ = _stack_trace(tmp_path)
    launch = _row(t, "cudaLaunchKernel")
    stack = [str(f) for f in t.python_stack(launch)]
    assert stack == [
        "torch/nn/functional.py(2000): dropout",
        "/home/me/.venv/lib/python3.11/site-packages/transformers/models/bert.py(88): forward",
        "torch/nn/modules/module.py(1501): _call_impl",
        "train.py(12): train_step",
        "train.py(30): <module>",
    ]
    assert t.has_python_stacks


def test_user_frame_skips_torch_stdlib_and_installed_packages(tmp_path: Path) -> None:
    t, _ = _stack_trace(tmp_path)
    frame = t.user_frame(_row(t, "cudaLaunchKernel"))
    assert frame is not None and frame.file == "train.py"
    assert frame.line == 12 and frame.function == "train_step"
    # A device event maps to the frame of the call that launched it.
    assert t.user_frame(_row(t, "dropout_kernel")) == frame
    # Only stdlib frames above: no user frame.
    assert t.user_frame(_row(t, "aten::copy_")) is None
    assert t.user_frames([_row(t, "dropout_kernel"), _row(t, "aten::copy_")]) == [frame, None]


def test_no_python_stacks(tmp_path: Path) -> None:
    t = load(write(tmp_path / "t.json", doc(gpu_step())))
    assert not t.has_python_stacks
    assert t.python_stack(_row(t, "cudaStreamSynchronize")) == []
    assert t.user_frame(_row(t, "cudaStreamSynchronize")) is None


# ---------------------------------------------------------------------------- steps
def test_step_of_maps_times_to_steps_per_rank(tmp_path: Path) -> None:
    events = [*gpu_step(t0=0.0, step=3), *gpu_step(t0=1000.0, step=4, corr0=2000)]
    t = load(write(tmp_path / "t.json", events))
    assert [s.index for s in t.steps] == [3, 4]
    got = t.step_of([0.0, 999.9, 1000.0, 1999.0, 2000.0, -1.0], [0, 0, 0, 0, 0, 0])
    assert got.tolist() == [0, 0, 1, 1, -1, -1]
    assert t.step_of([10.0], [1]).tolist() == [-1]
