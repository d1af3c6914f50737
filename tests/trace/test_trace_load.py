"""The loader on every Kineto variant: hand-built traces with exact expectations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from builder import (
    GPU_PID,
    HOST_PID,
    HOST_TID,
    STREAM,
    doc,
    flow,
    gpu_step,
    kernel,
    memcpy,
    meta,
    op,
    runtime,
    write,
    x,
)

from perftune.errors import TraceError
from perftune.trace import load, trace_files
from perftune.trace.decode import decode_raw


def _row(trace, name: str) -> int:
    rows = np.flatnonzero(trace.name_isin([name]))
    assert len(rows) == 1, f"{name}: {len(rows)} rows"
    return int(rows[0])


def _rows(trace, name: str) -> list[int]:
    return np.flatnonzero(trace.name_isin([name])).tolist()


def test_gzip_and_plain_load_the_same(tmp_path: Path) -> None:
    events = gpu_step()
    a = load(write(tmp_path / "a.json", doc(events)))
    b = load(write(tmp_path / "b.json.gz", doc(events)))
    assert a.events.drop(columns=[]).equals(b.events)
    # gzip is recognised by its magic bytes, not by the file name.
    c = load(write(tmp_path / "c.json", doc(events), gz=True))
    assert c.events.equals(a.events)


def test_columns_are_relative_microseconds_and_interned(tmp_path: Path) -> None:
    t = load(write(tmp_path / "t.json", doc(gpu_step(t0=5_000_000.0))))
    assert t.t0_us == 5_000_000.0
    mm = _row(t, "aten::mm")
    assert t.events["ts"].iat[mm] == 100.0 and t.events["end"].iat[mm] == 200.0
    assert str(t.events["cat"].dtype) == "category" and str(t.events["name"].dtype) == "category"
    assert set(t.events["cat"].cat.categories) >= {"cpu_op", "kernel", "cuda_runtime"}
    assert t.events["is_device"].sum() == 3  # two kernels and one memcpy
    gemm = _row(t, "sm80_xmma_gemm_f32f32_tf32")
    assert (t.events["stream"].iat[gemm], t.events["device"].iat[gemm]) == (STREAM, 0)


def test_json_array_form_without_metadata(tmp_path: Path) -> None:
    # The bare-array Chrome trace form: no header, no ph M events at all.
    t = load(write(tmp_path / "t.json", gpu_step()))
    assert t.step_source == "profiler-step"
    assert len(t.steps) == 1 and t.steps[0].dur == 1000.0
    assert t.thread_names == {}
    gemm = _row(t, "sm80_xmma_gemm_f32f32_tf32")
    assert t.name_of(t.launched_by(gemm)) == "cudaLaunchKernel"


def test_display_time_unit_does_not_scale_timestamps(tmp_path: Path) -> None:
    us = load(write(tmp_path / "us.json", doc(gpu_step(), displayTimeUnit="ms")))
    ns = load(write(tmp_path / "ns.json", doc(gpu_step(), displayTimeUnit="ns")))
    assert ns.steps[0].dur == us.steps[0].dur == 1000.0
    assert ns.ranks[0].header["displayTimeUnit"] == "ns"


def test_nanosecond_fractions_at_epoch_scale_still_nest(tmp_path: Path) -> None:
    # At 1.7e15 µs a float64 has 0.25 µs resolution: the child (written to end 0.1 µs inside
    # its parent) rounds to end after it. Nesting must tolerate that rounding.
    base = 1_712_195_495_519_695.8
    events = [
        op("aten::linear", base, 10.3),
        op("aten::addmm", base + 0.2, 10.2),
        op("aten::relu", base + 11.1, 1.0),
    ]
    t = load(write(tmp_path / "t.json", events))
    linear, addmm, relu = (_row(t, n) for n in ("aten::linear", "aten::addmm", "aten::relu"))
    assert t.parent[addmm] == linear
    assert t.parent[relu] == -1
    assert t.op_chain(addmm) == ["aten::linear", "aten::addmm"]


def test_int_and_float_timestamps_mix(tmp_path: Path) -> None:
    events = [op("outer", 1000, 100), op("inner", 1010.5, 20.25)]
    t = load(write(tmp_path / "t.json", events))
    inner = _row(t, "inner")
    assert t.events["ts"].iat[inner] == 10.5 and t.events["dur"].iat[inner] == 20.25
    assert t.parent[inner] == _row(t, "outer")


def test_string_typed_metadata(tmp_path: Path) -> None:
    content = doc(gpu_step(), schemaVersion="1",
                  distributedInfo=json.dumps({"backend": "nccl", "rank": "3", "world_size": "8"}),
                  deviceProperties="[{'id': 0, 'name': 'NVIDIA H100', 'numSms': '132'}]")
    t = load(write(tmp_path / "t.json", content))
    assert t.ranks[0].header["schemaVersion"] == 1
    assert t.rank_ids == (3,)
    assert t.world_size == 8
    assert t.distributed_backend == "nccl"
    assert t.device_properties[0]["name"] == "NVIDIA H100"
    assert t.device_properties[0]["numSms"] == 132
    # Numbers re-serialised as strings inside events decode as numbers too.
    events = [op("a", 0, 10), {**kernel("k", 2, 3, corr=None), "args": {"stream": "9",
                                                                       "device": "0"}}]
    t2 = load(write(tmp_path / "t2.json", events))
    assert t2.events["stream"].iat[_row(t2, "k")] == 9


def test_rocm_names_link_and_sync(tmp_path: Path) -> None:
    events = [
        x("ProfilerStep#1", 0, 500, cat="user_annotation"),
        op("aten::mm", 10, 50, ext=1),
        runtime("hipLaunchKernel", 20, 10, 7),
        kernel("Cijk_Ailk_Bljk_SB_MT64x64", 40, 200, 7),
        op("aten::item", 100, 300, ext=2),
        runtime("hipMemcpyAsync", 110, 10, 8),
        memcpy("DtoH", "Device", "Pageable", 250, 2, 8),
        runtime("hipStreamSynchronize", 130, 260, 9),
    ]
    t = load(write(tmp_path / "t.json", doc(events, hip_runtime_version=60032)))
    assert t.runtime == "rocm"
    k = _row(t, "Cijk_Ailk_Bljk_SB_MT64x64")
    assert t.name_of(t.launched_by(k)) == "hipLaunchKernel"
    from perftune.trace import metrics

    syncs = {s.call: s for s in metrics.host_device_syncs(t)}
    assert syncs["hipStreamSynchronize"].kind == "stream-sync"
    assert syncs["hipStreamSynchronize"].op_chain == ("aten::item", "hipStreamSynchronize")
    assert syncs["hipMemcpyAsync"].kind == "pageable-copy"
    # The header alone also marks a ROCm trace.
    t2 = load(write(tmp_path / "t2.json", doc([op("a", 0, 1), kernel("k", 0, 1, None)],
                                                hip_runtime_version=60032)))
    assert t2.runtime == "rocm"


@pytest.mark.parametrize("flow_cat", ["ac2g", "async_cpu_to_gpu"])
def test_flows_link_launches_when_args_lack_correlation(tmp_path: Path, flow_cat: str) -> None:
    events = [
        op("aten::mm", 0, 100),
        runtime("cudaLaunchKernel", 10, 5, None),
        kernel("gemm", 30, 50, None),
        runtime("cudaLaunchKernel", 20, 5, None),
        kernel("gemv", 90, 5, None),
        flow("s", 41, 10, HOST_PID, HOST_TID, cat=flow_cat),
        flow("f", 41, 30, GPU_PID, STREAM, cat=flow_cat),
        flow("s", 42, 20, HOST_PID, HOST_TID, cat=flow_cat),
        flow("f", 42, 90, GPU_PID, STREAM, cat=flow_cat),
    ]
    t = load(write(tmp_path / "t.json", events))
    gemm, gemv = _row(t, "gemm"), _row(t, "gemv")
    launches = _rows(t, "cudaLaunchKernel")
    assert t.launched_by(gemm) == launches[0]
    assert t.launched_by(gemv) == launches[1]
    assert t.device_events_of(launches[1]) == [gemv]
    assert t.events["corr"].iat[gemm] == 41
    assert t.launch_of_device_event[gemv] == launches[1]
    assert sorted(t.flows["id"].tolist()) == [41, 42]


def test_flow_endpoint_prefers_the_call_that_issues_device_work(tmp_path: Path) -> None:
    # Two runtime calls start at the same µs (int timestamps) and nothing has a correlation.
    events = [
        runtime("cudaEventRecord", 10, 1, None),
        runtime("cudaLaunchKernel", 10, 3, None),
        kernel("k", 20, 5, None),
        flow("s", 6, 10, HOST_PID, HOST_TID),
        flow("f", 6, 20, GPU_PID, STREAM),
    ]
    t = load(write(tmp_path / "t.json", events))
    assert t.name_of(t.launched_by(_row(t, "k"))) == "cudaLaunchKernel"


def test_redundant_ac2g_flows_are_not_paired(tmp_path: Path) -> None:
    # Modern traces carry `correlation` in args: the ac2g flows repeat that link.
    t = load(write(tmp_path / "t.json", [*gpu_step(), flow("s", 1000, 1_000_150, HOST_PID,
                                                             HOST_TID),
                                         flow("f", 1000, 1_000_170, GPU_PID, STREAM)]))
    assert t.flows.empty
    assert t.name_of(t.launched_by(_row(t, "sm80_xmma_gemm_f32f32_tf32"))) == "cudaLaunchKernel"


def test_fwdbwd_flow_maps_backward_to_forward_frame(tmp_path: Path) -> None:
    main, autograd = 100, 200
    events = [
        x("train.py(12): train_step", 0, 500, cat="python_function", tid=main,
          args={"Python id": 1, "Python parent id": None}),
        op("aten::mul", 10, 20, tid=main),
        op("autograd::engine::evaluate_function: MulBackward0", 300, 50, tid=autograd),
        op("MulBackward0", 305, 40, tid=autograd),
        op("aten::mul", 310, 20, tid=autograd),
        flow("s", 9, 10, HOST_PID, main, cat="fwdbwd"),
        flow("f", 9, 305, HOST_PID, autograd, cat="fwdbwd"),
    ]
    t = load(write(tmp_path / "t.json", events))
    fwd = next(r for r in _rows(t, "aten::mul") if t.events["tid"].iat[r] == main)
    bwd_inner = next(r for r in _rows(t, "aten::mul") if t.events["tid"].iat[r] == autograd)
    assert t.forward_op_of(bwd_inner) == fwd
    frame = t.user_frame(bwd_inner)
    assert frame is not None and (frame.file, frame.line) == ("train.py", 12)


def test_legacy_category_names_are_normalised(tmp_path: Path) -> None:
    events = [
        x("aten::mm", 0, 100, cat="Operator"),
        x("cudaLaunchKernel", 10, 5, cat="Runtime", args={"correlation": 3}),
        x("gemm", 20, 50, cat="Kernel", pid=0, tid=7, args={"correlation": 3}),
        x("Memcpy HtoD (Pageable -> Device)", 80, 5, cat="Memcpy", pid=0, tid=7),
    ]
    t = load(write(tmp_path / "t.json", events))
    assert t.cat_of(_row(t, "gemm")) == "kernel"
    assert t.cat_of(_row(t, "aten::mm")) == "cpu_op"
    assert t.cat_of(_row(t, "cudaLaunchKernel")) == "cuda_runtime"
    assert t.events["is_device"].sum() == 2
    # Device and stream come from pid/tid when args lack them.
    memcpy_row = _row(t, "Memcpy HtoD (Pageable -> Device)")
    assert (t.events["device"].iat[memcpy_row], t.events["stream"].iat[memcpy_row]) == (0, 7)
    assert t.name_of(t.launched_by(_row(t, "gemm"))) == "cudaLaunchKernel"


def test_unknown_categories_fields_and_phases_still_load(tmp_path: Path) -> None:
    events = [
        op("aten::mm", 0, 10, args={"Some future field": {"nested": [1, 2]}, "Ev Idx": 4}),
        x("mystery", 5, 1, cat="npu_kernel_v9", args={"weird": True}),
        {"ph": "C", "name": "counter", "pid": 1, "tid": 1, "ts": 3, "args": {"value": 7}},
        {"ph": "b", "name": "async", "cat": "x", "id": "0x1", "pid": 1, "tid": 1, "ts": 3},
        {"ph": "X", "name": "no_cat_event", "pid": 1, "tid": 1, "ts": 4, "dur": 1},
    ]
    t = load(write(tmp_path / "t.json", doc(events, someNewHeader={"x": 1})))
    assert sorted(t.events["name"].astype(str)) == ["aten::mm", "mystery", "no_cat_event"]
    assert t.warnings == ()


def test_profiler_span_events_are_not_program_activity(tmp_path: Path) -> None:
    events = [*gpu_step(t0=1000.0),
              x("PyTorch Profiler (0)", 0.0, 50_000, cat="Trace", pid="Spans",
                tid="PyTorch Profiler")]
    t = load(write(tmp_path / "t.json", events))
    assert "PyTorch Profiler (0)" not in set(t.events["name"].astype(str))
    assert t.t0_us == 1000.0 and t.span_us() == 1000.0


def test_string_pids_and_tids_get_stable_codes(tmp_path: Path) -> None:
    events = [op("a", 0, 10, pid="Spans", tid="worker"), op("b", 2, 3, pid="Spans", tid="worker"),
              op("c", 20, 1, pid="42", tid="7")]
    t = load(write(tmp_path / "t.json", events))
    a, b, c = (_row(t, n) for n in "abc")
    assert t.events["pid"].iat[a] == t.events["pid"].iat[b] < -1
    assert t.parent[b] == a
    assert (t.events["pid"].iat[c], t.events["tid"].iat[c]) == (42, 7)


def test_metadata_thread_and_process_names(tmp_path: Path) -> None:
    events = [*gpu_step(), meta("thread_name", GPU_PID, STREAM, "stream 7 "),
              meta("process_labels", GPU_PID, 0, "GPU 0"),
              meta("process_name", HOST_PID, 0, "python3")]
    t = load(write(tmp_path / "t.json", doc(events)))
    assert t.thread_names[(0, GPU_PID, STREAM)] == "stream 7 "
    assert t.process_labels[(0, GPU_PID)] == "GPU 0"
    assert t.process_names[(0, HOST_PID)] == "python3"


def test_null_python_parent_id_and_shapes_decode_lazily(tmp_path: Path) -> None:
    events = [
        x("train.py(3): <module>", 0, 100, cat="python_function",
          args={"Python id": 1, "Python parent id": None}),
        op("aten::add", 10, 5, args={"Input Dims": [[2, 3], [2, 3]], "Input type": ["float", "float"],
                                     "Input Strides": [[3, 1], [3, 1]],
                                     "Concrete Inputs": ["", ""]}),
    ]
    t = load(write(tmp_path / "t.json", events))
    py, add = _row(t, "train.py(3): <module>"), _row(t, "aten::add")
    assert t.events["py_parent"].iat[py] == -1 and t.events["py_id"].iat[py] == 1
    assert t.input_dims(add) == [[2, 3], [2, 3]]
    assert t.input_types(add) == ["float", "float"]
    assert t.input_strides(add) == [[3, 1], [3, 1]]
    assert t.concrete_inputs(add) == ["", ""]
    assert t.input_dims(py) is None
    assert decode_raw(t.args[add].input_dims) == [[2, 3], [2, 3]]
    assert t.args[add].python_parent_id is None and t.args[py].python_id == 1


def test_kernel_launch_properties_and_collectives(tmp_path: Path) -> None:
    events = [
        runtime("cudaLaunchKernel", 0, 5, 1),
        kernel("gemm", 10, 50, 1, args={"grid": [80, 2, 1], "block": [256, 1, 1],
                                        "registers per thread": 96, "blocks per SM": 1.5,
                                        "warps per SM": 12.0}),
        runtime("cudaLaunchKernel", 6, 5, 2),
        kernel("ncclKernel_AllReduce_RING_LL_Sum_float", 70, 500, 2, stream=40,
               args={"Collective name": "allreduce", "In msg nelems": 1024,
                     "Out msg nelems": 1024, "Group size": 2, "dtype": "Float",
                     "Process Group Ranks": "[0, 1]"}),
        op("aten::mm", 0, 20, args={"flops": 123.0}),
    ]
    t = load(write(tmp_path / "t.json", events))
    gemm = _row(t, "gemm")
    assert t.launch_dims(gemm) == ([80, 2, 1], [256, 1, 1])
    k = t.kernels.set_index("row").loc[gemm]
    assert (k["grid_x"], k["block_x"], k["registers"], k["occupancy"]) == (80, 256, 96.0, 50.0)
    assert t.args[gemm].registers_per_thread == 96.0 and decode_raw(t.args[gemm].grid) == [80, 2, 1]
    nccl = _row(t, "ncclKernel_AllReduce_RING_LL_Sum_float")
    coll = t.collectives.set_index("row").loc[nccl]
    assert coll["collective"] == "allreduce" and coll["msg_nelems"] == 1024
    assert coll["group_size"] == 2 and coll["process_group_ranks"] == "[0, 1]"
    assert t.args[_row(t, "aten::mm")].flops == 123.0
    assert t.comm_kernel_mask[nccl] and not t.comm_kernel_mask[gemm]


def test_memory_events_are_kept(tmp_path: Path) -> None:
    events = [op("aten::empty", 0, 10),
              {"ph": "i", "cat": "cpu_instant_event", "name": "[memory]", "pid": HOST_PID,
               "tid": HOST_TID, "ts": 5, "s": "t",
               "args": {"Device Type": 1, "Device Id": 0, "Addr": 1234, "Bytes": 512,
                        "Total Allocated": 1536, "Total Reserved": 2097152}}]
    t = load(write(tmp_path / "t.json", events))
    assert t.memory[["ts", "bytes", "total_allocated", "device_id"]].values.tolist() == [
        [5.0, 512, 1536, 0]]


def test_per_rank_directory_with_tensorboard_names(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for rank in (1, 0):
        write(run / f"rank-{rank}.1700000000{rank}.pt.trace.json.gz",
              doc(gpu_step(step=rank), distributedInfo={"rank": rank, "world_size": 2}))
    write(run / "summary.json", {"not": "a trace"})
    files = trace_files([run])
    assert [f.name.split(".")[0] for f in files] == ["rank-0", "rank-1"]
    t = load(run)
    assert t.rank_ids == (0, 1)
    assert t.world_size == 2
    assert [s.rank for s in t.steps] == [0, 1]
    assert t.steps_of(1)[0].name == "ProfilerStep#1"


def test_rank_from_file_name_when_distributed_info_is_absent(tmp_path: Path) -> None:
    run = tmp_path / "traces"
    for rank in (10, 2):
        write(run / f"trace_rank_{rank}.json", gpu_step())
    t = load(run)
    assert t.rank_ids == (2, 10)


def test_duplicate_ranks_are_kept_apart_with_a_warning(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", doc(gpu_step(), distributedInfo={"rank": 0}))
    b = write(tmp_path / "b.json", doc(gpu_step(), distributedInfo={"rank": 0}))
    t = load([a, b])
    assert t.rank_ids == (0, 1)
    assert any("rank 0 appears in two files" in w for w in t.warnings)


def test_128_rank_files_load_as_one_trace(tmp_path: Path) -> None:
    run = tmp_path / "job"
    for rank in range(128):
        events = [x(f"ProfilerStep#{k}", 1000.0 * k + rank, 900, cat="user_annotation")
                  for k in range(2)] + [op("aten::mm", 10.0 + rank, 5)]
        write(run / f"host{rank // 8}_{rank}.pt.trace.json",
              doc(events, distributedInfo={"rank": rank, "world_size": 128}))
    t = load(run)
    assert t.rank_ids == tuple(range(128))
    assert len(t.steps) == 256 and t.world_size == 128
    assert t.events["rank"].nunique() == 128


def test_a_few_malformed_events_do_not_reject_the_trace(tmp_path: Path) -> None:
    good = gpu_step()
    bad = [
        {"ph": "X", "cat": "cpu_op", "name": "bad_dur", "pid": HOST_PID, "tid": HOST_TID,
         "ts": 1_000_900, "dur": "abc", "args": {}},
        {"ph": "X", "cat": "cpu_op", "name": "list_args", "pid": HOST_PID, "tid": HOST_TID,
         "ts": 1_000_910, "dur": 1, "args": []},
        {"ph": "X", "cat": "cpu_op", "name": "bad_id", "pid": HOST_PID, "tid": HOST_TID,
         "ts": 1_000_920, "dur": 1, "args": {"External id": [1, 2]}},
        {"ph": "X", "cat": "cpu_op", "name": "no_ts", "pid": HOST_PID, "tid": HOST_TID,
         "dur": 1},
        "not an event",
        42,
    ]
    t = load(write(tmp_path / "t.json", doc(good + bad)))
    names = set(t.events["name"].astype(str))
    assert {"aten::mm", "bad_dur", "list_args", "bad_id"} <= names
    assert "no_ts" not in names
    assert t.events["dur"].iat[_row(t, "bad_dur")] == 0.0
    assert t.events["ext_id"].iat[_row(t, "bad_id")] == -1
    text = "\n".join(t.warnings)
    assert "'dur' is not a number" in text
    assert "'args' is not an object" in text
    assert "External id" in text
    assert "not an event object" in text
    assert "without a valid 'ts'" in text
    # The well-formed events keep every link.
    gemm = _row(t, "sm80_xmma_gemm_f32f32_tf32")
    assert t.name_of(t.launched_by(gemm)) == "cudaLaunchKernel"


def test_malformed_events_in_a_large_trace_only_slow_their_chunk(tmp_path: Path) -> None:
    events = [op(f"op{k}", float(k), 0.5) for k in range(70_000)]
    events[65_540]["dur"] = "oops"
    t = load(write(tmp_path / "t.json", events))
    assert len(t.events) == 70_000
    assert t.warnings == (f"{tmp_path / 't.json'}: 1 event: 'dur' is not a number (ignored)",)


def test_trace_error_names_file_and_problem(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.json", doc([]))
    with pytest.raises(TraceError) as info:
        load(path)
    assert info.value.path == str(path)
    assert "empty trace" in info.value.problem


def test_only_metadata_is_no_timed_trace(tmp_path: Path) -> None:
    path = write(tmp_path / "meta.json", doc([meta("thread_name", 1, 1, "x")]))
    with pytest.raises(TraceError, match="no timed events"):
        load(path)


def _varied_events() -> list[dict]:
    events: list[dict] = []
    for k in range(40):
        t = 10_000.0 * k
        events += gpu_step(t0=t, step=k, corr0=100 * k + 10)
        events.append(op("aten::zero_", t + 900, 5, pid="Spans" if k % 2 else HOST_PID,
                         tid=f"worker-{k % 3}"))
        events.append(flow("s", f"0x{k:x}", t + 100, HOST_PID, HOST_TID, cat="fwdbwd"))
        events.append(flow("f", f"0x{k:x}", t + 800, HOST_PID, HOST_TID, cat="fwdbwd"))
        events.append({"ph": "i", "cat": "cpu_instant_event", "name": "[memory]", "pid": HOST_PID,
                       "tid": HOST_TID, "ts": t + 5, "s": "t",
                       "args": {"Device Type": 1, "Device Id": 0, "Bytes": k,
                                "Total Allocated": 10 * k, "Total Reserved": 1 << 20}})
    events.append(meta("thread_name", "Spans", "worker-1", "late label"))
    events.append({"ph": "X", "cat": "cpu_op", "name": "bad", "pid": 1, "tid": 1, "ts": 390_000,
                   "dur": "abc"})
    # Launches without correlation late in the file: their ac2g flows carry the link.
    events += [runtime("cudaLaunchKernel", 395_000, 5, None),
               kernel("late_kernel", 395_100, 7, None),
               flow("s", 999_999, 395_000, HOST_PID, HOST_TID),
               flow("f", 999_999, 395_100, 0, 7)]
    return events


def test_parallel_decode_matches_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import perftune.trace.stream as stream_module

    load_module = sys.modules["perftune.trace.load"]
    path = write(tmp_path / "t.json", doc(_varied_events()))
    monkeypatch.setattr(stream_module, "STREAM_BYTES", 2000)
    monkeypatch.setattr(load_module, "PARALLEL_MIN_BYTES", 100)
    monkeypatch.setenv("PERFTUNE_TRACE_WORKERS", "1")
    serial = load(path)
    monkeypatch.setenv("PERFTUNE_TRACE_WORKERS", "2")
    parallel = load(path)
    if load_module._workers() < 2:
        pytest.skip("no fork on this platform")
    assert parallel.events.equals(serial.events)
    assert parallel.flows.equals(serial.flows)
    assert parallel.memory.equals(serial.memory)
    assert parallel.thread_names == serial.thread_names
    assert parallel.warnings == serial.warnings and any("'dur'" in w for w in parallel.warnings)
    assert [parallel.args[r] for r in range(0, len(parallel.events), 7)] == \
        [serial.args[r] for r in range(0, len(serial.events), 7)]
    late = _row(parallel, "late_kernel")
    assert parallel.name_of(parallel.launched_by(late)) == "cudaLaunchKernel"
    spans = parallel.events["pid"].to_numpy()[np.flatnonzero(parallel.name_isin(["aten::zero_"]))]
    assert len(set(spans.tolist())) == 2  # "Spans" got one code in both halves


def test_middling_files_are_split_only_with_a_core_to_spare(monkeypatch: pytest.MonkeyPatch) -> None:
    # From PARALLEL_MIN_BYTES always (as before); from PARALLEL_IDLE_MIN_BYTES only when the
    # load average leaves a core idle (the worker costs wall time on a busy machine), or when
    # PERFTUNE_TRACE_WORKERS=2 asks for it.
    import sys

    from perftune import _cpus

    load_module = sys.modules["perftune.trace.load"]
    big, middling = load_module.PARALLEL_MIN_BYTES, load_module.PARALLEL_IDLE_MIN_BYTES
    monkeypatch.delenv("PERFTUNE_TRACE_WORKERS", raising=False)
    monkeypatch.setattr(_cpus.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    monkeypatch.setattr(_cpus, "runnable_now", lambda: 1)
    assert load_module._parallel_worth(big) and load_module._parallel_worth(middling)
    assert not load_module._parallel_worth(middling - 1)
    monkeypatch.setattr(_cpus, "runnable_now", lambda: 4)  # both cores busy
    assert load_module._parallel_worth(big) and not load_module._parallel_worth(middling)
    monkeypatch.setenv("PERFTUNE_TRACE_WORKERS", "2")
    assert load_module._parallel_worth(middling)


def _split_small_files(monkeypatch: pytest.MonkeyPatch) -> object:
    """The loader's forked worker on hand-sized files (what it does from 32 MiB up)."""
    import sys

    import perftune.trace.stream as stream_module

    load_module = sys.modules["perftune.trace.load"]
    monkeypatch.setattr(stream_module, "STREAM_BYTES", 2000)
    monkeypatch.setattr(load_module, "PARALLEL_MIN_BYTES", 100)
    monkeypatch.setenv("PERFTUNE_TRACE_WORKERS", "2")
    if load_module._workers() < 2:
        pytest.skip("no fork on this platform")
    return load_module


def _same_trace(a, b) -> None:
    assert a.events.equals(b.events)
    assert a.flows.equals(b.flows)
    assert a.memory.equals(b.memory)
    assert a.warnings == b.warnings
    assert [a.args[r] for r in range(len(a.events))] == [b.args[r] for r in range(len(b.events))]


def test_meanwhile_runs_once_here_while_the_worker_decodes(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The caller's next work (the analysis's imports) runs in this process during the load,
    # while the forked worker is alive, exactly once for all the files; the trace is the
    # same as without it, also when the head gives nearly all of the text to the worker.
    import os

    import psutil

    load_module = _split_small_files(monkeypatch)
    first = write(tmp_path / "rank0.json", doc(_varied_events()))
    second = write(tmp_path / "rank1.json", doc(_varied_events()))
    monkeypatch.setenv("PERFTUNE_TRACE_WORKERS", "1")
    serial = load([first, second])
    monkeypatch.setenv("PERFTUNE_TRACE_WORKERS", "2")
    calls: list[tuple[int, int]] = []

    before = {c.pid for c in psutil.Process().children()}  # the suite's own (a zygote)

    def meanwhile() -> None:
        calls.append((os.getpid(), len({c.pid for c in psutil.Process().children()} - before)))

    for lag in (load_module.MEANWHILE_S, 1000.0):  # 1000 s: the head's share at its floor
        monkeypatch.setattr(load_module, "MEANWHILE_S", lag)
        calls.clear()
        parallel = load([first, second], meanwhile=meanwhile)
        assert calls == [(os.getpid(), 1)]  # here, beside one live worker, once
        _same_trace(parallel, serial)


def test_meanwhile_without_a_worker_runs_after_the_files(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "t.json", doc(_varied_events()))
    monkeypatch.setenv("PERFTUNE_TRACE_WORKERS", "1")
    seen: list[int] = []
    trace = load(path, meanwhile=lambda: seen.append(1))
    assert seen == [1]
    _same_trace(trace, load(path))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_meanwhile_errors_are_raised_as_they_are(workers: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # A failure of the caller's work is not a malformed trace (the loader words ValueErrors
    # from decoding as TraceError), and the worker is not left behind.
    import psutil

    from perftune.errors import ConfigError

    _split_small_files(monkeypatch)
    monkeypatch.setenv("PERFTUNE_TRACE_WORKERS", workers)
    path = write(tmp_path / "t.json", doc(_varied_events()))
    before = psutil.Process().children()  # the suite's own (a zygote)

    def fails(error: Exception) -> None:
        raise error

    for error in (ValueError("not a trace problem"), ConfigError("bad rules folder")):
        with pytest.raises(type(error)) as caught:
            load(path, meanwhile=lambda e=error: fails(e))
        assert caught.value is error and not isinstance(caught.value, TraceError)
        assert psutil.Process().children() == before


_ANALYZE_RECORDING_IMPORTS = """
import json, sys
import psutil
import perftune.trace.stream as stream
stream.STREAM_BYTES = 2000
load_module = sys.modules["perftune.trace.load"]
load_module.PARALLEL_MIN_BYTES = 100
import perftune.pipeline as pipeline
from perftune.documents import document_data
imports = pipeline._analysis_imports
seen = []
def recording():
    seen.append((len(psutil.Process().children()), "perftune.engine.context" in sys.modules))
    imports()
pipeline._analysis_imports = recording
analysis = pipeline.analyze_paths([sys.argv[1]])
doc = document_data(pipeline.findings_document(analysis.summary, analysis.findings))
print(json.dumps({"seen": seen, "doc": doc}, default=str))
"""


def test_analyze_imports_the_analysis_beside_the_loaders_worker(tmp_path: Path) -> None:
    # A fresh `perftune analyze` process has not imported the engine when the load starts: the
    # pipeline hands those imports to the loader, which runs them beside its forked worker
    # (one child alive), once; the findings and summary are those of a run without the worker.
    import os
    import subprocess
    import sys

    path = write(tmp_path / "t.json", doc(_varied_events()))
    got = {}
    for workers in ("1", "2"):
        env = {**os.environ, "PERFTUNE_TRACE_WORKERS": workers}
        result = subprocess.run([sys.executable, "-c", _ANALYZE_RECORDING_IMPORTS, str(path)],
                                capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
        got[workers] = json.loads(result.stdout)
    assert got["1"]["seen"] == [[0, False]]  # after the files, no worker
    if sys.platform.startswith("linux"):
        assert got["2"]["seen"] == [[1, False]]
    assert got["2"]["doc"] == got["1"]["doc"]
