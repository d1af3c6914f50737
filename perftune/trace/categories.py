"""Event categories and runtime-call names, for CUDA and ROCm alike."""

from __future__ import annotations

import functools
import re

KERNEL = "kernel"
MEMCPY = "gpu_memcpy"
MEMSET = "gpu_memset"
CPU_OP = "cpu_op"
USER_ANNOTATION = "user_annotation"
GPU_USER_ANNOTATION = "gpu_user_annotation"
PYTHON_FUNCTION = "python_function"
CUDA_RUNTIME = "cuda_runtime"
CUDA_DRIVER = "cuda_driver"
CUDA_SYNC = "cuda_sync"

KERNEL_CATS = frozenset({KERNEL})
# Device activity that occupies an engine (annotations and sync markers do not).
DEVICE_WORK_CATS = frozenset({KERNEL, MEMCPY, MEMSET, "gpu_memory", "mtia_ccp_events"})
# Everything recorded on the device timeline.
DEVICE_CATS = DEVICE_WORK_CATS | {GPU_USER_ANNOTATION, CUDA_SYNC}
RUNTIME_CATS = frozenset({CUDA_RUNTIME, CUDA_DRIVER, "runtime", "driver", "hip_runtime"})
# Host events that are operators or annotations (not python frames, not runtime calls).
OP_CATS = frozenset({CPU_OP, USER_ANNOTATION, "operator", "Operator"})
FLOW_CATS = frozenset({"ac2g", "async_cpu_to_gpu", "fwdbwd"})

# Spellings of older Kineto / PyTorch versions (1.8-1.10) and other exporters, mapped onto the
# current category names so that every rule sees one vocabulary.
_CATEGORY_ALIASES = {
    "Kernel": KERNEL,
    "Memcpy": MEMCPY,
    "Memset": MEMSET,
    "Runtime": CUDA_RUNTIME,
    "Operator": CPU_OP,
    "operator": CPU_OP,
    "cpu_operator": CPU_OP,
    "user_annotation": USER_ANNOTATION,
    "User Annotation": USER_ANNOTATION,
    "gpu_user_annotation": GPU_USER_ANNOTATION,
    "Python": PYTHON_FUNCTION,
    "python_function": PYTHON_FUNCTION,
    "hip_runtime": CUDA_RUNTIME,
    "Cuda_runtime": CUDA_RUNTIME,
}


def normalise_category(cat: str) -> str:
    return _CATEGORY_ALIASES.get(cat, cat)


# Runtime calls where the host waits for the device.
SYNC_CALLS = frozenset({
    "cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize",
    "cudaStreamWaitEvent_host",  # placeholder name some builds emit for host waits
    "cuStreamSynchronize", "cuCtxSynchronize", "cuEventSynchronize",
    "hipStreamSynchronize", "hipDeviceSynchronize", "hipEventSynchronize",
    "hipCtxSynchronize",
})
# Synchronous copies: the call itself blocks until the copy is done.
BLOCKING_COPY_CALLS = frozenset({
    "cudaMemcpy", "cudaMemcpy2D", "cudaMemcpyToSymbol", "cudaMemcpyFromSymbol",
    "cuMemcpyDtoH_v2", "cuMemcpyHtoD_v2", "cuMemcpy", "cuMemcpyDtoH", "cuMemcpyHtoD",
    "hipMemcpy", "hipMemcpy2D", "hipMemcpyDtoH", "hipMemcpyHtoD",
})
ASYNC_COPY_CALLS = frozenset({
    "cudaMemcpyAsync", "cudaMemcpy2DAsync", "cudaMemcpyPeerAsync", "cuMemcpyAsync",
    "cuMemcpyDtoHAsync_v2", "cuMemcpyHtoDAsync_v2",
    "hipMemcpyAsync", "hipMemcpyWithStream", "hipMemcpy2DAsync", "hipMemcpyDtoHAsync",
    "hipMemcpyHtoDAsync",
})
COPY_CALLS = ASYNC_COPY_CALLS | BLOCKING_COPY_CALLS
LAUNCH_CALLS = frozenset({
    "cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
    "cudaLaunchCooperativeKernel", "cudaLaunchCooperativeKernelMultiDevice",
    "hipLaunchKernel", "hipExtLaunchKernel", "hipModuleLaunchKernel", "hipExtModuleLaunchKernel",
    "hipLaunchCooperativeKernel", "cudaGraphLaunch", "hipGraphLaunch",
})
MALLOC_CALLS = frozenset({"cudaMalloc", "cudaFree", "hipMalloc", "hipFree", "cudaMallocAsync",
                          "cudaFreeAsync", "cudaHostAlloc", "cudaFreeHost", "hipHostMalloc",
                          "hipHostFree", "cudaMallocHost", "hipMallocAsync", "hipFreeAsync"})

# NVLS / multimem and symmetric-memory all-reduces (one_shot_all_reduce, multimem_all_reduce)
# are collectives too, whatever library launched them.
_COMM_KERNEL = re.compile(r"nccl|rccl|AllReduce|AllGather|ReduceScatter|Broadcast|SendRecv|all_to_all"
                          r"|AllToAll|all_reduce|all_gather|reduce_scatter|multimem|NVLS|symm_mem",
                          re.IGNORECASE)
_MEMCPY_KIND = re.compile(r"Memcpy\s+(\w+)\s*\((\w+)\s*->\s*(\w+)\)")
# ROCm names its copies "CopyHostToDevice", "CopyDeviceToHost", ...
_ROCM_COPY = re.compile(r"Copy(Host|Device)To(Host|Device)")
_ROCM_SIDE = {"Host": "H", "Device": "D"}

PROFILER_STEP_PREFIX = "ProfilerStep#"
OPTIMIZER_STEP_PREFIX = "Optimizer.step#"
DATALOADER_PREFIX = "enumerate(DataLoader)#"


@functools.lru_cache(maxsize=1 << 16)
def is_comm_kernel(name: str) -> bool:
    """Whether a kernel name is a collective's; each distinct (interned) name is matched once."""
    return bool(_COMM_KERNEL.search(name))


def memcpy_kind(name: str) -> tuple[str, str, str]:
    """('HtoD', 'Pageable', 'Device') from 'Memcpy HtoD (Pageable -> Device)'."""
    m = _MEMCPY_KIND.search(name)
    if m is not None:
        return (m.group(1), m.group(2), m.group(3))
    r = _ROCM_COPY.search(name)
    if r is not None:
        kind = f"{_ROCM_SIDE[r.group(1)]}to{_ROCM_SIDE[r.group(2)]}"
        return (kind, "unknown", "unknown")
    return ("unknown", "unknown", "unknown")
