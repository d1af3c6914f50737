"""Known false positives on real code (issue 13, section 5), each on a trace built the way the
real one looks, plus the shared GPU traces: each test failed before its fix."""

from __future__ import annotations

from typing import Any

from perftune.engine.fixtures import A100, ADD_KERNEL, BF16, F32, op_kernel
from perftune.engine.registry import run_rules, select_rules
from perftune.engine.testing import TraceBuilder
from tests.conftest import shared_trace


def _findings(b: TraceBuilder | Any, code: str) -> list[Any]:
    trace = b.trace() if isinstance(b, TraceBuilder) else b
    return [f for f in run_rules(trace, select_rules([code], preview=True), strict=True) if f.code == code]


def _load(name: str) -> Any:
    from perftune.trace import load

    return load(shared_trace(name))


# ---------------------------------------------------------------------------- PFT303
def _optimizer_trace(device: bool, cls: str, kernel: str = ADD_KERNEL, params: int = 40) -> TraceBuilder:
    b = TraceBuilder(device=device)
    for _ in range(3):
        with b.step(), b.frame("train.py", 10, "train"):
            if device:
                op_kernel(b, "aten::linear", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 800)
            else:
                b.leaf("aten::linear", dur=800, input_dims=[[64, 512], [512, 512], [512]], input_types=[F32] * 3)
            with b.optimizer_step(cls):
                for _ in range(params):
                    for name in ("aten::mul_", "aten::add_"):
                        dims = [[512, 512], [512, 512]]
                        if device:
                            op_kernel(b, name, kernel, 3.0, dims, [F32, F32])
                        else:
                            b.leaf(name, dur=4.0, input_dims=dims, input_types=[F32, F32])
    return b


def test_pft303_is_silent_on_fused_adam_and_multi_tensor_kernels() -> None:
    # apex / DeepSpeed FusedAdam: its own class, multi_tensor_apply kernels
    assert _findings(_optimizer_trace(True, "FusedAdam"), "PFT303") == []
    multi = "void multi_tensor_apply_kernel<TensorListMetadata<4>, AdamFunctor<float>, float>(long, int*, TensorListMetadata<4>, AdamFunctor<float>, float)"
    assert _findings(_optimizer_trace(True, "DeepSpeedCPUAdam", kernel=multi), "PFT303") == []


def test_pft303_never_names_an_optimizer_torch_optim_does_not_have() -> None:
    found = _findings(_optimizer_trace(True, "Lion"), "PFT303")
    assert len(found) == 1
    text = found[0].suggestion.title + (found[0].suggestion.after or "")
    assert "torch.optim.Lion" not in text and "generic advice" in text
    assert "torch.optim.Adam(" in _findings(_optimizer_trace(True, "Adam"), "PFT303")[0].suggestion.title


def test_pft303_is_silent_on_torch_optim_defaults_in_a_cpu_run() -> None:
    # torch.optim picks foreach by default when the parameters are on a GPU: the per-parameter
    # ops of a CPU run are not something to change in the script.
    assert _findings(_optimizer_trace(False, "AdamW"), "PFT303") == []
    assert len(_findings(_optimizer_trace(False, "Lion"), "PFT303")) == 1


def test_pft303_saving_is_the_measured_time_of_the_ops_it_removes() -> None:
    f = _findings(_optimizer_trace(True, "Adam"), "PFT303")[0]
    assert f.est_saving_ms_per_step <= f.evidence["optimizer_host_ms_per_step"]


# ---------------------------------------------------------------------------- PFT603
def _ddp_trace(ddp: bool) -> TraceBuilder:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("train.py", 20, "train"):
            if ddp:
                with b.frame("torch/nn/parallel/distributed.py", 1632, "forward"), \
                        b.annotation("DistributedDataParallel.forward"), \
                        b.frame("torch/nn/parallel/distributed.py", 1500, "_to_kwargs"), \
                        b.frame("torch/nn/parallel/scatter_gather.py", 85, "scatter_kwargs"):
                    op_kernel(b, "aten::to", ADD_KERNEL, 5)
            else:
                with b.frame("torch/nn/parallel/data_parallel.py", 180, "forward"), \
                        b.frame("torch/nn/parallel/replicate.py", 90, "replicate"):
                    op_kernel(b, "aten::to", ADD_KERNEL, 5)
            op_kernel(b, "aten::mm", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 500)
    return b


def test_pft603_is_silent_on_distributed_data_parallel() -> None:
    assert _findings(_ddp_trace(ddp=True), "PFT603") == []
    assert len(_findings(_ddp_trace(ddp=False), "PFT603")) == 1


def test_pft603_is_silent_on_the_real_ddp_trace() -> None:
    assert _findings(_load("HolisticTraceAnalysis__nccl_data.json.gz"), "PFT603") == []


# ---------------------------------------------------------------------------- PFT502
def _linear_trace(device: bool, dtype: str, k: int, n: int) -> TraceBuilder:
    b = TraceBuilder(device=device)
    gemm = ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64" if dtype == BF16
            else "ampere_sgemm_128x64_nn")  # plain FP32: no tensor cores, no TF32
    for _ in range(3):
        with b.step(), b.frame("train.py", 30, "forward"):
            dims = [[8, 1024, k], [n, k]]
            if device:
                op_kernel(b, "aten::linear", gemm, 3000.0, dims, [dtype, dtype, ""])
                op_kernel(b, "aten::linear", gemm, 500.0, [[8, 1024, 768], [768, 768]], [dtype, dtype, ""])
            else:
                b.leaf("aten::linear", dur=3000.0, input_dims=dims, input_types=[dtype, dtype, ""])
    return b


def test_pft502_is_silent_on_cpu_and_fp32_traces() -> None:
    assert _findings(_linear_trace(False, F32, 768, 50257), "PFT502") == []
    assert _findings(_linear_trace(True, F32, 768, 50257), "PFT502") == []
    assert len(_findings(_linear_trace(True, BF16, 768, 50257), "PFT502")) == 1


def test_pft502_advice_fits_the_dimension_it_names() -> None:
    out = _findings(_linear_trace(True, BF16, 768, 50257), "PFT502")[0].suggestion.after or ""
    assert "50304" in out and "out_features 50257" in out
    inner = _findings(_linear_trace(True, BF16, 1001, 768), "PFT502")[0].suggestion.after or ""
    assert "vocab" not in inner and "50304" not in inner and "in_features 1001" in inner


def test_pft502_on_the_real_bert_trace_pads_the_vocabulary_it_found() -> None:
    found = _findings(_load("TraceLens__h100__gaunernst_bert-small-uncased__1016001.json.gz"), "PFT502")
    for f in found:
        assert "50304" not in (f.suggestion.after or "")
        assert f"out_features {f.evidence['dims']['N']}" in (f.suggestion.after or "") or "N" not in f.evidence["misaligned"]


# ---------------------------------------------------------------------------- PFT503 / PFT504
def _small_grid_trace(kernel: str) -> TraceBuilder:
    b = TraceBuilder(device=True, device_properties=[dict(A100)])
    for _ in range(3):
        with b.step(), b.frame("train.py", 40, "train"):
            with b.op("aten::mm"):
                b.kernel(kernel, dur=400.0, grid=(4, 1, 1), block=(128, 1, 1), registers_per_thread=255)
            with b.op("c10d::allreduce_"):
                b.kernel(kernel, dur=400.0, grid=(4, 1, 1), block=(128, 1, 1), registers_per_thread=255)
    return b


def test_pft503_and_pft504_are_silent_on_vendor_tuned_and_nvls_kernels() -> None:
    for name in ("ampere_sgemm_128x64_nn", "void cudnn::winograd_nonfused::winogradForwardData4x4<float>(...)",
                 "void cutlass::Kernel<cutlass_80_tensorop_s1688gemm_64x64_32x6_nn_align4>(Params)",
                 "ncclDevKernel_AllReduce_Sum_bf16_NVLS(ncclDevComm*, unsigned long, ncclWork*)",
                 "void c10d::symmetric_memory::multimem_all_reduce_kernel<float, 4>(float*, unsigned long)",
                 "void wgrad_alg0_engine<float, 128, 6, 8, 3, 3, 5, false, 512>(int, int, int, float*)",
                 "void flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4> >(Flash_fwd_params)"):
        b = _small_grid_trace(name)
        assert _findings(b, "PFT503") == [], name
        assert _findings(b, "PFT504") == [], name
    assert len(_findings(_small_grid_trace("my_custom_reduce_kernel(float*)"), "PFT503")) == 1


def test_pft504_is_silent_on_the_real_cudnn_kernel() -> None:
    trace = _load("HolisticTraceAnalysis__rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz")
    assert _findings(trace, "PFT504") == []


# ---------------------------------------------------------------------------- PFT401
def _chain_trace(ops: list[str], counter_between: bool = False) -> TraceBuilder:
    b = TraceBuilder(device=True)
    dims = [[64, 1024, 1024]]
    for _ in range(3):
        with b.step(), b.frame("train.py", 50, "forward"):
            op_kernel(b, "aten::mm", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 500)
            for i, name in enumerate(ops):
                if counter_between and i == 1:
                    op_kernel(b, "aten::add_", ADD_KERNEL, 2.0, [[], []], ["long int", "long int"])
                op_kernel(b, name, ADD_KERNEL, 400.0, [*dims, []], [F32, ""])
    return b


def test_pft401_does_not_join_an_int64_counter_to_an_activation_chain() -> None:
    found = _findings(_chain_trace(["aten::mul", "aten::sigmoid", "aten::mul"], counter_between=True), "PFT401")
    assert found, "the activation chain itself is still reported"
    for f in found:
        assert len(f.op_chain) == 3, f.op_chain


def test_pft401_gives_a_builtin_only_for_the_function_the_chain_is() -> None:
    quick_gelu = _findings(_chain_trace(["aten::mul", "aten::sigmoid", "aten::mul"]), "PFT401")[0]
    text = (quick_gelu.suggestion.title + (quick_gelu.suggestion.after or "")).lower()
    assert "silu" not in text and "approximate" not in text and "generic advice" in text
    gelu = _findings(_chain_trace(["aten::pow", "aten::mul", "aten::add", "aten::mul", "aten::tanh",
                                   "aten::add", "aten::mul", "aten::mul"]), "PFT401")[0]
    assert 'approximate="tanh"' in gelu.suggestion.title


def test_pft603_is_silent_on_aten_gather_backward() -> None:
    # torch.gather's backward node is "GatherBackward0"; DataParallel's Python Function is
    # "GatherBackward" (no digit).
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step(), b.frame("train.py", 60, "train"):
            b.leaf("aten::gather", dur=20)
            b.leaf("autograd::engine::evaluate_function: GatherBackward0", dur=20)
    assert _findings(b, "PFT603") == []
