"""The 3xx–9xx rules on real GPU traces (../shared/traces): concrete, cross-checked numbers.

Figures asserted here were checked independently where possible: exposed communication and
device idle against a brute-force timeline of 10 ns bins, memory peaks against the raw events.
"""

from __future__ import annotations

import gzip
import json
from functools import cache

import numpy as np
import pytest

from perftune.engine.registry import run_rules, select_rules
from perftune.engine.types import Finding
from perftune.trace import load
from perftune.trace.comm import collective_waits, comm_overlap
from perftune.trace.idle_metrics import step_idle
from perftune.trace.kernel_metrics import matrix_kernel_use
from perftune.trace.memory_metrics import device_memory_peaks
from perftune.trace.metrics import device_event_steps
from perftune.trace.model import Trace
from tests.conftest import shared_trace

NCCL = "HolisticTraceAnalysis__nccl_data.json.gz"
DF_INDEX = "HolisticTraceAnalysis__df_index_resolver.json.gz"
RESNET = "param__resnet_kineto.json.gz"
RANK0 = "HolisticTraceAnalysis__rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz"
TRITON = "HolisticTraceAnalysis__triton_example.json.gz"
BERT = "TraceLens__h100__gaunernst_bert-small-uncased__1016001.json.gz"


@cache
def _trace(name: str) -> Trace:
    return load(shared_trace(name))


def trace(name: str) -> Trace:
    shared_trace(name)  # skip cleanly when the folder is absent
    return _trace(name)


@cache
def _findings(name: str) -> tuple[Finding, ...]:
    rules = select_rules(select=["PFT3", "PFT4", "PFT5", "PFT6", "PFT9"], preview=True)
    return tuple(run_rules(trace(name), rules, strict=True))


def findings(name: str, code: str) -> list[Finding]:
    shared_trace(name)
    return [f for f in _findings(name) if f.code == code]


def _bins(starts: np.ndarray, ends: np.ndarray, lo: float, hi: float, res: float = 0.01) -> np.ndarray:
    """A boolean timeline of [lo, hi) in `res`-µs bins, true where any interval covers it."""
    n = int(np.ceil((hi - lo) / res))
    diff = np.zeros(n + 1, dtype=np.int32)
    a = np.clip(np.round((starts - lo) / res).astype(np.int64), 0, n)
    b = np.clip(np.round((ends - lo) / res).astype(np.int64), 0, n)
    np.add.at(diff, a, 1)
    np.add.at(diff, b, -1)
    return np.cumsum(diff[:-1]) > 0


# ---------------------------------------------------------------------------- nccl_data (A100, DDP)
def test_nccl_exposed_communication_matches_a_brute_force_timeline() -> None:
    t = trace(NCCL)
    steps = comm_overlap(t)
    assert [round(c.comm_ms, 3) for c in steps] == [11.989, 12.300, 22.587]
    assert [round(c.exposed_ms, 3) for c in steps] == [10.164, 10.540, 18.856]
    assert [c.kernel_count for c in steps] == [7, 7, 7]
    ev = t.events
    comm = t.comm_kernel_mask
    compute = (ev["cat"] == "kernel").to_numpy() & ~comm
    dev_step = device_event_steps(t)
    ts, end = ev["ts"].to_numpy(), ev["end"].to_numpy()
    for k, c in enumerate(steps):
        sel = comm & (dev_step == k)
        lo, hi = ts[sel].min(), end[sel].max()
        comm_bins = _bins(ts[sel], end[sel], lo, hi)
        cmp = compute & (end > lo) & (ts < hi)
        compute_bins = _bins(ts[cmp], end[cmp], lo, hi)
        brute_exposed = np.count_nonzero(comm_bins & ~compute_bins) * 0.01 / 1000.0
        assert c.exposed_ms == pytest.approx(brute_exposed, abs=0.01)
        assert c.comm_ms == pytest.approx(np.count_nonzero(comm_bins) * 0.01 / 1000.0, abs=0.01)


def test_nccl_pft601_reports_the_exposed_all_reduce() -> None:
    (f,) = findings(NCCL, "PFT601")
    assert f.est_saving_ms_per_step == pytest.approx((10.164 + 10.540 + 18.856) / 3, abs=0.002)
    assert f.evidence["comm_ms_per_step"] == pytest.approx(15.625, abs=0.001)
    assert f.evidence["exposed_ms_per_step_by_kind"]["all_reduce"] == pytest.approx(13.148, abs=0.001)
    assert f.evidence["collective_kernels_per_step"] == 7.0
    assert f.rank == 0 and f.severity.value == "warning"
    assert "bucket_cap_mb" in f.suggestion.knobs


def test_nccl_one_step_waited_for_the_peer() -> None:
    waits = collective_waits(trace(NCCL))
    assert [round(w.wait_ms, 3) for w in waits] == [0.788, 1.099, 11.387]
    assert findings(NCCL, "PFT602") == []  # 4.4 ms mean wait: 2% of a 222 ms step


def test_nccl_tf32_kernels_are_not_fp32_findings() -> None:
    use = matrix_kernel_use(trace(NCCL))
    assert use.tensor_core_us > 10 * use.fp32_simt_us
    assert findings(NCCL, "PFT501") == []


# ---------------------------------------------------------------------------- df_index_resolver
def test_df_index_memory_peak_from_memory_events() -> None:
    t = trace(DF_INDEX)
    (peak,) = device_memory_peaks(t)
    raw = json.loads(gzip.decompress(shared_trace(DF_INDEX).read_bytes()))
    mem = [e["args"] for e in raw["traceEvents"] if e.get("name") == "[memory]" and e["args"].get("Device Type") == 1]
    assert peak.events == len(mem) == 26770
    assert peak.peak_allocated == max(a["Total Allocated"] for a in mem) == 6_629_508_096
    assert peak.peak_reserved == max(a["Total Reserved"] for a in mem) == 12_782_141_440
    assert peak.capacity == 34_089_730_048 and peak.device_name == "Tesla V100-SXM2-32GB"
    assert findings(DF_INDEX, "PFT403") == []  # 37% reserved: far from capacity


def test_df_index_per_step_idle_matches_a_brute_force_timeline() -> None:
    t = trace(DF_INDEX)
    idle = step_idle(t)
    assert [round(s.idle_ms, 3) for s in idle] == [157.328, 177.042, 157.994, 155.971, 88.772]
    assert [round(s.by_cause["host"], 3) for s in idle] == [153.174, 173.061, 153.779, 151.855, 82.942]
    ev = t.events
    work = ev["cat"].isin(["kernel", "gpu_memcpy", "gpu_memset"]).to_numpy()
    ts, end = ev["ts"].to_numpy(), ev["end"].to_numpy()
    assert np.all(ts == np.round(ts)) and np.all(end == np.round(end))  # whole µs: 1 µs bins are exact
    for s in idle:
        step = t.steps[s.step]
        sel = work & (end > step.start) & (ts < step.end)
        busy = _bins(ts[sel], end[sel], step.start, step.end, res=1.0)
        assert s.idle_ms == pytest.approx(np.count_nonzero(~busy) / 1000.0, abs=1e-6)


def test_df_index_per_parameter_sgd_and_unbucketed_all_reduce() -> None:
    (opt,) = findings(DF_INDEX, "PFT303")
    assert opt.evidence["optimizer"] == "SGD" and opt.evidence["calls"] == 5
    assert opt.evidence["op_counts_per_step"] == {"aten::add_": 404.0}
    assert opt.evidence["kernels_per_step"] == 404.0
    assert opt.suggestion.knobs == {"optimizer_impl": ["foreach", "fused"]}
    (comm,) = findings(DF_INDEX, "PFT601")
    assert comm.evidence["collective_kernels_per_step"] == 404.0
    assert comm.evidence["exposed_share_of_comm"] == 1.0
    assert comm.est_saving_ms_per_step == pytest.approx(71.469, abs=0.001)
    assert "not bucketed" in comm.message
    (fp32,) = findings(DF_INDEX, "PFT501")
    assert fp32.evidence["top_fp32_kernels"][0]["kernel"] == "volta_sgemm_128x32_nt"
    assert fp32.suggestion.knobs == {"precision": ["fp16"]}


# ---------------------------------------------------------------------------- resnet (2080 Ti)
def test_resnet_idle_is_input_starvation() -> None:
    (f,) = findings(RESNET, "PFT301")
    ev = f.evidence
    assert ev["dominant_cause"] == "input"
    assert ev["idle_share"] == pytest.approx(0.5306, abs=1e-4)
    assert ev["by_cause_ms_per_step"]["input"] == pytest.approx(175.619, abs=0.001)
    assert ev["by_cause_ms_per_step"]["input"] / ev["idle_ms_per_step"] > 0.99
    assert ev["dataloader"] == "enumerate(DataLoader)#_MultiProcessingDataLoaderIter.__next__"
    assert f.op_chain == ("enumerate(DataLoader)#_MultiProcessingDataLoaderIter.__next__",)
    assert f.severity.value == "error" and "DataLoader" in f.suggestion.title
    worst = ev["worst_steps"][0]
    assert (worst["step"], worst["idle_ms"]) == (24, 671.984)


def test_resnet_fp32_convolutions_on_turing() -> None:
    (f,) = findings(RESNET, "PFT501")
    assert f.evidence["compute_capability"] == "7.5"
    assert f.evidence["share_of_kernel_time"] == pytest.approx(0.6693, abs=1e-4)
    assert f.suggestion.knobs == {"precision": ["fp16"]}


# ---------------------------------------------------------------------------- rank-0 ns trace (V100)
def test_rank0_fp32_convs_on_v100_with_tensor_cores() -> None:
    t = trace(RANK0)
    use = matrix_kernel_use(t)
    assert use.tensor_core_us == 0.0
    assert use.fp32_simt_us == pytest.approx(297779.195, abs=0.01)
    (f,) = findings(RANK0, "PFT501")
    assert f.evidence["device"] == "Tesla V100-SXM2-32GB" and f.evidence["compute_capability"] == "7.0"
    assert f.evidence["fp32_matrix_ms_per_step"] == pytest.approx(59.556, abs=0.001)
    assert f.evidence["peak_fp32_tflops"] == 15.7 and f.evidence["peak_fp16_tflops"] == 125.0
    # 3× assumed (the 8× peak ratio capped): two thirds of the fp32 matrix time
    assert f.est_saving_ms_per_step == pytest.approx(59.556 * 2 / 3, abs=0.001)
    assert findings(RANK0, "PFT301") == []  # device-bound: about 1 ms idle in a 95 ms step


# ---------------------------------------------------------------------------- triton (A100)
def test_triton_kernel_with_one_block() -> None:
    (f,) = findings(TRITON, "PFT506")
    ev = f.evidence
    assert ev["kernel"] == "triton_poi_fused_add_cos_sin_0"
    assert (ev["blocks"], ev["sms"], ev["num_warps"]) == (1, 108, 4)
    assert ev["launch_metadata"]["kernel_backend"] == "triton"
    assert f.suggestion.knobs == {"compile_mode": ["default", "max-autotune"]}
    (idle,) = findings(TRITON, "PFT301")
    assert idle.severity.value == "warning" and "one step only" in idle.message


# ---------------------------------------------------------------------------- BERT (H100)
def test_bert_vocabulary_is_misaligned_and_profiler_heavy() -> None:
    (f,) = findings(BERT, "PFT502")
    assert f.evidence["dims"] == {"M": 141, "K": 512, "N": 30522}
    assert f.evidence["padded_to_64"] == {"N": 30528}
    (overhead,) = findings(BERT, "PFT903")
    assert (overhead.evidence["cpu_ops"], overhead.evidence["python_events"]) == (479, 1276)
    assert [g.code for g in findings(BERT, "PFT901")] == ["PFT901"]
    # residual add + layer_norm + eval-mode dropout: dropout launches nothing, no chain
    assert findings(BERT, "PFT401") == []
