"""meta.json's facts only the child knows: torch and device versions and names."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import torch

from perftune.capture.parent.meta import cpu_name


def torch_meta() -> dict[str, Any]:
    """Facts only the child knows: torch and device versions and names.

    Device names are read only when the script itself initialised CUDA, so a CPU script on a GPU
    machine never gets a CUDA context from perftune.
    """
    meta: dict[str, Any] = {
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "hip_version": getattr(torch.version, "hip", None),
        "cuda_available": False,
        "devices": [],
        "torch_threads": torch.get_num_threads(),
        "usable_cores": usable_cores(),
    }
    try:
        meta["cuda_available"] = bool(torch.cuda.is_available())
        if meta["cuda_available"] and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            meta["devices"] = [
                torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())
            ]
            meta["cudnn_version"] = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
    except Exception as exc:  # a broken driver must not lose the run's results
        meta["device_error"] = f"{type(exc).__name__}: {exc}"
    if not meta["devices"]:
        meta["devices"] = [f"cpu: {cpu_name()}"]
    return meta


# CPU feature flags (Linux /proc/cpuinfo names) that make bf16/fp16 matrix math fast on a CPU:
# AMX tiles (Sapphire Rapids and later) and the AVX-512 BF16/FP16 dot-product instructions.
LOW_PRECISION_CPU_FLAGS = ("amx_bf16", "amx_fp16", "amx_tile", "avx512_bf16", "avx512_fp16")


def cpu_flags() -> list[str]:
    """The low-precision flags of this CPU (empty when /proc/cpuinfo cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [f for f in LOW_PRECISION_CPU_FLAGS if f in have]
    except OSError:
        pass
    return []


def usable_cores() -> int | None:
    """The cores this process may run on (its CPU affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def compute_facts() -> dict[str, Any]:
    """What decides how fast the step's arithmetic runs, read when profiling starts (after the
    script's own setup: its set_num_threads, matmul precision and TF32 flags are in force).
    Written into the trace's `perftune` header (`host`) for the compute-efficiency rules."""
    facts: dict[str, Any] = {
        "torch_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "usable_cores": usable_cores(),
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "mkl_num_threads": os.environ.get("MKL_NUM_THREADS"),
        "cpu_flags": cpu_flags(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),  # type: ignore[no-untyped-call]
        # Runnable threads of the whole machine (1 min): cores the process may use are not free
        # when other processes keep them busy.
        "loadavg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    try:
        facts["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch
        facts["cpu_capability"] = None
    return facts


# -- contention over the profiled window -------------------------------------------------------
# The load average recorded when profiling starts lags (a 1-minute average, sampled every 5 s):
# two profiles started together both see the load of before and run contended. What the window
# itself saw is read from the kernel's scheduler statistics of the process's own threads
# (/proc/self/task/*/schedstat: ns on a core, ns runnable but waiting for one), the machine's
# steal time (/proc/stat) and the load average when the window closes.


def _thread_schedstats() -> dict[str, tuple[int, int]] | None:
    """ns on a core and ns waiting for one, per thread of this process (None off Linux or
    without schedstats)."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    out: dict[str, tuple[int, int]] = {}
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat", encoding="ascii") as fh:
                fields = fh.read().split()
            out[tid] = (int(fields[0]), int(fields[1]))
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return out or None


def _steal_ticks() -> int | None:
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
        return int(fields[8]) if fields and fields[0] == "cpu" and len(fields) > 8 else None
    except (OSError, ValueError):
        return None


class ContentionProbe:
    """What the profiled window saw of other processes, read at its two ends."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.threads = _thread_schedstats()
        self.steal = _steal_ticks()

    def facts(self) -> dict[str, Any]:
        """`wait_share`: of the time the process's threads wanted a core, the part they waited
        for one (other processes, or more runnable threads than cores); `steal_share`: the
        machine's cores' time taken by the hypervisor; `loadavg_end`: the 1-minute load when
        the window closed. Each None where the system does not say."""
        wall = time.monotonic() - self.started
        out: dict[str, Any] = {"window_s": round(wall, 4), "wait_share": None, "steal_share": None,
                               "loadavg_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
        now = _thread_schedstats()
        if self.threads is not None and now is not None:
            run = wait = 0
            for tid, (cpu_ns, wait_ns) in now.items():
                cpu0, wait0 = self.threads.get(tid, (0, 0))
                run += max(0, cpu_ns - cpu0)
                wait += max(0, wait_ns - wait0)
            if run + wait > 0:
                out["wait_share"] = round(wait / (run + wait), 4)
                out["run_s"], out["wait_s"] = round(run / 1e9, 4), round(wait / 1e9, 4)
        steal = _steal_ticks()
        cores = os.cpu_count()
        if self.steal is not None and steal is not None and cores and wall > 0:
            with contextlib.suppress(ValueError, OSError):
                ticks = os.sysconf("SC_CLK_TCK")
                out["steal_share"] = round((steal - self.steal) / ticks / (wall * cores), 4)
        return out
