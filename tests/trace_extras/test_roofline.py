"""FLOP/byte estimation from shapes, outermost-op counting, peaks and roofline placement."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import pytest

from perftune.engine.testing import TraceBuilder
from perftune.trace import load
from perftune.trace.roofline import (
    Peaks,
    base_name,
    counted_ops,
    device_peaks,
    op_cost,
    op_kind,
    peaks,
    roofline_points,
    uses_tensor_cores,
)

F32, BF16 = "float", "c10::BFloat16"


def test_names_and_kinds() -> None:
    assert base_name("aten::add_") == "add"
    assert base_name("aten::_softmax") == "_softmax"
    assert base_name("aten::copy_") == "copy_"
    assert op_kind("aten::addmm") == "gemm"
    assert op_kind("aten::cudnn_convolution") == "conv"
    assert op_kind("aten::convolution_backward") == "conv"
    assert op_kind("aten::_flash_attention_forward") == "attention"
    assert op_kind("aten::mul_") == "elementwise"
    assert op_kind("aten::native_layer_norm") == "norm"
    assert op_kind("aten::sum") == "reduction"
    assert op_kind("aten::copy_") == "copy"
    assert op_kind("aten::view") is None
    assert op_kind("Optimizer.step#SGD.step") is None


def test_matrix_products() -> None:
    mm = op_cost("aten::mm", [[128, 256], [256, 64]], [F32, F32])
    assert mm is not None
    assert mm.flops == 2 * 128 * 256 * 64
    assert mm.bytes == 4 * (128 * 256 + 256 * 64 + 128 * 64)
    addmm = op_cost("aten::addmm", [[64], [128, 256], [256, 64], [], []], [F32, F32, F32, "Scalar", "Scalar"])
    assert addmm is not None and addmm.flops == 2 * 128 * 256 * 64
    assert addmm.bytes == 4 * (64 + 128 * 256 + 256 * 64 + 128 * 64)
    bmm = op_cost("aten::bmm", [[8, 32, 16], [8, 16, 4]], [BF16, BF16])
    assert bmm is not None and bmm.flops == 2 * 8 * 32 * 16 * 4 and bmm.dtype == "bf16"
    assert bmm.bytes == 2 * (8 * 32 * 16 + 8 * 16 * 4 + 8 * 32 * 4)
    linear = op_cost("aten::linear", [[4, 10, 512], [1024, 512], [1024]], [F32, F32, F32])
    assert linear is not None and linear.flops == 2 * 40 * 512 * 1024
    # matmul broadcasts batch dims and promotes 1-D operands
    mat = op_cost("aten::matmul", [[2, 1, 8, 16], [3, 16, 5]], [F32, F32])
    assert mat is not None and mat.flops == 2 * 6 * 8 * 16 * 5
    vec = op_cost("aten::matmul", [[16], [16, 5]], [F32, F32])
    assert vec is not None and vec.flops == 2 * 16 * 5
    assert op_cost("aten::matmul", [[2, 8, 16], [3, 16, 5]], [F32, F32]) is None  # not broadcastable


def test_convolutions_use_concrete_stride_and_padding() -> None:
    # 3x3 stride-2 pad-1 conv: 56 → 28
    conv = op_cost("aten::conv2d", [[8, 64, 56, 56], [128, 64, 3, 3], [128], [], [], [], []],
                   [F32, F32, F32, "ScalarList", "ScalarList", "ScalarList", "Scalar"],
                   ["", "", "", "[2, 2]", "[1, 1]", "[1, 1]", "1"])
    assert conv is not None
    assert conv.flops == 2 * 8 * 128 * 28 * 28 * 64 * 9
    out_bytes = 8 * 128 * 28 * 28 * 4
    assert conv.bytes == 4 * (8 * 64 * 56 * 56 + 128 * 64 * 9 + 128) + out_bytes
    # cudnn_convolution puts padding before stride
    cud = op_cost("aten::cudnn_convolution", [[8, 64, 56, 56], [128, 64, 3, 3], [], [], [], []],
                  [F32, F32, "ScalarList", "ScalarList", "ScalarList", "Scalar"],
                  ["", "", "[1, 1]", "[2, 2]", "[1, 1]", "1"])
    assert cud is not None and cud.flops == conv.flops
    # grouped (depthwise) weights carry C/groups; without arguments: 'same' size
    dw = op_cost("aten::convolution", [[8, 64, 56, 56], [64, 1, 3, 3]], [F32, F32])
    assert dw is not None and dw.flops == 2 * 8 * 64 * 56 * 56 * 9
    back = op_cost("aten::convolution_backward", [[8, 128, 28, 28], [8, 64, 56, 56], [128, 64, 3, 3]],
                   [F32, F32, F32])
    assert back is not None and back.flops == 2 * conv.flops


def test_attention_layouts() -> None:
    sdpa = op_cost("aten::scaled_dot_product_attention", [[2, 8, 128, 64], [2, 8, 256, 64], [2, 8, 256, 64]],
                   [BF16, BF16, BF16])
    assert sdpa is not None and sdpa.flops == 4 * 2 * 8 * 128 * 256 * 64
    flash = op_cost("aten::_flash_attention_forward", [[2, 128, 8, 64], [2, 256, 8, 64], [2, 256, 8, 64]],
                    [BF16, BF16, BF16])
    assert flash is not None and flash.flops == sdpa.flops


def test_elementwise_norm_reduction_copy() -> None:
    add = op_cost("aten::add", [[256, 1024], [1024], []], [F32, F32, "Scalar"])
    assert add is not None and add.kind == "elementwise"
    assert add.flops == 256 * 1024
    assert add.bytes == 4 * (256 * 1024 + 1024) + 4 * 256 * 1024
    assert add.intensity == pytest.approx(add.flops / add.bytes)
    eq = op_cost("aten::eq", [[1000], []], ["long int", "Scalar"])
    assert eq is not None and eq.bytes == 8 * 1000 + 1000  # bool output
    fma = op_cost("aten::addcmul_", [[100], [100], [100], []], [F32, F32, F32, "Scalar"])
    assert fma is not None and fma.flops == 200
    ln = op_cost("aten::native_layer_norm", [[32, 512], [], [512], [512], []], [BF16, "ScalarList", BF16, BF16, "Scalar"])
    assert ln is not None and ln.kind == "norm" and ln.flops == 8 * 32 * 512
    total = op_cost("aten::sum", [[64, 64], [], [], []], [F32, "ScalarList", "Scalar", ""])
    assert total is not None and total.bytes == 4 * 64 * 64
    copy = op_cost("aten::copy_", [[10, 10], [10, 10], []], [BF16, F32, "Scalar"])
    assert copy is not None and copy.flops == 0 and copy.bytes == 2 * 100 + 4 * 100
    assert op_cost("aten::add", [[], []], ["Scalar", "Scalar"]) is None
    assert op_cost("aten::add", None, None) is None


def test_tensor_core_kernel_names() -> None:
    for name in ("volta_h884gemm_64x64_nn", "ampere_s16816gemm_tf32_128x128_nn",
                 "sm80_xmma_gemm_bf16bf16_bf16f32_f32_tn_n", "sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_wgmma",
                 "void cutlass::Kernel<cutlass_80_tensorop_s1688gemm_256x64_16x4_nn_align4>",
                 "nvjet_hsh_128x256_64x4_2x1_v_bz_coopB_TNT",
                 "Cijk_Ailk_Bljk_BBS_BH_MT128x128x32_MI32x32x8x1_SN"):
        assert uses_tensor_cores(name), name
    for name in ("volta_sgemm_128x64_nn", "ampere_sgemm_64x32_sliced1x4_nn",
                 "cudnn_infer_volta_scudnn_128x64_relu_small_nn_v1",
                 "void cudnn::detail::implicit_convolve_sgemm<float>",
                 "void cudnn::winograd_nonfused::winogradForwardData4x4<float, float>"):
        assert not uses_tensor_cores(name), name


def test_counted_ops_keep_the_outermost_costed_op() -> None:
    b = TraceBuilder(device=True)
    with b.step():
        with b.op("aten::linear", input_dims=[[64, 512], [256, 512], [256]], input_types=[F32] * 3), \
                b.op("aten::addmm", input_dims=[[256], [64, 512], [512, 256], [], []],
                     input_types=[F32, F32, F32, "Scalar", "Scalar"]):
            with b.op("aten::copy_", input_dims=[[64, 256], [256], []], input_types=[F32, F32, "Scalar"]):
                b.kernel("void copy_kernel", dur=3)
            b.kernel("ampere_sgemm_64x32_nn", dur=40)
        with b.op("aten::view", input_dims=[[64, 256], []], input_types=[F32, "ScalarList"]):
            pass
    trace = b.trace()
    counted = counted_ops(trace)
    assert [trace.name_of(r) for r in counted] == ["aten::linear"]
    points = roofline_points(trace)
    assert list(points["name"]) == ["aten::linear"]
    row = points.iloc[0]
    # the op's device time is every kernel launched under it
    assert row["dur_us"] == pytest.approx(43.0)
    assert row["flops"] == 2 * 64 * 512 * 256
    assert row["achieved_flops_per_s"] == pytest.approx(row["flops"] / 43e-6)
    h100 = device_peaks({"name": "NVIDIA H100 80GB HBM3"})
    assert row["peak_flops_per_s"] == pytest.approx(h100.flops_per_s)
    assert row["bound"] == ("memory" if row["intensity"] < h100.ridge else "compute")


def test_fp32_gemm_on_tensor_cores_is_placed_against_tf32() -> None:
    b = TraceBuilder(device=True)
    with b.step(), b.op("aten::mm", input_dims=[[4096, 4096], [4096, 4096]], input_types=[F32, F32]):
        b.kernel("ampere_s16816gemm_tf32_128x128_nn", dur=2000)
    points = roofline_points(b.trace())
    assert points.iloc[0]["dtype"] == "tf32"
    assert points.iloc[0]["peak_flops_per_s"] == pytest.approx(494.7e12)
    assert points.iloc[0]["bound"] == "compute"


def test_cpu_ops_without_device_work_are_not_placed_in_gpu_traces() -> None:
    b = TraceBuilder(device=True)
    with b.step():
        b.leaf("aten::add", dur=5, input_dims=[[100], [100], []], input_types=[F32, F32, "Scalar"])
        with b.op("aten::mul", input_dims=[[100], []], input_types=[F32, "Scalar"]):
            b.kernel("void mul_kernel", dur=2)
    points = roofline_points(b.trace())
    assert list(points["name"]) == ["aten::mul"]


def _cpu_trace(tmp_path: Path) -> Path:
    b = TraceBuilder(device=False)
    with b.step():
        b.leaf("aten::mul", dur=100.0, input_dims=[[1024, 1024], []], input_types=[F32, "Scalar"])
    return b.write(tmp_path / "cpu.json.gz")


def test_cpu_trace_uses_cached_machine_peaks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "machine.json").write_text(json.dumps({
        "schema": 1, "flops_per_s": 100e9, "bytes_per_s": 20e9, "method": "numpy",
        "hostname": socket.gethostname(), "cpu": "Test CPU", "threads": 4,
        "measured_at": "2026-01-01T00:00:00+00:00", "matmul_n": 1024, "copy_bytes": 1 << 26}))
    monkeypatch.setenv("PERFTUNE_CACHE_DIR", str(cache))
    trace = load(_cpu_trace(tmp_path))
    roofs = peaks(trace)
    assert roofs.source == "measured: numpy on Test CPU"
    assert roofs.ridge == pytest.approx(5.0)
    point = roofline_points(trace).iloc[0]
    assert point["dur_us"] == 100.0
    assert point["achieved_bytes_per_s"] == pytest.approx(8 * 1024 * 1024 / 100e-6)
    assert point["bound"] == "memory"
    assert point["efficiency"] == pytest.approx(point["achieved_flops_per_s"] / (point["intensity"] * 20e9))


def test_cpu_trace_without_cache_has_unknown_peaks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFTUNE_CACHE_DIR", str(tmp_path / "empty"))
    trace = load(_cpu_trace(tmp_path))
    roofs = peaks(trace)
    assert not roofs.known and roofs.source == "unknown"
    assert math.isnan(roofs.ridge)
    assert roofline_points(trace).iloc[0]["bound"] == "unknown"
    assert not (tmp_path / "empty").exists()  # analysis never measures behind the user's back


def test_unknown_gpu_peaks() -> None:
    roofs = device_peaks({"name": "Mystery GPU"})
    assert not roofs.known and "Mystery GPU" in roofs.source
    assert Peaks(1e12, 1e11, "x").flops_for("bf16") == 1e12
