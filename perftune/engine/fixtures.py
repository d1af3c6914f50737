"""Fixture traces of the rule catalogue: shared building blocks and the one way to write them.

Each rule folder's `fixtures.py` defines `FIXTURES`, a mapping of fixture name to a function
that builds the trace (a `perftune.engine.testing.TraceBuilder` or its dict); the folder's
`<name>.json.gz` files are exactly what these builders produce (gzip with mtime 0, compact
JSON), checked by the catalogue test. After changing a builder:

    python -m perftune.engine.fixtures pft202          # or no argument: every folder
    PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft202

The helpers below are the patterns several folders share: ops that keep the device busy, a
device value read back on the host, DataLoader loops, GPU device properties, a straggling rank.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from perftune._resources import rules_dir
from perftune.engine.testing import TraceBuilder

Fixture = Callable[[], "TraceBuilder | dict[str, Any]"]


# ---------------------------------------------------------------------------- patterns
STEPS = 3


def compute(b: TraceBuilder, name: str = "aten::mul", dur: float = 300.0,
            host: float | None = None) -> None:
    """An op that keeps the device busy (on GPU) or the CPU (on CPU); `host` sets its host
    duration on a GPU (default: just the launch)."""
    with b.op(name, dur=dur if not b.device else host):
        if b.device:
            b.kernel(f"void at::native::{name.split('::')[-1]}_kernel", dur=dur)


def readback(b: TraceBuilder, nbytes: int = 8) -> None:
    """What an op does on a GPU when it needs a device value on the host."""
    if b.device:
        b.memcpy("DtoH", nbytes=nbytes, dur=2.0)
        b.sync()


@contextmanager
def pycall(b: TraceBuilder, method: str, of: str = "Tensor") -> Iterator[None]:
    with b.pycall(f"<built-in method {method} of {of} object at 0x7f0000000000>"):
        yield


def nonzero(b: TraceBuilder, n: int = 4096, selected: int = 512) -> None:
    with b.op("aten::nonzero", input_dims=[[n]], input_types=["bool"]):
        if b.device:
            b.kernel("void at::native::count_nonzero_kernel", dur=5)
        readback(b)
        b.leaf("aten::as_strided_", input_dims=[[selected, 1], [], [], []], dur=1)


def item(b: TraceBuilder, truth_test: bool = False) -> None:
    if truth_test:
        with b.op("aten::is_nonzero", input_dims=[[]], input_types=["bool"]), \
                b.op("aten::item"), b.op("aten::_local_scalar_dense"):
            readback(b)
    else:
        with b.op("aten::item", input_dims=[[]], input_types=["float"]), \
                b.op("aten::_local_scalar_dense"):
            readback(b)


def copy_to_device(b: TraceBuilder, nbytes: int, src: str, *, non_blocking: bool,
                   dims: list[int]) -> None:
    flag = "True" if non_blocking else "False"
    with b.op("aten::to", input_dims=[dims, [], [], [], [], [], [], []],
              concrete_inputs=["", "6", "0", "", "", flag, "False", ""]), \
            b.op("aten::_to_copy"), b.op("aten::copy_"):
        if b.device:
            b.memcpy("HtoD", src=src, nbytes=nbytes, dur=nbytes / 10_000.0,
                     blocking=src == "Pageable")
            if not non_blocking:
                b.sync()


def steps(b: TraceBuilder, body: Callable[[TraceBuilder], None], n: int = STEPS) -> TraceBuilder:
    for _ in range(n):
        with b.step():
            body(b)
    return b


def loader_loop(gpu: bool, file: str, *, wait_us: float, single: bool, compute_us: float,
                 copies: str | None = None) -> TraceBuilder:
    b = TraceBuilder(device=gpu)
    with b.frame(file, 4, "train"):
        for _ in range(STEPS + 1):
            with b.step():
                with b.dataloader(single_process=single, dur=wait_us):
                    pass
                if copies is not None:
                    with pycall(b, "to"):
                        copy_to_device(b, 4 * 256 * 3 * 64 * 64, copies, non_blocking=False,
                                       dims=[256, 3, 64, 64])
                # A real loop is throttled by the device: its host step lasts as long.
                compute(b, "aten::conv2d", compute_us, host=compute_us)
                with b.optimizer_step():
                    compute(b, "aten::_foreach_add_", 50)
    return b


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


def op_kernel(b: TraceBuilder, op: str, kernel: str, dur: float, dims: list[Any] | None = None,
               types: list[Any] | None = None, **kw: Any) -> None:
    with b.op(op, input_dims=dims, input_types=types):
        b.kernel(kernel, dur=dur, **kw)


def cpu_host(threads: int = 8, cores: int = 8, flags: Sequence[str] = ("amx_bf16", "amx_tile", "avx512_bf16"),
             **extra: Any) -> dict[str, Any]:
    """The trace header `perftune profile` writes on a CPU (capture/child/meta.compute_facts)."""
    host = {"torch_threads": threads, "interop_threads": threads, "usable_cores": cores,
            "cpu_count": cores, "omp_num_threads": None, "mkl_num_threads": None,
            "cpu_flags": list(flags), "float32_matmul_precision": "highest",
            "cuda_matmul_allow_tf32": False, "cudnn_allow_tf32": True, "mkldnn": True,
            "cpu_capability": "AVX512", **extra}
    return {"perftune": {"version": "fixture", "step_source": "optimizer", "skip": 5, "active": 3,
                         "host": host}}


def cpu_train_steps(header: dict[str, Any] | None, *, steps: int = 3, convs: int = 3,
                    conv_us: float = 9000.0, python_us: float = 0.0, dtype: str = F32,
                    channels_last: bool = False, batch: int = 32, file: str = "bad.py",
                    line: int = 1) -> dict[str, Any]:
    """A CPU training step: `convs` convolutions forward (at `file:line`), their backward
    (twice as long), an SGD step; `python_us` of Python between ops after the backward."""
    b = TraceBuilder(header=header)
    shape = [batch, 64, 56, 56]
    strides = [200704, 1, 3584, 64] if channels_last else [200704, 3136, 56, 1]
    for _ in range(steps):
        with b.step(), b.frame(file, line, "train_step"):
            handles = []
            for _ in range(convs):
                handles.append(b.leaf("aten::conv2d", dur=conv_us, sequence=True,
                                      input_dims=[shape, [64, 64, 3, 3], [64], [], [], [], []],
                                      input_types=[dtype, dtype, dtype, "ScalarList", "ScalarList",
                                                   "ScalarList", "Scalar"],
                                      input_strides=[strides, [576, 9, 3, 1], [1], [], [], [], []],
                                      concrete_inputs=["", "", "", "[1, 1]", "[1, 1]", "[1, 1]", "1"]))
            for h in reversed(handles):
                with b.backward_of(h, "autograd::engine::evaluate_function: ConvolutionBackward0"):
                    b.leaf("aten::convolution_backward", dur=2 * conv_us,
                           input_dims=[shape, shape, [64, 64, 3, 3], [], [], [], [], [], [], [], []],
                           input_types=[dtype, dtype, dtype, "ScalarList", "ScalarList", "ScalarList",
                                        "ScalarList", "Scalar", "ScalarList", "Scalar", "ScalarList"])
            if python_us:
                b.advance(python_us)
            with b.optimizer_step():
                b.leaf("aten::add_", dur=200.0)
    return b.to_dict()


def straggler_rank(rank: int, compute_us: float | list[float], comm_us: list[float],
                   world: int = 2) -> TraceBuilder:
    """One rank of a data-parallel job: compute (the same every step, or one figure per step),
    then two all-reduces per step."""
    b = TraceBuilder(device=True, rank=rank, world_size=world, device_properties=[dict(A100)],
                     pid=1000 + rank)
    computes = compute_us if isinstance(compute_us, list) else [compute_us] * len(comm_us)
    for compute, comm in zip(computes, comm_us, strict=True):
        with b.step(), b.frame("bad.py", 1, "train_step"):
            op_kernel(b, "aten::mm", "ampere_s16816gemm_tf32_128x128_nn", compute)
            b.advance(compute + 50)
            for _ in range(2):
                with b.op("c10d::allreduce_"), b.annotation("nccl:all_reduce"):
                    b.kernel(NCCL_ALLREDUCE, dur=comm, stream=20, grid=(2, 1, 1), block=(512, 1, 1))
            b.sync(dur=2 * comm + 10)
    return b



# ---------------------------------------------------------------------------- writing


def masked_relabel_clean(gpu: bool) -> TraceBuilder:
    """The rewritten loss: `torch.where` relabelling and a multiplied mask (no sync, no mask)."""
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("good.py", 6, "relabel_void"):
            compute(b, "aten::eq", 10)
            compute(b, "aten::where", 10)
        with b.frame("good.py", 10, "masked_mean"):
            compute(b, "aten::ne", 10)
            compute(b, "aten::mul", 10)
            compute(b, "aten::sum", 10)
    return steps(TraceBuilder(device=gpu), body)


def cpu_item_clean(gpu: bool) -> TraceBuilder:
    """An `.item()` on a CPU tensor inside a GPU trace is not a sync (e.g. a step counter)."""
    def body(b: TraceBuilder) -> None:
        with b.frame("good.py", 1, "train_step"):
            compute(b, "aten::linear", 400)
            compute(b, "aten::add_", 10)
            with pycall(b, "item"), b.op("aten::item"), b.op("aten::_local_scalar_dense"):
                pass  # CPU tensor: no runtime call below
    return steps(TraceBuilder(device=gpu), body)


def gemm_steps(n: int, marked: bool = True) -> dict[str, Any]:
    """`n` GPU steps of one GEMM each, with or without ProfilerStep markers (trace-quality rules)."""
    b = TraceBuilder(device=True)
    for _ in range(n):
        if marked:
            with b.step(), b.frame("bad.py", 1, "train_step"):
                op_kernel(b, "aten::mm", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 500.0)
        else:
            with b.frame("bad.py", 1, "train_step"):
                op_kernel(b, "aten::mm", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 500.0)
    return b.to_dict()


def batch_copy_loop(gpu: bool, file: str, memory: str, *, non_blocking: bool,
                    optimizer: bool = False) -> TraceBuilder:
    """Steps that copy an image batch and its labels to the device (`memory`: Pageable or
    Pinned), then convolve; `optimizer` adds the loss and a multi-tensor update."""
    b = TraceBuilder(device=gpu)
    with b.frame(file, 4, "train"):
        for _ in range(STEPS):
            with b.step():
                with b.dataloader(single_process=True, dur=200):
                    pass
                with pycall(b, "to"):
                    copy_to_device(b, 4 * 64 * 3 * 32 * 32, memory, non_blocking=non_blocking,
                                   dims=[64, 3, 32, 32])
                with pycall(b, "to"):
                    copy_to_device(b, 8 * 64, memory, non_blocking=non_blocking, dims=[64])
                compute(b, "aten::conv2d", 2000)
                if optimizer:
                    compute(b, "aten::cross_entropy_loss", 50)
                    with b.optimizer_step():
                        compute(b, "aten::_foreach_add_", 100)
    return b


def encode(data: TraceBuilder | Mapping[str, Any]) -> bytes:
    """The bytes of a fixture file: compact JSON, gzip with mtime 0 (stable across runs)."""
    doc = data.to_dict() if isinstance(data, TraceBuilder) else dict(data)
    return gzip.compress(json.dumps(doc, separators=(",", ":")).encode(), mtime=0)


def folder_fixtures(folder: Path) -> dict[str, Fixture]:
    """The builders of a rule folder (its fixtures.py `FIXTURES`; none without the file)."""
    from perftune.engine.registry import load_rule_file

    if not (folder / "fixtures.py").is_file():
        return {}
    found: dict[str, Fixture] = dict(getattr(load_rule_file(folder / "fixtures.py"), "FIXTURES", {}))
    return found


def fixture_file(folder: Path, name: str) -> Path:
    return folder / f"{name}.json.gz"


def write_fixtures(folder: Path) -> list[Path]:
    """Rebuild every fixture trace of a rule folder from its builders."""
    written = []
    for name, build in sorted(folder_fixtures(folder).items()):
        path = fixture_file(folder, name)
        path.write_bytes(encode(build()))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perftune.engine.fixtures",
                                     description="Rewrite rule folders' fixture traces from their builders.")
    parser.add_argument("rules", nargs="*", help="rule codes or folder prefixes (default: all)")
    parser.add_argument("--root", type=Path, default=None, help="rules folder (default: the catalogue)")
    args = parser.parse_args(argv)
    base = args.root or rules_dir()
    folders = sorted(p for p in base.glob("pft*") if (p / "fixtures.py").is_file()
                     and (not args.rules or any(p.name.startswith(r.lower()) for r in args.rules)))
    if not folders:
        print(f"fixtures: error: no rule folder with fixtures.py matches {args.rules}", file=sys.stderr)
        return 2
    for folder in folders:
        for path in write_fixtures(folder):
            print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# ---------------------------------------------------------------------------- torch.compile
def with_compilation(b: TraceBuilder, document: Any) -> dict[str, Any]:
    """A trace that carries its run's compilation.json (a `CompilationDocument`), as the
    compilation rules' fixtures do (perftune.engine.catalogue.fixture_compilation)."""
    from perftune.documents import document_data
    from perftune.engine.catalogue import FIXTURE_COMPILATION_KEY

    data = b.to_dict()
    data[FIXTURE_COMPILATION_KEY] = document_data(document)
    return data


def compiled_forward_backward(b: TraceBuilder, frames: list[tuple[str, str, int, str]],
                              eager: Callable[[TraceBuilder], None] | None = None,
                              graph_us: float = 400.0) -> None:
    """One step of compiled code as torch.profiler records it: for each (compile id, file,
    line, function) a guard check and a `Torch-Compiled Region` around the frame and its
    forward graph, each later frame nested in the first (dynamo resumes it from there) after
    `eager` (the code between graphs); then one backward graph per forward graph."""

    def region(k: int) -> None:
        compile_id, file, line, function = frames[k]
        b.leaf("TorchDynamo Cache Lookup", dur=20.0)
        with b.op(f"Torch-Compiled Region: {compile_id}"), b.frame(file, line, function):
            with b.op("CompiledFunction"):
                b.advance(graph_us)
            if k + 1 < len(frames):
                if eager is not None:
                    eager(b)
                region(k + 1)

    region(0)
    for _ in frames:
        with b.op("autograd::engine::evaluate_function: CompiledFunctionBackward"), \
                b.op("CompiledFunctionBackward"):
            b.advance(graph_us)
