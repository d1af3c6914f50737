"""Checked facts about the real GPU traces in ../shared/traces (skipped when absent).

Every number here was read off the trace by hand (a viewer or a few lines of json) and is
asserted against what the loader, the links and metrics.py compute.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

import numpy as np
import pytest

from perftune.trace import load, metrics
from perftune.trace.model import Trace
from tests.conftest import shared_trace

EVENT_SYNC = "HolisticTraceAnalysis__cuda_event_sync__event_sync_trace.json"
NCCL = "HolisticTraceAnalysis__nccl_data.json.gz"
NS = "HolisticTraceAnalysis__rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz"
DF_INDEX = "HolisticTraceAnalysis__df_index_resolver.json.gz"
TRITON = "HolisticTraceAnalysis__triton_example.json.gz"
BERT = "TraceLens__h100__gaunernst_bert-small-uncased__1016001.json.gz"
RESNET = "param__resnet_kineto.json.gz"


@cache
def _load(name: str) -> Trace:
    return load(shared_trace(name))


def _rows(trace: Trace, name: str) -> list[int]:
    return np.flatnonzero(trace.name_isin([name])).tolist()


def _calls(trace: Trace) -> Counter[str]:
    return Counter(s.call for s in metrics.host_device_syncs(trace))


def test_event_sync_plain_and_gzip_are_the_same_trace() -> None:
    plain = _load(EVENT_SYNC)
    gz = _load(EVENT_SYNC + ".gz")
    assert plain.events.equals(gz.events)
    assert len(plain.events) == 32


def test_event_sync_step_and_scalar_readback_chain() -> None:
    t = _load(EVENT_SYNC + ".gz")
    assert t.step_source == "profiler-step"
    assert [(s.name, s.dur) for s in t.steps] == [("ProfilerStep#100", 3154.0)]
    syncs = {s.call: s for s in metrics.host_device_syncs(t)}
    chain = ("aten::is_nonzero", "aten::item", "aten::_local_scalar_dense")
    assert syncs["cudaMemcpyAsync"].op_chain == (*chain, "cudaMemcpyAsync")
    assert syncs["cudaStreamSynchronize"].op_chain == (*chain, "cudaStreamSynchronize")
    assert syncs["cudaStreamSynchronize"].cause == "aten::is_nonzero"
    assert (syncs["cudaMemcpyAsync"].dur_us, syncs["cudaStreamSynchronize"].dur_us) == (29.0, 6.0)
    assert syncs["cudaEventSynchronize"].dur_us == 34.0
    assert syncs["cudaDeviceSynchronize"].dur_us == 8.0
    # Recorded without with_stack: there is no frame to blame.
    assert not t.has_python_stacks and syncs["cudaStreamSynchronize"].frame is None


def test_event_sync_copy_and_device_side_sync_markers() -> None:
    t = _load(EVENT_SYNC + ".gz")
    (copy,) = metrics.memcpy_events(t).itertuples()
    assert (copy.kind, copy.src, copy.dst, copy.bytes) == ("DtoH", "Device", "Pageable", 1)
    assert t.name_of(copy.launch) == "cudaMemcpyAsync"
    (stream_sync,) = _rows(t, "cudaStreamSynchronize")
    assert [t.name_of(r) for r in t.device_events_of(stream_sync)] == ["Stream Sync"]
    for k in _rows(t, "at::cuda::(anonymous namespace)::spin_kernel(long)"):
        assert t.name_of(t.launched_by(k)) == "cudaLaunchKernel"


def test_nccl_trace_ranks_steps_streams_and_syncs() -> None:
    t = _load(NCCL)
    assert t.rank_ids == (0,) and t.world_size == 2 and t.distributed_backend == "nccl"
    assert t.step_source == "profiler-step" and len(t.steps) == 3
    assert all(219_000 < s.dur < 226_000 for s in t.steps)
    assert _calls(t)["cudaEventSynchronize"] == 24
    streams = t.streams().set_index("stream")
    assert streams.loc[40, "kind"] == "comm" and streams.loc[40, "comm_kernels"] == 21
    assert streams.loc[7, "comm_kernels"] == 0 and streams.loc[7, "kernels"] > 2000
    assert set(t.collectives["collective"]) >= {"allreduce"}
    (breakdown, *_) = metrics.step_breakdown(t)
    assert breakdown.communication_ms > 0


def test_nccl_trace_backward_ops_link_to_forward_ops() -> None:
    t = _load(NCCL)
    assert (t.flows["cat"] == "fwdbwd").sum() == 543
    pairs = list(t._fwd_of.items())
    assert len(pairs) == 543
    for bwd, fwd in pairs[:50]:
        assert t.events["tid"].iat[bwd] != t.events["tid"].iat[fwd]  # autograd thread
        assert t.name_of(fwd).startswith("aten::")
        assert "Backward" in t.name_of(bwd)
        assert t.forward_op_of(bwd) == fwd


def test_ns_display_unit_trace_is_still_in_microseconds() -> None:
    t = _load(NS)
    assert t.ranks[0].header["displayTimeUnit"] == "ns"
    assert t.rank_ids == (0,)
    durations_ms = [s.dur / 1000 for s in t.steps]
    assert len(durations_ms) == 5
    assert min(durations_ms) >= 35 and max(durations_ms) <= 96
    # Reading ts as ns would make kernels sub-microsecond; as µs they take real time.
    (b, *_) = metrics.step_breakdown(t)
    assert 10 < b.compute_ms < b.dur_ms


def test_df_index_resolver_memory_profile_and_size() -> None:
    t = _load(DF_INDEX)
    assert t.rank_ids == (1,) and t.world_size == 2
    assert len(t.memory) == 28_010
    assert int(t.cat_mask({"kernel"}).sum()) == 19_370
    assert len(t.steps) == 5 and all(330_000 < s.dur < 370_000 for s in t.steps)


def test_resnet_optimizer_steps_pageable_copies_and_syncs() -> None:
    t = _load(RESNET)
    assert t.step_source == "optimizer-step"
    assert len(t.steps) == 29  # 30 Optimizer.step#SGD.step calls
    syncs = [s for s in metrics.host_device_syncs(t) if s.call == "cudaStreamSynchronize"]
    assert len(syncs) == 61
    assert {s.op_chain for s in syncs} == {("aten::to", "aten::_to_copy", "aten::copy_",
                                            "cudaStreamSynchronize")}
    pageable = metrics.pageable_copies(t)
    assert len(pageable) == 61 and set(pageable["kind"]) == {"HtoD"}
    # Each blocking .to() pairs its pageable copy with a stream sync under the same aten::copy_.
    copy_ops = {int(t.parent[launch]) for launch in pageable["launch"]}
    assert {int(t.parent[s.row]) for s in syncs} == copy_ops
    waits = metrics.dataloader_waits(t)
    assert len(waits) == 30 and waits["multiprocess"].all()


def test_bert_item_sync_is_blamed_on_the_users_call_of_the_model() -> None:
    t = _load(BERT)
    assert t.has_python_stacks
    (sync,) = [s for s in metrics.host_device_syncs(t) if s.call == "cudaStreamSynchronize"]
    assert sync.op_chain == ("aten::is_nonzero", "aten::item", "aten::_local_scalar_dense",
                             "cudaStreamSynchronize")
    assert sync.frame is not None
    # transformers is library code: the user's frame is the one that called the model
    assert (sync.frame.file, sync.frame.line) == (
        "moca/library/model_hub/huggingface/model/adapters/text_base_model.py", 28)
    stack = [str(f) for f in t.python_stack(sync.row)]
    assert stack[0].startswith("transformers/modeling_attn_mask_utils.py(429)")
    assert any(f.startswith("torch/nn/modules/module.py") for f in stack)
    (copy,) = metrics.memcpy_events(t).itertuples()
    assert (copy.kind, copy.dst) == ("DtoH", "Pinned")
    assert len(t.memory) == 236


def test_triton_kernel_is_linked_to_its_driver_launch() -> None:
    t = _load(TRITON)
    (kernel,) = [r for r in _rows(t, "triton_poi_fused_add_cos_sin_0") if t.events["is_device"].iat[r]]
    launch = t.launched_by(kernel)
    assert launch is not None
    assert (t.name_of(launch), t.cat_of(launch)) == ("cuLaunchKernel", "cuda_driver")
    assert t.op_chain(launch) == ["Torch-Compiled Region: 0/0", "triton_poi_fused_add_cos_sin_0",
                                  "cuLaunchKernel"]
    assert t.launch_dims(kernel) == ([1, 1, 1], [128, 1, 1])
    (op,) = [r for r in _rows(t, "triton_poi_fused_add_cos_sin_0") if t.cat_of(r) == "cpu_op"]
    assert t.input_dims(op) == [[10, 10], [10, 10], [10, 10], []]
    assert t.args[op].kernel_backend == "triton"


@pytest.mark.parametrize("name", [EVENT_SYNC, NCCL, NS, DF_INDEX, TRITON, BERT, RESNET])
def test_every_real_trace_summarises(name: str) -> None:
    from perftune.trace.summary import summarize

    t = _load(name)
    summary = summarize(t)
    assert summary.steps.count == len(t.steps) > 0
    assert summary.runtime == "cuda"
    assert summary.devices and len(summary.devices) == 1  # only the GPU used
    assert summary.warnings == []
    for b in summary.per_step:
        assert b.device_busy_ms <= b.dur_ms + 1e-6
