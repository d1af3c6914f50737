"""Memory peaks and churn, fusable op patterns, kernel classification and grid fill."""

from __future__ import annotations

from pathlib import Path

import pytest

from perftune.engine.testing import H100, TraceBuilder
from perftune.trace import load
from perftune.trace.kernel_metrics import (
    grid_fill,
    is_conv_kernel,
    is_library_kernel,
    is_matrix_kernel,
    is_triton_kernel,
    kernel_table,
    matrix_kernel_use,
)
from perftune.trace.memory_metrics import allocator_calls, device_memory_peaks, op_at
from perftune.trace.pattern_metrics import find_attention_patterns, find_elementwise_chains

F32, BF16 = "float", "c10::BFloat16"
GEMM = "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64"


# ---------------------------------------------------------------------------- memory
def test_memory_peak_and_the_op_running_at_it(tmp_path: Path) -> None:
    b = TraceBuilder(device=True)
    with b.step():
        with b.op("aten::empty"):
            b.memory_event(1 << 30, total_allocated=3 << 30, total_reserved=4 << 30)
        with b.op("aten::linear"):
            b.memory_event(2 << 30, total_allocated=5 << 30, total_reserved=6 << 30)
            b.kernel(GEMM, dur=10)
        with b.op("aten::add"):
            b.memory_event(-(2 << 30), total_allocated=3 << 30, total_reserved=6 << 30)
    trace = load(b.write(tmp_path / "mem.json.gz"))
    (peak,) = device_memory_peaks(trace)
    assert (peak.rank, peak.device_id, peak.events) == (0, 0, 3)
    assert peak.peak_allocated == 5 << 30 and peak.peak_reserved == 6 << 30
    assert peak.capacity == H100["totalGlobalMem"] and peak.device_name == H100["name"]
    assert peak.allocated_share == pytest.approx((5 << 30) / H100["totalGlobalMem"])
    op = op_at(trace, 0, peak.peak_ts)
    assert op is not None and trace.name_of(op) == "aten::linear"


def test_no_memory_events_no_peaks() -> None:
    b = TraceBuilder(device=True)
    with b.step(), b.op("aten::mm"):
        b.kernel(GEMM, dur=10)
    assert device_memory_peaks(b.trace()) == []


def test_allocator_calls_leave_out_each_ranks_first_step() -> None:
    b = TraceBuilder(device=True)
    for k in range(3):
        with b.step(), b.op("aten::empty"):
            b.runtime("cudaMalloc", dur=100)
            if k == 2:
                b.runtime("cudaFree", dur=50)
    calls = allocator_calls(b.trace())
    assert calls.steady_steps == 2
    assert calls.steps.tolist() == [1, 2, 2]
    assert len(calls.empty_cache_rows) == 0


# ---------------------------------------------------------------------------- patterns
def _ew(b: TraceBuilder, name: str, dims: list[list[int]], types: list[str]) -> None:
    b.leaf(name, dur=50, input_dims=[*dims], input_types=[*types])


def test_elementwise_chain_rules_of_continuity() -> None:
    b = TraceBuilder(device=False)
    big = [512, 512]
    with b.step():
        with b.frame("model.py", 1, "act"):
            _ew(b, "aten::mul", [big, []], [F32, "Scalar"])
            b.leaf("aten::view", dur=1)  # views do not break a chain
            _ew(b, "aten::add", [big, [512]], [F32, F32])
            _ew(b, "aten::tanh", [big], [F32])
            b.leaf("aten::mm", dur=100, input_dims=[big, big], input_types=[F32, F32])  # breaks it
            _ew(b, "aten::mul", [big, []], [F32, "Scalar"])
            _ew(b, "aten::add", [big, []], [F32, "Scalar"])
        with b.frame("model.py", 9, "other"):  # another function: a new chain
            _ew(b, "aten::exp", [big], [F32])
        with b.optimizer_step("SGD"):  # the optimizer's per-parameter ops are PFT303's
            for _ in range(4):
                _ew(b, "aten::add_", [big, big, []], [F32, F32, "Scalar"])
    chains = find_elementwise_chains(b.trace(), min_ops=3, min_numel=1024)
    assert len(chains) == 1
    chain = chains[0]
    assert [n.split("::")[1] for n in chain.names] == ["mul", "add", "tanh"]
    assert chain.shape == (512, 512) and chain.dtype == "fp32" and chain.large_ops == 3
    assert chain.frame is not None and chain.frame.function == "act"
    assert chain.fused_bytes == 2 * 512 * 512 * 4
    assert chain.bytes == 4 * 512 * 512 * 6 + 4 * 512
    assert chain.saving_us == pytest.approx(150 * (1 - chain.fused_bytes / chain.bytes))
    assert find_elementwise_chains(b.trace(), min_ops=3, min_numel=1 << 20) == []


def test_attention_pattern() -> None:
    b = TraceBuilder(device=False)
    q, s = [2, 4, 256, 32], [2, 4, 256, 256]
    with b.step(), b.frame("model.py", 3, "attend"):
        b.leaf("aten::matmul", dur=100, input_dims=[q, [2, 4, 32, 256]], input_types=[F32, F32])
        b.leaf("aten::div", dur=30, input_dims=[s, []], input_types=[F32, "Scalar"])
        b.leaf("aten::softmax", dur=40, input_dims=[s, [], []], input_types=[F32, "Scalar", ""])
        b.leaf("aten::matmul", dur=100, input_dims=[s, q], input_types=[F32, F32])
        # a product without softmax after it is no attention
        b.leaf("aten::matmul", dur=100, input_dims=[q, [2, 4, 32, 256]], input_types=[F32, F32])
        b.leaf("aten::add", dur=30, input_dims=[s, s], input_types=[F32, F32])
    (p,) = find_attention_patterns(b.trace(), min_len=64)
    assert p.scores_shape == (2, 4, 256, 256) and p.head_dim == 32
    assert p.time_us == 270 and p.extra_us == 70
    assert p.score_bytes == 2 * 4 * 256 * 256 * 4
    assert p.frame is not None and p.frame.function == "attend"
    assert find_attention_patterns(b.trace(), min_len=512) == []


# ---------------------------------------------------------------------------- kernels
def test_kernel_name_classes() -> None:
    assert is_matrix_kernel("volta_sgemm_128x64_nn") and is_matrix_kernel(GEMM)
    assert is_conv_kernel("cudnn_infer_volta_scudnn_128x64_relu_small_nn_v1")
    assert is_conv_kernel("sm80_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32_nhwckrsc_nchw")
    assert not is_matrix_kernel("void cudnn::bn_bw_1C11_kernel_new<float, float, float2, 128, true, 1>")
    assert not is_matrix_kernel("void at::native::vectorized_elementwise_kernel<4, float>")
    assert not is_conv_kernel("volta_sgemm_128x64_nn")
    assert is_library_kernel("ncclDevKernel_AllReduce_Sum_f32_RING_LL") and not is_library_kernel("my_kernel")
    assert is_triton_kernel("triton_poi_fused_add_0") and not is_triton_kernel("add_kernel")


def test_fp32_matrix_time_excludes_half_precision_ops() -> None:
    b = TraceBuilder(device=True)
    with b.step():
        with b.op("aten::mm", input_dims=[[64, 64], [64, 64]], input_types=[F32, F32]):
            b.kernel("ampere_sgemm_64x64_nn", dur=100)
        with b.op("aten::mm", input_dims=[[64, 64], [64, 64]], input_types=[BF16, BF16]):
            b.kernel("gemv2T_kernel_val<int, int, __nv_bfloat16>", dur=30)  # no TC marker, bf16 op
        with b.op("aten::mm", input_dims=[[64, 64], [64, 64]], input_types=[BF16, BF16]):
            b.kernel(GEMM, dur=20)
    use = matrix_kernel_use(b.trace())
    assert use.fp32_simt_us == 100 and use.tensor_core_us == 20
    assert use.top_simt == [("ampere_sgemm_64x64_nn", 100.0, 1)]


def test_grid_fill_and_occupancy_columns() -> None:
    b = TraceBuilder(device=True)
    with b.step(), b.op("aten::sum"):
        b.kernel("reduce", dur=50, grid=(16, 1, 1), block=(512, 1, 1), registers_per_thread=32)
        b.kernel("wide", dur=50, grid=(132 * 8 + 10, 1, 1), block=(256, 1, 1), registers_per_thread=32)
    trace = b.trace()
    table = kernel_table(trace)
    assert table["blocks"].tolist() == [16, 132 * 8 + 10] and table["sms"].tolist() == [132, 132]
    fill = grid_fill(trace).set_index("name")
    assert fill.loc["reduce", "fill"] == pytest.approx(16 / 132)
    # 256 threads, 32 registers: 8 resident blocks per SM → 1056 per wave; 1066 blocks = 1.0095 waves
    assert fill.loc["wide", "resident_blocks_per_sm"] == 8
    assert fill.loc["wide", "waves"] == pytest.approx(1066 / 1056)
    assert fill.loc["wide", "wave_efficiency"] == pytest.approx(1066 / 1056 / 2)
    assert fill.loc["wide", "theoretical_occupancy"] == pytest.approx(1.0)
