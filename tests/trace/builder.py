"""Raw Kineto event dicts for the trace model's own tests.

Lower level than perftune.engine.testing.TraceBuilder on purpose: every field is written as
given, so tests can produce the variants seen in the wild (ROCm names, missing correlation,
string metadata, legacy categories, broken fields) and hand-check exact numbers.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

HOST_PID = 100
HOST_TID = 100
GPU_PID = 0
STREAM = 7

A100 = {"id": 0, "name": "NVIDIA A100-SXM4-80GB", "totalGlobalMem": 85_000_000_000,
        "computeMajor": 8, "computeMinor": 0, "numSms": 108}


def x(name: str, ts: float, dur: float, cat: str = "cpu_op", pid: Any = HOST_PID,
      tid: Any = HOST_TID, **args: Any) -> dict[str, Any]:
    """A complete ('X') event; keyword args become its `args` (use names as Kineto spells them
    through the `args` keyword when they have spaces)."""
    extra = args.pop("args", {})
    return {"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": tid, "ts": ts, "dur": dur,
            "args": {**args, **extra}}


def op(name: str, ts: float, dur: float, ext: int | None = None, **kw: Any) -> dict[str, Any]:
    args = {"External id": ext} if ext is not None else {}
    return x(name, ts, dur, cat="cpu_op", args={**args, **kw.pop("args", {})}, **kw)


def runtime(name: str, ts: float, dur: float, corr: int | None, cat: str = "cuda_runtime",
            **kw: Any) -> dict[str, Any]:
    args = {"correlation": corr} if corr is not None else {}
    return x(name, ts, dur, cat=cat, args={**args, "cbid": 211, **kw.pop("args", {})}, **kw)


def kernel(name: str, ts: float, dur: float, corr: int | None, stream: int = STREAM,
           device: int = 0, cat: str = "kernel", **extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"device": device, "stream": stream, "grid": [4, 1, 1],
                            "block": [128, 1, 1], "registers per thread": 32,
                            "shared memory": 0, "est. achieved occupancy %": 50}
    if corr is not None:
        args["correlation"] = corr
    args.update(extra.pop("args", {}))
    return x(name, ts, dur, cat=cat, pid=extra.pop("pid", device), tid=extra.pop("tid", stream),
             args=args, **extra)


def memcpy(kind: str, src: str, dst: str, ts: float, dur: float, corr: int | None,
           nbytes: int = 1024, stream: int = STREAM) -> dict[str, Any]:
    return kernel(f"Memcpy {kind} ({src} -> {dst})", ts, dur, corr, stream=stream,
                  cat="gpu_memcpy", args={"bytes": nbytes, "grid": None, "block": None})


def flow(ph: str, fid: Any, ts: float, pid: Any, tid: Any, cat: str = "ac2g") -> dict[str, Any]:
    event: dict[str, Any] = {"ph": ph, "id": fid, "pid": pid, "tid": tid, "ts": ts, "cat": cat,
                             "name": cat}
    if ph == "f":
        event["bp"] = "e"
    return event


def meta(kind: str, pid: Any, tid: Any, value: str) -> dict[str, Any]:
    key = "labels" if kind == "process_labels" else "name"
    return {"name": kind, "ph": "M", "ts": 0, "pid": pid, "tid": tid, "args": {key: value}}


def doc(events: list[dict[str, Any]], **header: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"schemaVersion": 1, "deviceProperties": [A100]}
    out.update(header)
    out["traceEvents"] = events
    return out


def write(path: Path, content: Any, gz: bool | None = None) -> Path:
    """Write a trace document (or raw text/bytes) to `path`; gzip when the name ends in .gz."""
    if isinstance(content, bytes):
        data = content
    elif isinstance(content, str):
        data = content.encode()
    else:
        data = json.dumps(content).encode()
    if gz if gz is not None else path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def gpu_step(t0: float = 1_000_000.0, step: int = 0, corr0: int = 1000) -> list[dict[str, Any]]:
    """A hand-checkable GPU step (times relative to t0, µs):

    host: ProfilerStep#<step> [0, 1000)
            aten::mm [100, 200)  → cudaLaunchKernel [150, 160) corr c  → gemm [170, 470) on stream 7
            aten::item [300, 700) → aten::_local_scalar_dense [310, 690)
                 → cudaMemcpyAsync [320, 340) corr c+1 → Memcpy DtoH (Device -> Pageable) [480, 482)
                 → cudaStreamSynchronize [350, 680) corr c+2
            aten::add_ [800, 850) → cudaLaunchKernel [810, 815) corr c+3 → add [820, 830)
    device busy: [170, 470) ∪ [480, 482) ∪ [820, 830) = 300 + 2 + 10 = 312 µs.
    """
    c = corr0
    return [
        x(f"ProfilerStep#{step}", t0, 1000, cat="user_annotation"),
        op("aten::mm", t0 + 100, 100, ext=c),
        runtime("cudaLaunchKernel", t0 + 150, 10, c),
        kernel("sm80_xmma_gemm_f32f32_tf32", t0 + 170, 300, c),
        op("aten::item", t0 + 300, 400, ext=c + 1),
        op("aten::_local_scalar_dense", t0 + 310, 380, ext=c + 1),
        runtime("cudaMemcpyAsync", t0 + 320, 20, c + 1),
        memcpy("DtoH", "Device", "Pageable", t0 + 480, 2, c + 1, nbytes=4),
        runtime("cudaStreamSynchronize", t0 + 350, 330, c + 2),
        op("aten::add_", t0 + 800, 50, ext=c + 3),
        runtime("cudaLaunchKernel", t0 + 810, 5, c + 3),
        kernel("vectorized_elementwise_kernel<add>", t0 + 820, 10, c + 3),
    ]
