"""Build small Kineto-shaped traces in tests: a public testing helper for rule authors.

A `TraceBuilder` keeps a host clock per thread and a clock per device stream; nesting context
managers produce properly nested host events, runtime calls are linked to their device activity
with `correlation` args and `ac2g` flows, exactly as torch.profiler writes them. The result is a
dict (`to_dict()`), a file (`write(path)`, `.json` or `.json.gz`), or a loaded `Trace`
(`trace()`), so rules are tested on the same code path as real traces.

Example — a GPU step whose boolean-mask indexing synchronises the host::

    from perftune.engine.testing import TraceBuilder

    b = TraceBuilder(device=True)
    with b.step():                                   # ProfilerStep#0
        with b.frame("train.py", 10, "train_step"):  # python_function frame (user code)
            b.kernel("void gemm_kernel", dur=300)    # cudaLaunchKernel + kernel on stream 7
            with b.op("aten::index", input_dims=[[4096], []], input_types=["float", ""]):
                with b.op("aten::nonzero", input_dims=[[4096]], input_types=["bool"]):
                    b.memcpy("DtoH", nbytes=8)       # cudaMemcpyAsync + Memcpy DtoH (Device -> Pageable)
                    b.sync()                         # cudaStreamSynchronize: waits for the gemm
    trace = b.trace()                                # perftune.trace.model.Trace

Times are microseconds. Every method that emits a host event advances the host clock of the
current thread by the event's duration plus `gap` (default 1 µs).
"""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perftune.trace.model import Trace

H100 = {
    "id": 0, "name": "NVIDIA H100 80GB HBM3", "totalGlobalMem": 85031714816, "computeMajor": 9,
    "computeMinor": 0, "maxThreadsPerBlock": 1024, "maxThreadsPerMultiprocessor": 2048,
    "regsPerBlock": 65536, "regsPerMultiprocessor": 65536, "warpSize": 32,
    "sharedMemPerBlock": 49152, "sharedMemPerMultiprocessor": 233472, "numSms": 132,
    "sharedMemPerBlockOptin": 232448,
}

_SYNC_KIND = {
    "cudaStreamSynchronize": "Stream Sync", "cudaDeviceSynchronize": "Context Sync",
    "cudaEventSynchronize": "Event Sync", "hipStreamSynchronize": "Stream Sync",
    "hipDeviceSynchronize": "Context Sync", "hipEventSynchronize": "Event Sync",
}


@dataclass
class OpHandle:
    """What `op()` yields: enough to link a backward op to it (`backward_of`)."""

    name: str
    ts: float
    ext_id: int
    tid: int
    seq: int | None = None


@dataclass
class _Open:
    event: dict[str, Any]
    py_id: int | None = None
    ext_id: int | None = None
    min_dur: float | None = None


@dataclass
class TraceBuilder:
    """Fluent builder of Kineto traces (see the module docstring for an example)."""

    device: bool = False
    pid: int = 1000
    tid: int = 1000
    rank: int | None = None
    world_size: int | None = None
    device_id: int = 0
    default_stream: int = 7
    gap: float = 1.0
    start_us: float = 1_700_000_000_000_000.0
    device_properties: list[dict[str, Any]] | None = None
    runtime_prefix: str = "cuda"  # "hip" for ROCm-shaped traces
    # Extra top-level entries, e.g. {"perftune": {"host": {...}}} as `perftune profile` writes.
    header: dict[str, Any] | None = None
    _events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _clock: dict[int, float] = field(default_factory=dict, repr=False)
    _stream_clock: dict[int, float] = field(default_factory=dict, repr=False)
    _stack: dict[int, list[_Open]] = field(default_factory=dict, repr=False)
    _cur_tid: int = 0
    _next_ext: int = 1
    _next_corr: int = 10_000
    _next_py: int = 1
    _next_seq: int = 0
    _step_index: int = 0

    def __post_init__(self) -> None:
        self._cur_tid = self.tid
        self._clock[self.tid] = self.start_us

    # ------------------------------------------------------------------ clocks
    @property
    def now(self) -> float:
        """The host clock of the current thread (absolute µs)."""
        return self._clock.setdefault(self._cur_tid, self.start_us)

    def advance(self, us: float) -> TraceBuilder:
        """Let host time pass without an event (python work the profiler did not record)."""
        self._clock[self._cur_tid] = self.now + us
        return self

    def device_drained_at(self, stream: int | None = None) -> float:
        """When the device finishes the work queued so far (on one stream, or all)."""
        if stream is not None:
            return self._stream_clock.get(stream, 0.0)
        return max(self._stream_clock.values(), default=0.0)

    def _ids(self) -> tuple[int, int]:
        ext, corr = self._next_ext, self._next_corr
        self._next_ext += 1
        self._next_corr += 1
        return ext, corr

    # ------------------------------------------------------------------ host events
    def _open(self, cat: str, name: str, args: dict[str, Any], dur: float | None) -> _Open:
        event = {"ph": "X", "cat": cat, "name": name, "pid": self.pid, "tid": self._cur_tid,
                 "ts": self.now, "dur": 0.0, "args": args}
        self._events.append(event)
        opened = _Open(event=event, min_dur=dur)
        self._stack.setdefault(self._cur_tid, []).append(opened)
        self._clock[self._cur_tid] = self.now + min(self.gap, 0.5)
        return opened

    def _close(self, opened: _Open) -> None:
        stack = self._stack[self._cur_tid]
        assert stack and stack[-1] is opened, "events closed out of order"
        stack.pop()
        event = opened.event
        elapsed = self.now - event["ts"] + min(self.gap, 0.5)
        event["dur"] = max(elapsed, opened.min_dur or 0.0)
        self._clock[self._cur_tid] = event["ts"] + event["dur"] + self.gap

    def _enclosing_ext(self) -> int | None:
        for opened in reversed(self._stack.get(self._cur_tid, [])):
            if opened.ext_id is not None:
                return opened.ext_id
        return None

    def _enclosing_py(self) -> int | None:
        for opened in reversed(self._stack.get(self._cur_tid, [])):
            if opened.py_id is not None:
                return opened.py_id
        return None

    @contextmanager
    def annotation(self, name: str, dur: float | None = None) -> Iterator[None]:
        """A `user_annotation` (record_function), e.g. DataLoader `__next__` or Optimizer.step."""
        ext, _ = self._ids()
        opened = self._open("user_annotation", name, {"External id": ext}, dur)
        opened.ext_id = ext
        try:
            yield
        finally:
            self._close(opened)

    @contextmanager
    def step(self, index: int | None = None, dur: float | None = None) -> Iterator[int]:
        """A `ProfilerStep#N` annotation around one training step; yields N."""
        n = self._step_index if index is None else index
        self._step_index = n + 1
        with self.annotation(f"ProfilerStep#{n}", dur):
            yield n

    @contextmanager
    def dataloader(self, single_process: bool = True, dur: float | None = None) -> Iterator[None]:
        """The `enumerate(DataLoader)#..._DataLoaderIter.__next__` annotation of one batch."""
        kind = "_SingleProcessDataLoaderIter" if single_process else "_MultiProcessingDataLoaderIter"
        with self.annotation(f"enumerate(DataLoader)#{kind}.__next__", dur):
            yield

    @contextmanager
    def optimizer_step(self, name: str = "SGD", dur: float | None = None) -> Iterator[None]:
        with self.annotation(f"Optimizer.step#{name}.step", dur):
            yield

    @contextmanager
    def frame(self, file: str, line: int, function: str, dur: float | None = None) -> Iterator[None]:
        """A `python_function` frame `file(line): function` (with_stack=True)."""
        with self.pycall(f"{file}({line}): {function}", dur):
            yield

    @contextmanager
    def pycall(self, name: str, dur: float | None = None) -> Iterator[None]:
        """A `python_function` event with any name, e.g. '<built-in method item of Tensor object>'."""
        py_id = self._next_py
        self._next_py += 1
        opened = self._open("python_function", name,
                            {"Python parent id": self._enclosing_py(), "Python id": py_id}, dur)
        opened.py_id = py_id
        try:
            yield
        finally:
            self._close(opened)

    @contextmanager
    def op(self, name: str, *, dur: float | None = None, input_dims: Sequence[Any] | None = None,
           input_types: Sequence[Any] | None = None,
           concrete_inputs: Sequence[Any] | None = None,
           input_strides: Sequence[Any] | None = None,
           sequence: bool = False) -> Iterator[OpHandle]:
        """A `cpu_op` (an ATen operator); nest ops, runtime calls and kernels inside it."""
        ext, _ = self._ids()
        args: dict[str, Any] = {"External id": ext, "Record function id": 0}
        if input_dims is not None:
            args["Input Dims"] = list(input_dims)
        if input_types is not None:
            args["Input type"] = list(input_types)
        if concrete_inputs is not None:
            args["Concrete Inputs"] = list(concrete_inputs)
        if input_strides is not None:
            args["Input Strides"] = list(input_strides)
        handle = OpHandle(name=name, ts=self.now, ext_id=ext, tid=self._cur_tid)
        if sequence:
            handle.seq = self._next_seq
            args["Sequence number"] = self._next_seq
            args["Fwd thread id"] = 0
            self._next_seq += 1
        opened = self._open("cpu_op", name, args, dur)
        opened.ext_id = ext
        try:
            yield handle
        finally:
            self._close(opened)

    def leaf(self, name: str, dur: float = 2.0, **kwargs: Any) -> OpHandle:
        """An op with no children."""
        with self.op(name, dur=dur, **kwargs) as handle:
            pass
        return handle

    # ------------------------------------------------------------------ threads / backward
    @contextmanager
    def thread(self, tid: int, at: float | None = None) -> Iterator[None]:
        """Emit events on another host thread (e.g. the autograd thread) from time `at`."""
        saved = self._cur_tid
        self._cur_tid = tid
        if at is not None:
            self._clock[tid] = max(self._clock.get(tid, at), at)
        else:
            self._clock.setdefault(tid, self._clock[saved])
        try:
            yield
        finally:
            self._cur_tid = saved

    @contextmanager
    def backward_of(self, forward: OpHandle, name: str | None = None,
                    dur: float | None = None) -> Iterator[OpHandle]:
        """A backward op linked to `forward` with a `fwdbwd` flow (as autograd records it)."""
        flow_id = forward.seq if forward.seq is not None else forward.ext_id
        with self.op(name or f"autograd::engine::evaluate_function: {forward.name}Backward0",
                     dur=dur) as handle:
            self._events.append({"ph": "s", "id": flow_id, "pid": self.pid, "tid": forward.tid,
                                 "ts": forward.ts, "cat": "fwdbwd", "name": "fwdbwd"})
            self._events.append({"ph": "f", "id": flow_id, "pid": self.pid, "tid": self._cur_tid,
                                 "ts": handle.ts, "cat": "fwdbwd", "name": "fwdbwd", "bp": "e"})
            yield handle

    # ------------------------------------------------------------------ runtime + device
    def runtime(self, name: str, dur: float = 3.0, **extra_args: Any) -> int:
        """A runtime call with no device activity (cudaMalloc, cudaEventRecord, ...); returns
        its correlation id."""
        ext = self._enclosing_ext()
        _, corr = self._ids()
        args: dict[str, Any] = {"External id": ext if ext is not None else corr, "cbid": 0,
                                "correlation": corr, **extra_args}
        self._events.append({"ph": "X", "cat": "cuda_runtime", "name": name, "pid": self.pid,
                             "tid": self._cur_tid, "ts": self.now, "dur": dur, "args": args})
        self._clock[self._cur_tid] = self.now + dur + self.gap
        return corr

    def _device_event(self, cat: str, name: str, corr: int, launch_ts: float, dur: float,
                      stream: int, args: dict[str, Any], latency: float = 5.0) -> float:
        start = max(self._stream_clock.get(stream, 0.0), launch_ts + latency)
        self._stream_clock[stream] = start + dur
        base = {"External id": corr, "device": self.device_id, "context": 1, "stream": stream,
                "correlation": corr}
        self._events.append({"ph": "X", "cat": cat, "name": name, "pid": self.device_id,
                             "tid": stream, "ts": start, "dur": dur, "args": {**base, **args}})
        self._events.append({"ph": "s", "id": corr, "pid": self.pid, "tid": self._cur_tid,
                             "ts": launch_ts, "cat": "ac2g", "name": "ac2g"})
        self._events.append({"ph": "f", "id": corr, "pid": self.device_id, "tid": stream,
                             "ts": start, "cat": "ac2g", "name": "ac2g", "bp": "e"})
        return start

    def kernel(self, name: str, dur: float = 10.0, *, stream: int | None = None,
               grid: Sequence[int] = (1024, 1, 1), block: Sequence[int] = (256, 1, 1),
               registers_per_thread: int = 32, shared_memory: int = 0,
               occupancy: float | None = 100.0, launch_dur: float = 4.0,
               launch_call: str | None = None, extra: dict[str, Any] | None = None) -> float:
        """cudaLaunchKernel on the host + the kernel on a stream; returns the kernel's start."""
        stream = self.default_stream if stream is None else stream
        launch_ts = self.now
        corr = self.runtime(launch_call or f"{self.runtime_prefix}LaunchKernel", dur=launch_dur)
        args: dict[str, Any] = {"queued": 0, "registers per thread": registers_per_thread,
                                "shared memory": shared_memory, "grid": list(grid),
                                "block": list(block), **(extra or {})}
        if occupancy is not None:
            args["est. achieved occupancy %"] = occupancy
        return self._device_event("kernel", name, corr, launch_ts, dur, stream, args)

    def memcpy(self, kind: str = "HtoD", *, src: str | None = None, dst: str | None = None,
               nbytes: int = 4096, dur: float = 5.0, stream: int | None = None,
               call: str | None = None, call_dur: float = 6.0, blocking: bool = False) -> float:
        """A copy: the runtime call + `Memcpy HtoD (Pageable -> Device)` on a stream.

        `blocking=True` makes the host call last until the copy is done (pageable copies and
        synchronous cudaMemcpy behave like that)."""
        stream = self.default_stream if stream is None else stream
        src = src or {"HtoD": "Pageable", "DtoH": "Device", "DtoD": "Device"}.get(kind, "Device")
        dst = dst or {"HtoD": "Device", "DtoH": "Pageable", "DtoD": "Device"}.get(kind, "Device")
        launch_ts = self.now
        corr_call = call or f"{self.runtime_prefix}MemcpyAsync"
        # Reserve the runtime call first so its correlation id is the copy's.
        ext = self._enclosing_ext()
        _, corr = self._ids()
        start = self._device_event("gpu_memcpy", f"Memcpy {kind} ({src} -> {dst})", corr,
                                   launch_ts, dur, stream,
                                   {"bytes": nbytes, "memory bandwidth (GB/s)": nbytes / max(dur, 1e-3) / 1e3})
        host_dur = max(call_dur, start + dur - launch_ts) if blocking else call_dur
        self._events.append({"ph": "X", "cat": "cuda_runtime", "name": corr_call, "pid": self.pid,
                             "tid": self._cur_tid, "ts": launch_ts, "dur": host_dur,
                             "args": {"External id": ext if ext is not None else corr, "cbid": 41,
                                      "correlation": corr}})
        self._clock[self._cur_tid] = launch_ts + host_dur + self.gap
        return start

    def memset(self, nbytes: int = 4096, dur: float = 2.0, stream: int | None = None) -> float:
        stream = self.default_stream if stream is None else stream
        launch_ts = self.now
        corr = self.runtime(f"{self.runtime_prefix}MemsetAsync", dur=3.0)
        return self._device_event("gpu_memset", "Memset (Device)", corr, launch_ts, dur, stream,
                                  {"bytes": nbytes})

    def sync(self, call: str | None = None, *, dur: float | None = None,
             stream: int | None = None, device_event: bool = True) -> float:
        """A host sync call that lasts until the device has drained (at least `dur`, default 2 µs);
        also records the `cuda_sync` device event Kineto writes with enable_cuda_sync_events.
        Returns the call's duration."""
        call = call or f"{self.runtime_prefix}StreamSynchronize"
        drained = self.device_drained_at(stream)
        start = self.now
        length = max(dur if dur is not None else 2.0, drained - start + 1.0)
        corr = self.runtime(call, dur=length)
        if device_event and self.device:
            kind = _SYNC_KIND.get(call, "Stream Sync")
            s = stream if stream is not None else (self.default_stream if kind == "Stream Sync" else -1)
            self._events.append({"ph": "X", "cat": "cuda_sync", "name": kind, "pid": self.device_id,
                                 "tid": s, "ts": start + 1.0, "dur": max(length - 1.0, 0.5),
                                 "args": {"External id": corr, "cuda_sync_kind": kind, "stream": s,
                                          "correlation": corr, "device": self.device_id,
                                          "context": 1}})
        return length

    def memory_event(self, nbytes: int, total_allocated: int, total_reserved: int,
                     device_type: int = 1) -> None:
        """A `[memory]` instant event (profile_memory=True)."""
        self._events.append({"ph": "i", "cat": "cpu_instant_event", "s": "t", "name": "[memory]",
                             "pid": self.pid, "tid": self._cur_tid, "ts": self.now,
                             "args": {"Total Reserved": total_reserved,
                                      "Total Allocated": total_allocated, "Bytes": nbytes,
                                      "Addr": 0, "Device Id": self.device_id if device_type else -1,
                                      "Device Type": device_type}})

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """The trace as torch.profiler's `export_chrome_trace` would write it."""
        for tid, stack in self._stack.items():
            assert not stack, f"thread {tid} has unclosed events"
        meta: list[dict[str, Any]] = [
            {"ph": "M", "name": "process_name", "pid": self.pid, "tid": 0, "ts": self.start_us,
             "args": {"name": "python"}},
        ]
        for tid in sorted(self._clock):
            meta.append({"ph": "M", "name": "thread_name", "pid": self.pid, "tid": tid,
                         "ts": self.start_us, "args": {"name": f"thread {tid} (python)"}})
        out: dict[str, Any] = {
            "schemaVersion": 1,
            "deviceProperties": (self.device_properties if self.device_properties is not None
                                 else ([dict(H100)] if self.device else [])),
            "record_shapes": 1, "with_stack": 1,
            "displayTimeUnit": "ms",
            "traceEvents": meta + sorted(self._events, key=lambda e: (e["ts"], -e.get("dur", 0))),
            "traceName": "builder",
        }
        if self.header:
            out.update(self.header)
        if self.device:
            out[f"{'hip' if self.runtime_prefix == 'hip' else 'cuda'}_runtime_version"] = 12040
        if self.rank is not None:
            out["distributedInfo"] = {"backend": "nccl", "rank": self.rank,
                                      "world_size": self.world_size or 1}
        return out

    def write(self, path: str | Path) -> Path:
        """Write `.json` or `.json.gz` (by suffix)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(self.to_dict()).encode()
        if path.name.endswith(".gz"):
            # mtime=0: the same trace always gives the same bytes (fixtures stay stable).
            path.write_bytes(gzip.compress(data, mtime=0))
        else:
            path.write_bytes(data)
        return path

    def trace(self, path: str | Path | None = None) -> Trace:
        """Load the built trace through perftune's own loader."""
        from perftune.trace import load

        if path is not None:
            return load(self.write(path))
        with tempfile.TemporaryDirectory() as tmp:
            return load(self.write(Path(tmp) / "trace.json.gz"))
