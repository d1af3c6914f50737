"""Fixture traces of the 3xx/4xx/5xx/6xx/9xx rule folders, built with the TraceBuilder.

Each builder returns the trace as a dict; `write_all()` writes them to
`rules/<folder>/<name>.json.gz` (gzip with mtime 0, so the bytes only change when the builder
does). `test_fixtures.py` checks the committed files are what these builders produce; rewrite
them with `PERFTUNE_BLESS=1 pytest tests/rules_catalogue2/test_fixtures.py`.

Python frames point at the folder's `bad.py` (`bad.py(1): gelu` is the `def` line, as the
profiler records it), so findings resolve to lines of the snippet users read.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perftune._resources import rules_dir
from perftune.engine.testing import TraceBuilder

A100 = {"id": 0, "name": "NVIDIA A100-SXM4-40GB", "totalGlobalMem": 42297524224, "computeMajor": 8,
        "computeMinor": 0, "maxThreadsPerBlock": 1024, "maxThreadsPerMultiprocessor": 2048,
        "regsPerBlock": 65536, "regsPerMultiprocessor": 65536, "warpSize": 32,
        "sharedMemPerBlock": 49152, "sharedMemPerMultiprocessor": 167936, "numSms": 108,
        "sharedMemPerBlockOptin": 166912}
V100 = {"id": 0, "name": "Tesla V100-SXM2-32GB", "totalGlobalMem": 34089730048, "computeMajor": 7,
        "computeMinor": 0, "maxThreadsPerBlock": 1024, "maxThreadsPerMultiprocessor": 2048,
        "regsPerBlock": 65536, "regsPerMultiprocessor": 65536, "warpSize": 32,
        "sharedMemPerBlock": 49152, "sharedMemPerMultiprocessor": 98304, "numSms": 80,
        "sharedMemPerBlockOptin": 98304}

F32 = "float"
BF16 = "c10::BFloat16"
ADD_KERNEL = "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>, at::detail::Array<char*, 3> >(int, at::native::CUDAFunctor_add<float>, at::detail::Array<char*, 3>)"
NCCL_ALLREDUCE = "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm*, unsigned long, ncclWork*)"

Builder = Callable[[], dict[str, Any]]
FIXTURES: dict[str, dict[str, Builder]] = {}


def fixture(folder: str, name: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        FIXTURES.setdefault(folder, {})[name] = fn
        return fn
    return register


def _op_kernel(b: TraceBuilder, op: str, kernel: str, dur: float, dims: list[Any] | None = None,
               types: list[Any] | None = None, **kw: Any) -> None:
    with b.op(op, input_dims=dims, input_types=types):
        b.kernel(kernel, dur=dur, **kw)


# ---------------------------------------------------------------------------- PFT301
@fixture("pft301_device_idle", "gpu")
def idle_input() -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(4):
        with b.step(), b.frame("bad.py", 1, "train"):
            with b.dataloader(dur=3000):
                pass
            for _ in range(4):
                _op_kernel(b, "aten::linear", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 250)
    return b.to_dict()


@fixture("pft301_device_idle", "clean")
def idle_clean() -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(4):
        with b.step(), b.frame("bad.py", 1, "train"):
            with b.dataloader(dur=40):
                pass
            for _ in range(4):
                _op_kernel(b, "aten::linear", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 1500)
            b.advance(5000)  # the host runs ahead; the device stays busy across steps
    return b.to_dict()


# ---------------------------------------------------------------------------- PFT302
@fixture("pft302_launch_bound_tiny_kernels", "gpu")
def tiny_gpu() -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "update"):
            for _ in range(200):
                _op_kernel(b, "aten::add_", ADD_KERNEL, 2.0, [[256], [256], []], [F32, F32, "Scalar"],
                           grid=(1, 1, 1), block=(128, 1, 1), launch_dur=6.0)
    return b.to_dict()


@fixture("pft302_launch_bound_tiny_kernels", "clean")
def tiny_clean() -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "update"):
            for _ in range(20):
                _op_kernel(b, "aten::add_", ADD_KERNEL, 500.0, [[1 << 24], [1 << 24], []], [F32, F32, "Scalar"])
    return b.to_dict()


# ---------------------------------------------------------------------------- PFT303
_ADAM_OPS = ("aten::mul_", "aten::add_", "aten::addcmul_", "aten::sqrt", "aten::div", "aten::addcdiv_")


def _adam(device: bool, foreach: bool) -> dict[str, Any]:
    b = TraceBuilder(device=device)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "train_step"):
            if device:
                _op_kernel(b, "aten::linear", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 800)
            else:
                b.leaf("aten::linear", dur=800, input_dims=[[64, 512], [512, 512], [512]], input_types=[F32] * 3)
            with b.optimizer_step("Adam"):
                if foreach:
                    for name in ("aten::_foreach_mul_", "aten::_foreach_add_", "aten::_foreach_addcmul_",
                                 "aten::_foreach_sqrt", "aten::_foreach_div_", "aten::_foreach_addcdiv_"):
                        if device:
                            _op_kernel(b, name, "void at::native::multi_tensor_apply_kernel<float>", 20)
                        else:
                            b.leaf(name, dur=40)
                    continue
                for _ in range(40):
                    for name in _ADAM_OPS:
                        dims = [[512, 512], [512, 512]]
                        if device:
                            _op_kernel(b, name, ADD_KERNEL, 3.0, dims, [F32, F32], launch_dur=5.0)
                        else:
                            b.leaf(name, dur=4.0, input_dims=dims, input_types=[F32, F32])
    return b.to_dict()


fixture("pft303_per_parameter_optimizer", "gpu")(lambda: _adam(True, False))
fixture("pft303_per_parameter_optimizer", "cpu")(lambda: _adam(False, False))
fixture("pft303_per_parameter_optimizer", "clean")(lambda: _adam(True, True))


# ---------------------------------------------------------------------------- PFT304
@fixture("pft304_host_bound_python_overhead", "gpu")
def host_gpu() -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "rnn_step"):
            for _ in range(100):
                b.advance(60)  # Python between ops
                _op_kernel(b, "aten::tanh", ADD_KERNEL, 5.0, [[32, 256]], [F32])
    return b.to_dict()


@fixture("pft304_host_bound_python_overhead", "cpu")
def host_cpu() -> dict[str, Any]:
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "rnn_step"):
            for _ in range(300):
                b.advance(10)
                b.leaf("aten::add", dur=3.0, input_dims=[[32, 256], [32, 256], []], input_types=[F32, F32, "Scalar"])
    return b.to_dict()


@fixture("pft304_host_bound_python_overhead", "clean")
def host_clean() -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "rnn_step"):
            for _ in range(10):
                b.advance(20)
                _op_kernel(b, "aten::mm", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 800)
            b.advance(8000)
    return b.to_dict()


# ---------------------------------------------------------------------------- PFT401
_GELU = [("aten::pow", [[256, 1024], []], [F32, "Scalar"]),
         ("aten::mul", [[256, 1024], []], [F32, "Scalar"]),
         ("aten::add", [[256, 1024], [256, 1024], []], [F32, F32, "Scalar"]),
         ("aten::mul", [[256, 1024], []], [F32, "Scalar"]),
         ("aten::tanh", [[256, 1024]], [F32]),
         ("aten::add", [[256, 1024], [], []], [F32, "Scalar", "Scalar"]),
         ("aten::mul", [[256, 1024], []], [F32, "Scalar"]),
         ("aten::mul", [[256, 1024], [256, 1024]], [F32, F32])]
_LAYER_NORM = [("aten::mean", [[256, 1024], [], [], []], [F32, "ScalarList", "Scalar", ""]),
               ("aten::sub", [[256, 1024], [256, 1], []], [F32, F32, "Scalar"]),
               ("aten::pow", [[256, 1024], []], [F32, "Scalar"]),
               ("aten::mean", [[256, 1024], [], [], []], [F32, "ScalarList", "Scalar", ""]),
               ("aten::sub", [[256, 1024], [256, 1], []], [F32, F32, "Scalar"]),
               ("aten::add", [[256, 1], [], []], [F32, "Scalar", "Scalar"]),
               ("aten::sqrt", [[256, 1]], [F32]),
               ("aten::div", [[256, 1024], [256, 1]], [F32, F32]),
               ("aten::mul", [[256, 1024], [1024]], [F32, F32]),
               ("aten::add", [[256, 1024], [1024], []], [F32, F32, "Scalar"])]


def _chains(device: bool, fused: bool) -> dict[str, Any]:
    b = TraceBuilder(device=device)
    for _ in range(3):
        with b.step():
            with b.frame("bad.py", 1, "gelu"):
                ops = [("aten::gelu", [[256, 1024], []], [F32, ""])] if fused else _GELU
                for name, dims, types in ops:
                    if device:
                        _op_kernel(b, name, ADD_KERNEL, 40.0, dims, types)
                    else:
                        b.leaf(name, dur=150.0, input_dims=dims, input_types=types)
            with b.frame("bad.py", 5, "layer_norm"):
                ops = ([("aten::layer_norm", [[256, 1024], [], [1024], [1024], [], []],
                         [F32, "ScalarList", F32, F32, "Scalar", "Scalar"])] if fused else _LAYER_NORM)
                for name, dims, types in ops:
                    if device:
                        _op_kernel(b, name, ADD_KERNEL, 30.0, dims, types)
                    else:
                        b.leaf(name, dur=120.0, input_dims=dims, input_types=types)
    return b.to_dict()


fixture("pft401_bandwidth_bound_elementwise", "cpu")(lambda: _chains(False, False))
fixture("pft401_bandwidth_bound_elementwise", "gpu")(lambda: _chains(True, False))
fixture("pft401_bandwidth_bound_elementwise", "clean")(lambda: _chains(False, True))


# ---------------------------------------------------------------------------- PFT402
def _attention(device: bool, fused: bool) -> dict[str, Any]:
    b = TraceBuilder(device=device)
    q = [4, 8, 512, 64]
    s = [4, 8, 512, 512]
    ops = ([("aten::scaled_dot_product_attention", [q, q, q, [], [], []], [F32, F32, F32, "", "Scalar", "Scalar"], 900)]
           if fused else
           [("aten::matmul", [q, [4, 8, 64, 512]], [F32, F32], 600),
            ("aten::div", [s, []], [F32, "Scalar"], 300),
            ("aten::softmax", [s, [], []], [F32, "Scalar", ""], 400),
            ("aten::matmul", [s, q], [F32, F32], 600)])
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "attention"):
            for _ in range(2):  # two layers
                for name, dims, types, dur in ops:
                    if device:
                        _op_kernel(b, name, "ampere_sgemm_128x64_nn" if "matmul" in name else ADD_KERNEL,
                                   dur / 10, dims, types)
                    else:
                        b.leaf(name, dur=dur, input_dims=dims, input_types=types)
    return b.to_dict()


fixture("pft402_materialised_attention", "cpu")(lambda: _attention(False, False))
fixture("pft402_materialised_attention", "gpu")(lambda: _attention(True, False))
fixture("pft402_materialised_attention", "clean")(lambda: _attention(False, True))


# ---------------------------------------------------------------------------- PFT403
def _memory(peak: int) -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "train_step"):
            base = 20 << 30
            with b.op("aten::linear", input_dims=[[64, 2048, 4096], [4096, 4096]], input_types=[BF16, BF16]):
                b.memory_event(peak - base, total_allocated=peak, total_reserved=peak + (512 << 20))
                b.kernel("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", dur=500)
            with b.op("aten::add"):
                b.memory_event(-(peak - base), total_allocated=base, total_reserved=peak + (512 << 20))
                b.kernel(ADD_KERNEL, dur=50)
    return b.to_dict()


fixture("pft403_memory_near_capacity", "gpu")(lambda: _memory(74 << 30))
fixture("pft403_memory_near_capacity", "clean")(lambda: _memory(30 << 30))


# ---------------------------------------------------------------------------- PFT404
def _churn(every_step: bool) -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for k in range(4):
        with b.step(), b.frame("bad.py", 1, "train_step"):
            with b.op("aten::empty"):
                if every_step or k == 0:
                    b.runtime("cudaMalloc", dur=180.0)
            _op_kernel(b, "aten::mm", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 400)
            if every_step:
                with b.pycall("torch/cuda/memory.py(192): empty_cache"):
                    b.runtime("cudaFree", dur=350.0)
    return b.to_dict()


fixture("pft404_allocator_churn", "gpu")(lambda: _churn(True))
fixture("pft404_allocator_churn", "clean")(lambda: _churn(False))


# ---------------------------------------------------------------------------- PFT501
def _gemm(props: dict[str, Any], kernel: str, dtype: str) -> dict[str, Any]:
    b = TraceBuilder(device=True, device_properties=[dict(props)])
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "forward"):
            for _ in range(4):
                _op_kernel(b, "aten::mm", kernel, 1500.0, [[4096, 4096], [4096, 4096]], [dtype, dtype],
                           grid=(1024, 1, 1), block=(256, 1, 1), registers_per_thread=120,
                           shared_memory=16384)
            _op_kernel(b, "aten::relu", ADD_KERNEL, 60.0, [[4096, 4096]], [dtype])
    return b.to_dict()


fixture("pft501_fp32_no_tensor_cores", "v100")(lambda: _gemm(V100, "volta_sgemm_128x64_nn", F32))
fixture("pft501_fp32_no_tensor_cores", "a100")(lambda: _gemm(A100, "ampere_sgemm_128x64_nn", F32))
fixture("pft501_fp32_no_tensor_cores", "clean")(
    lambda: _gemm(A100, "sm80_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x32_stage4_warpsize2x2x1_tensor16x8x16_kernel", BF16))


# ---------------------------------------------------------------------------- PFT502
def _lm_head(vocab: int) -> dict[str, Any]:
    b = TraceBuilder(device=True)
    gemm = "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64"
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "lm_head"):
            for _ in range(4):
                _op_kernel(b, "aten::linear", gemm, 60.0, [[8, 1024, 768], [768, 768]], [BF16, BF16, ""])
            _op_kernel(b, "aten::linear", gemm, 8000.0 if vocab % 8 else 3900.0,
                       [[8, 1024, 768], [vocab, 768]], [BF16, BF16, ""])
    return b.to_dict()


fixture("pft502_misaligned_gemm", "gpu")(lambda: _lm_head(50257))
fixture("pft502_misaligned_gemm", "clean")(lambda: _lm_head(50304))


# ---------------------------------------------------------------------------- PFT503
def _grid(blocks: int) -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "forward"):
            for _ in range(10):
                _op_kernel(b, "aten::sum", "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float> >",
                           300.0, [[16, 65536]], [F32], grid=(blocks, 1, 1), block=(512, 1, 1))
    return b.to_dict()


fixture("pft503_under_filled_grid", "gpu")(lambda: _grid(16))
fixture("pft503_under_filled_grid", "clean")(lambda: _grid(2640))


# ---------------------------------------------------------------------------- PFT504
def _occupancy(registers: int) -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "fused"):
            for _ in range(5):
                _op_kernel(b, "my_ext::fused", "void my_ext::fused_kernel<float>(float const*, float*, int)",
                           400.0, grid=(4096, 1, 1), block=(256, 1, 1), registers_per_thread=registers,
                           occupancy=None)
    return b.to_dict()


fixture("pft504_low_occupancy", "gpu")(lambda: _occupancy(255))
fixture("pft504_low_occupancy", "clean")(lambda: _occupancy(32))


# ---------------------------------------------------------------------------- PFT505
def _convs(static: bool) -> dict[str, Any]:
    b = TraceBuilder(device=True, device_properties=[dict(A100)])
    kernel = ("sm80_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32_nhwckrsc_nchw_tilesize128x128x16_"
              "stage4_warpsize2x2x1_g1_tensor16x8x8_execute_kernel_cudnn")
    for k in range(3):
        batch = 64 if static else (64, 32, 48)[k]
        with b.step(), b.frame("bad.py", 1, "train_step"):
            for _ in range(6):
                _op_kernel(b, "aten::cudnn_convolution", kernel, 400.0,
                           [[batch, 64, 56, 56], [64, 64, 3, 3], [], [], [], [], [], [], []],
                           [F32, F32, "ScalarList", "ScalarList", "ScalarList", "Scalar", "Scalar",
                            "Scalar", "Scalar"])
    return b.to_dict()


fixture("pft505_cudnn_benchmark_off", "gpu")(lambda: _convs(True))
fixture("pft505_cudnn_benchmark_off", "clean")(lambda: _convs(False))


# ---------------------------------------------------------------------------- PFT506
def _triton(blocks: int) -> dict[str, Any]:
    b = TraceBuilder(device=True)
    name = "triton_poi_fused_add_mul_0"
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "scale_shift"), b.op("Torch-Compiled Region: 0/0"):
            for _ in range(4):
                _op_kernel(b, name, name, 40.0, [[20480], [20480], [20480]], [F32, F32, F32],
                           grid=(blocks, 1, 1), block=(128, 1, 1), launch_call="cuLaunchKernel")
    data = b.to_dict()
    for e in data["traceEvents"]:
        if e.get("cat") == "cpu_op" and e.get("name") == name:
            e["args"].update({"kernel_backend": "triton", "kernel_file": "/tmp/torchinductor/ab/cabc.py",
                              "kernel_kwargs": "XBLOCK=1024, num_warps=4, num_stages=1",
                              "grid": f"grid({blocks * 1024},)"})
    return data


fixture("pft506_triton_tiles", "gpu")(lambda: _triton(20))
fixture("pft506_triton_tiles", "clean")(lambda: _triton(2640))


# ---------------------------------------------------------------------------- PFT601
def _allreduce(exposed: bool) -> dict[str, Any]:
    b = TraceBuilder(device=True, rank=0, world_size=2, device_properties=[dict(A100)])
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "train_step"):
            for _ in range(6):
                _op_kernel(b, "aten::mm", "ampere_s16816gemm_tf32_128x128_nn", 500.0)
            if exposed:
                b.advance(3200)  # all-reduce only after backward has finished
            for _ in range(2):
                with b.op("c10d::allreduce_"), b.annotation("nccl:all_reduce"):
                    b.kernel(NCCL_ALLREDUCE, dur=1200.0, stream=20, grid=(2, 1, 1), block=(512, 1, 1))
    return b.to_dict()


fixture("pft601_exposed_communication", "gpu")(lambda: _allreduce(True))
fixture("pft601_exposed_communication", "clean")(lambda: _allreduce(False))


# ---------------------------------------------------------------------------- PFT602
def straggler_rank(rank: int, compute_us: float, comm_us: list[float], world: int = 2) -> TraceBuilder:
    """One rank of a data-parallel job: compute, then two all-reduces per step."""
    b = TraceBuilder(device=True, rank=rank, world_size=world, device_properties=[dict(A100)],
                     pid=1000 + rank)
    for comm in comm_us:
        with b.step(), b.frame("bad.py", 1, "train_step"):
            _op_kernel(b, "aten::mm", "ampere_s16816gemm_tf32_128x128_nn", compute_us)
            b.advance(compute_us + 50)
            for _ in range(2):
                with b.op("c10d::allreduce_"), b.annotation("nccl:all_reduce"):
                    b.kernel(NCCL_ALLREDUCE, dur=comm, stream=20, grid=(2, 1, 1), block=(512, 1, 1))
            b.sync(dur=2 * comm + 10)
    return b


fixture("pft602_rank_straggler", "gpu")(lambda: straggler_rank(0, 2000, [1000, 1000, 4000, 1000]).to_dict())
fixture("pft602_rank_straggler", "clean")(lambda: straggler_rank(0, 2000, [1000, 1010, 1000, 1005]).to_dict())


# ---------------------------------------------------------------------------- PFT603
def _data_parallel(dp: bool) -> dict[str, Any]:
    props = [dict(A100), {**A100, "id": 1}]
    b = TraceBuilder(device=True, device_properties=props)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "train"):
            if dp:
                with b.pycall("torch/nn/parallel/data_parallel.py(171): forward"):
                    with b.pycall("torch/nn/parallel/replicate.py(80): replicate"), b.op("Broadcast"):
                        b.memcpy("DtoD", nbytes=1 << 26, dur=300)
                    with b.pycall("torch/nn/parallel/scatter_gather.py(60): scatter"), b.op("Scatter"):
                        b.memcpy("DtoD", nbytes=1 << 22, dur=40)
                    with b.pycall("torch/nn/parallel/parallel_apply.py(40): parallel_apply"):
                        for dev in (0, 1):
                            b.device_id = dev
                            _op_kernel(b, "aten::mm", "ampere_s16816gemm_tf32_128x128_nn", 800.0)
                        b.device_id = 0
                    with b.pycall("torch/nn/parallel/scatter_gather.py(90): gather"), b.op("Gather"):
                        b.memcpy("DtoD", nbytes=1 << 20, dur=20)
            else:
                with b.annotation("DistributedDataParallel.forward"):
                    _op_kernel(b, "aten::mm", "ampere_s16816gemm_tf32_128x128_nn", 800.0)
    return b.to_dict()


fixture("pft603_dataparallel_not_ddp", "gpu")(lambda: _data_parallel(True))
fixture("pft603_dataparallel_not_ddp", "clean")(lambda: _data_parallel(False))


# ---------------------------------------------------------------------------- PFT9xx
def _steps(n: int, marked: bool = True) -> dict[str, Any]:
    b = TraceBuilder(device=True)
    for _ in range(n):
        if marked:
            with b.step(), b.frame("bad.py", 1, "train_step"):
                _op_kernel(b, "aten::mm", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 500.0)
        else:
            with b.frame("bad.py", 1, "train_step"):
                _op_kernel(b, "aten::mm", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 500.0)
    return b.to_dict()


fixture("pft901_too_few_steps", "one_step")(lambda: _steps(1))
fixture("pft901_too_few_steps", "five_steps")(lambda: _steps(5))
fixture("pft902_no_step_markers", "no_markers")(lambda: _steps(3, marked=False))
fixture("pft902_no_step_markers", "marked")(lambda: _steps(3))


def _stacks(deep: bool) -> dict[str, Any]:
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step(), b.frame("bad.py", 1, "train_step"):
            for _ in range(200):
                if deep:
                    with b.pycall("torch/nn/modules/module.py(1736): _wrapped_call_impl"), \
                            b.pycall("torch/nn/modules/module.py(1747): _call_impl"), \
                            b.pycall("torch/nn/modules/linear.py(125): forward"), \
                            b.pycall("<built-in function linear>"), \
                            b.pycall("torch/_tensor.py(40): wrapped"), \
                            b.pycall("<built-in method add of Tensor object at 0x7f>"):
                        b.leaf("aten::add", dur=2.0)
                else:
                    b.leaf("aten::add", dur=100.0)
    return b.to_dict()


fixture("pft903_profiler_overhead", "with_stack")(lambda: _stacks(True))
fixture("pft903_profiler_overhead", "light")(lambda: _stacks(False))


# ---------------------------------------------------------------------------- writing
def encode(data: dict[str, Any]) -> bytes:
    return gzip.compress(json.dumps(data, separators=(",", ":")).encode(), mtime=0)


def fixture_path(folder: str, name: str, root: Path | None = None) -> Path:
    return (root or rules_dir()) / folder / f"{name}.json.gz"


def write_all(root: Path | None = None) -> list[Path]:
    out = []
    for folder, builders in sorted(FIXTURES.items()):
        for name, build in sorted(builders.items()):
            path = fixture_path(folder, name, root)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode(build()))
            out.append(path)
    return out


if __name__ == "__main__":
    for p in write_all():
        print(p, p.stat().st_size)
