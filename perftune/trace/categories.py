"""Event categories and runtime-call names, for CUDA and ROCm alike."""

from __future__ import annotations

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

# Device activity that occupies an engine (annotations and sync markers do not).
DEVICE_WORK_CATS = frozenset({KERNEL, MEMCPY, MEMSET, "gpu_memory", "mtia_ccp_events"})
# Everything recorded on the device timeline.
DEVICE_CATS = DEVICE_WORK_CATS | {GPU_USER_ANNOTATION, CUDA_SYNC}
RUNTIME_CATS = frozenset({CUDA_RUNTIME, CUDA_DRIVER, "runtime", "driver", "hip_runtime"})
# Host events that are operators or annotations (not python frames, not runtime calls).
OP_CATS = frozenset({CPU_OP, USER_ANNOTATION, "operator", "Operator"})
FLOW_CATS = frozenset({"ac2g", "async_cpu_to_gpu", "fwdbwd"})

# Runtime calls where the host waits for the device.
SYNC_CALLS = frozenset({
    "cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize",
    "cuStreamSynchronize", "cuCtxSynchronize", "cuEventSynchronize",
    "hipStreamSynchronize", "hipDeviceSynchronize", "hipEventSynchronize",
    "cudaStreamWaitEvent_host",  # placeholder name some builds emit for host waits
})
# Synchronous copies: the call itself blocks until the copy is done.
BLOCKING_COPY_CALLS = frozenset({"cudaMemcpy", "hipMemcpy", "cuMemcpyDtoH_v2", "cuMemcpy"})
COPY_CALLS = frozenset({"cudaMemcpyAsync", "hipMemcpyAsync", "hipMemcpyWithStream"}) | BLOCKING_COPY_CALLS
LAUNCH_CALLS = frozenset({
    "cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
    "hipLaunchKernel", "hipExtLaunchKernel", "hipModuleLaunchKernel", "cudaLaunchCooperativeKernel",
    "hipExtModuleLaunchKernel", "cudaGraphLaunch", "hipGraphLaunch",
})
MALLOC_CALLS = frozenset({"cudaMalloc", "cudaFree", "hipMalloc", "hipFree", "cudaMallocAsync",
                          "cudaFreeAsync", "cudaHostAlloc", "cudaFreeHost", "hipHostMalloc"})

_COMM_KERNEL = re.compile(r"nccl|rccl|AllReduce|AllGather|ReduceScatter|Broadcast|SendRecv|all_to_all",
                          re.IGNORECASE)
_MEMCPY_KIND = re.compile(r"Memcpy\s+(\w+)\s*\((\w+)\s*->\s*(\w+)\)")

PROFILER_STEP_PREFIX = "ProfilerStep#"
OPTIMIZER_STEP_PREFIX = "Optimizer.step#"
DATALOADER_PREFIX = "enumerate(DataLoader)#"


def is_comm_kernel(name: str) -> bool:
    return bool(_COMM_KERNEL.search(name))


def memcpy_kind(name: str) -> tuple[str, str, str]:
    """('HtoD', 'Pageable', 'Device') from 'Memcpy HtoD (Pageable -> Device)'."""
    m = _MEMCPY_KIND.search(name)
    if m is None:
        return ("unknown", "unknown", "unknown")
    return (m.group(1), m.group(2), m.group(3))
