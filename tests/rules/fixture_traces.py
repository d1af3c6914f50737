"""Fixture traces of the input-pipeline (1xx) and sync (2xx) rules, built with TraceBuilder.

Each rule folder gets `gpu.json.gz` (the bad pattern with device activity: measured stalls),
`cpu.json.gz` (the same code profiled on a CPU: latent hazards) where the rule reports latent
hazards, and `clean.json.gz` (the good pattern: nothing to report). Python frames point at the
folder's own bad.py / good.py, so source attribution resolves the exact line from the trace's
folder. Regenerate with:

    python tests/rules/fixture_traces.py && PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from perftune.engine.testing import TraceBuilder

RULES = Path(__file__).resolve().parents[2] / "rules"
STEPS = 3


def _builder(gpu: bool) -> TraceBuilder:
    return TraceBuilder(device=gpu)


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


# ---------------------------------------------------------------------------- 2xx
def pft201(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("bad.py", 4, "class_histogram"), pycall(b, "bincount", "type"), \
                b.op("aten::bincount", input_dims=[[4096], [], []]):
            with b.op("aten::max"):
                if b.device:
                    b.kernel("void at::native::reduce_kernel", dur=5)
            item(b)
            if b.device:
                b.kernel("void at::native::bincount_kernel", dur=20)
    return steps(_builder(gpu), body)


def pft201_clean(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("good.py", 6, "class_histogram"):
            compute(b, "aten::zeros", 5)
            compute(b, "aten::scatter_add_", 10)
    return steps(_builder(gpu), body)


def pft202(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("bad.py", 6, "relabel_void"):
            compute(b, "aten::clone", 10)
            compute(b, "aten::eq", 10)
            with pycall(b, "nonzero", "type"):
                nonzero(b)
            # target[void] = IGNORE: long indices from nonzero, no second sync
            with b.op("aten::index_put_"), b.op("aten::_index_put_impl_"):
                if b.device:
                    b.kernel("void at::native::index_put_kernel", dur=10)
        with b.frame("bad.py", 13, "masked_mean"):
            compute(b, "aten::ne", 10)
            with b.op("aten::index", input_dims=[[4096], []], input_types=["float", ""]):
                nonzero(b)
                if b.device:
                    b.kernel("void at::native::index_kernel", dur=10)
            with pycall(b, "mean"):
                compute(b, "aten::mean", 10)
    return steps(_builder(gpu), body)


def pft202_clean(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("good.py", 6, "relabel_void"):
            compute(b, "aten::eq", 10)
            compute(b, "aten::where", 10)
        with b.frame("good.py", 10, "masked_mean"):
            compute(b, "aten::ne", 10)
            compute(b, "aten::mul", 10)
            compute(b, "aten::sum", 10)
    return steps(_builder(gpu), body)


def pft203(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("bad.py", 6, "class_counts"), \
                b.pycall("torch/_jit_internal.py(627): fn"), \
                b.pycall("torch/functional.py(803): _unique_impl"), pycall(b, "_unique2", "type"), \
                b.op("aten::_unique2", input_dims=[[4096], [], [], []],
                     concrete_inputs=["", "True", "False", "True"]):
            if b.device:
                b.kernel("void at::native::radix_sort_kernel", dur=40)
            readback(b)
        with b.frame("bad.py", 6, "class_counts"):
            compute(b, "aten::zeros", 5)
    return steps(_builder(gpu), body)


def pft204(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("bad.py", 4, "fill_invalid"):
            compute(b, "aten::lt", 10)
            with b.op("aten::index", input_dims=[[4096], []]):  # fallback[invalid]
                nonzero(b)
            with b.op("aten::index_put_", input_dims=[[4096], [], [512]]), b.op("aten::_index_put_impl_"):
                nonzero(b)
                if b.device:
                    b.kernel("void at::native::index_put_kernel", dur=10)
        with b.frame("bad.py", 10, "replace_kept"), \
                b.op("aten::index_put_", input_dims=[[4096], [], [512]]), b.op("aten::_index_put_impl_"):
            nonzero(b)
    return steps(_builder(gpu), body)


def pft205(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("bad.py", 4, "expand_tokens"), pycall(b, "repeat_interleave", "type"), \
                b.op("aten::repeat_interleave", input_dims=[[64], [64], [], []],
                     input_types=["long int", "long int", "", ""], concrete_inputs=["", "", "", ""]):
            compute(b, "aten::cumsum", 5)
            item(b)
            compute(b, "aten::index_select", 10)
    return steps(_builder(gpu), body)


def pft205_clean(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b)
        with b.frame("good.py", 4, "expand_tokens"), pycall(b, "repeat_interleave", "type"), \
                b.op("aten::repeat_interleave", input_dims=[[64], [64], [], []],
                     input_types=["long int", "long int", "", ""],
                     concrete_inputs=["", "", "", "2048"]):
            compute(b, "aten::cumsum", 5)
            compute(b, "aten::index_select", 10)
    return steps(_builder(gpu), body)


def pft206(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        with b.frame("bad.py", 1, "train_step"):
            compute(b, "aten::linear", 400)
            compute(b, "aten::mean", 10)
            with pycall(b, "item"):
                item(b)
            with b.op("aten::gt"):
                if b.device:
                    b.kernel("void at::native::compare_kernel", dur=3)
            item(b, truth_test=True)
    return steps(_builder(gpu), body)


def pft206_clean(gpu: bool) -> TraceBuilder:
    """An `.item()` on a CPU tensor inside a GPU trace is not a sync (e.g. a step counter)."""
    def body(b: TraceBuilder) -> None:
        with b.frame("good.py", 1, "train_step"):
            compute(b, "aten::linear", 400)
            compute(b, "aten::add_", 10)
            with pycall(b, "item"), b.op("aten::item"), b.op("aten::_local_scalar_dense"):
                pass  # CPU tensor: no runtime call below
    return steps(_builder(gpu), body)


def pft207(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        with b.frame("bad.py", 1, "evaluate_step"):
            compute(b, "aten::linear", 400)
            compute(b, "aten::argmax", 10)
            with pycall(b, "cpu"), b.op("aten::to"), b.op("aten::_to_copy"), b.op("aten::copy_"):
                if b.device:
                    b.memcpy("DtoH", nbytes=512, dur=3.0, blocking=True)
                    b.sync()
            with pycall(b, "tolist"):
                b.leaf("aten::resolve_conj", dur=1)
    return steps(_builder(gpu), body)


def pft208(gpu: bool) -> TraceBuilder:
    b = _builder(gpu)
    with b.frame("bad.py", 4, "train"):
        for _ in range(STEPS):
            with b.step():
                with b.dataloader(single_process=True, dur=200):
                    pass
                with pycall(b, "to"):
                    copy_to_device(b, 4 * 64 * 3 * 32 * 32, "Pageable", non_blocking=False,
                                   dims=[64, 3, 32, 32])
                with pycall(b, "to"):
                    copy_to_device(b, 8 * 64, "Pageable", non_blocking=False, dims=[64])
                compute(b, "aten::conv2d", 2000)
                compute(b, "aten::cross_entropy_loss", 50)
                with b.optimizer_step():
                    compute(b, "aten::_foreach_add_", 100)
    return b


def pft208_clean(gpu: bool) -> TraceBuilder:
    b = _builder(gpu)
    with b.frame("good.py", 4, "train"):
        for _ in range(STEPS):
            with b.step():
                with b.dataloader(single_process=True, dur=200):
                    pass
                with pycall(b, "to"):
                    copy_to_device(b, 4 * 64 * 3 * 32 * 32, "Pinned", non_blocking=True,
                                   dims=[64, 3, 32, 32])
                with pycall(b, "to"):
                    copy_to_device(b, 8 * 64, "Pinned", non_blocking=True, dims=[64])
                compute(b, "aten::conv2d", 2000)
    return b


def pft209(gpu: bool) -> TraceBuilder:
    b = _builder(gpu)
    with b.frame("bad.py", 4, "train"):
        for _ in range(STEPS):
            with b.step():
                with b.dataloader(single_process=True, dur=200):
                    pass
                with pycall(b, "to"):
                    copy_to_device(b, 4 * 64 * 3 * 32 * 32, "Pinned", non_blocking=False,
                                   dims=[64, 3, 32, 32])
                with pycall(b, "to"):
                    copy_to_device(b, 8 * 64, "Pinned", non_blocking=False, dims=[64])
                compute(b, "aten::conv2d", 2000)
    return b


def pft210(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b, "aten::linear", 400)
        with b.frame("bad.py", 4, "weighted_loss"):
            with pycall(b, "tensor", "type"):
                b.leaf("aten::empty", dur=1)
                if b.device:
                    copy_to_device(b, 12, "Pageable", non_blocking=False, dims=[3])
                b.leaf("aten::lift_fresh", dur=1)
                b.leaf("aten::detach_", dur=1)
            compute(b, "aten::mul", 10)
            compute(b, "aten::sum", 10)
    return steps(_builder(gpu), body)


def pft211(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        with b.frame("bad.py", 6, "timed_step"):
            compute(b, "aten::linear", 400)
            with b.optimizer_step():
                compute(b, "aten::_foreach_add_", 50)
            with b.pycall("torch/cuda/__init__.py(985): synchronize"):
                if b.device:
                    b.sync("cudaDeviceSynchronize")
    return steps(_builder(gpu), body)


def pft212(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b, "aten::conv2d", 500)
        with b.frame("bad.py", 6, "segmentation_loss"):
            compute(b, "aten::ne", 10)
            with pycall(b, "permute"):
                b.leaf("aten::permute", dur=2)
            for dims in ([[8, 64, 64, 6], []], [[8, 64, 64], []]):
                with b.op("aten::index", input_dims=dims):
                    nonzero(b, n=8 * 64 * 64, selected=30000)
                    if b.device:
                        b.kernel("void at::native::index_kernel", dur=10)
            with b.pycall("torch/nn/functional.py(3462): cross_entropy"), \
                    b.pycall("<built-in function cross_entropy_loss>"), \
                    b.op("aten::cross_entropy_loss", input_dims=[[30000, 6], [30000], [], [], [], []]):
                compute(b, "aten::log_softmax", 20)
                compute(b, "aten::nll_loss_nd", 10)
    return steps(_builder(gpu), body)


def pft212_clean(gpu: bool) -> TraceBuilder:
    def body(b: TraceBuilder) -> None:
        compute(b, "aten::conv2d", 500)
        with b.frame("good.py", 6, "segmentation_loss"), \
                b.op("aten::cross_entropy_loss", input_dims=[[8, 6, 64, 64], [8, 64, 64], [], [], [], []]):
            compute(b, "aten::log_softmax", 20)
            compute(b, "aten::nll_loss2d", 10)
    return steps(_builder(gpu), body)


# ---------------------------------------------------------------------------- 1xx
def _loader_loop(gpu: bool, file: str, *, wait_us: float, single: bool, compute_us: float,
                 copies: str | None = None) -> TraceBuilder:
    b = _builder(gpu)
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


def pft101(gpu: bool) -> TraceBuilder:
    return _loader_loop(gpu, "bad.py", wait_us=3000, single=True, compute_us=2000)


def pft101_clean(gpu: bool) -> TraceBuilder:
    return _loader_loop(gpu, "good.py", wait_us=40, single=False, compute_us=2000)


def pft102(gpu: bool) -> TraceBuilder:
    b = _builder(gpu)
    with b.frame("bad.py", 4, "make_loader"):
        b.leaf("aten::empty", dur=2)  # the DataLoader is built once, before the loop
    with b.frame("train.py", 10, "<module>"):
        for _ in range(STEPS):
            with b.step():
                with b.dataloader(single_process=True, dur=600):
                    pass
                compute(b, "aten::conv2d", 2000)
    return b


def pft102_clean(gpu: bool) -> TraceBuilder:
    b = _builder(gpu)
    with b.frame("good.py", 4, "make_loader"):
        b.leaf("aten::empty", dur=2)
    with b.frame("train.py", 10, "<module>"):
        for _ in range(STEPS):
            with b.step():
                with b.dataloader(single_process=False, dur=30):
                    pass
                compute(b, "aten::conv2d", 2000)
    return b


def pft103(gpu: bool) -> TraceBuilder:
    return _loader_loop(gpu, "bad.py", wait_us=50, single=False, compute_us=3000, copies="Pageable")


def pft103_clean(gpu: bool) -> TraceBuilder:
    return _loader_loop(gpu, "good.py", wait_us=50, single=False, compute_us=3000, copies="Pinned")


# ---------------------------------------------------------------------------- writing
# folder → {fixture name: (builder, gpu)}
FIXTURES: dict[str, dict[str, tuple[Callable[[bool], TraceBuilder], bool]]] = {
    "pft101_dataloader_wait": {"cpu": (pft101, False), "gpu": (pft101, True), "clean": (pft101_clean, True)},
    "pft102_dataloader_no_workers": {"cpu": (pft102, False), "clean": (pft102_clean, False)},
    "pft103_dataloader_no_pin_memory": {"gpu": (pft103, True), "clean": (pft103_clean, True),
                                        "cpu": (pft103, False)},
    "pft201_sync_in_step": {"gpu": (pft201, True), "clean": (pft201_clean, True), "cpu": (pft201, False)},
    "pft202_data_dependent_shape": {"gpu": (pft202, True), "cpu": (pft202, False), "clean": (pft202_clean, True)},
    "pft203_unique_sync": {"gpu": (pft203, True), "cpu": (pft203, False), "clean": (pft202_clean, True)},
    "pft204_boolean_mask_assignment": {"gpu": (pft204, True), "cpu": (pft204, False), "clean": (pft202_clean, True)},
    "pft205_repeat_interleave_no_output_size": {"gpu": (pft205, True), "cpu": (pft205, False),
                                                "clean": (pft205_clean, True)},
    "pft206_scalar_readback": {"gpu": (pft206, True), "cpu": (pft206, False), "clean": (pft206_clean, True)},
    "pft207_host_transfer_in_loop": {"gpu": (pft207, True), "cpu": (pft207, False), "clean": (pft206_clean, True)},
    "pft208_pageable_copy": {"gpu": (pft208, True), "cpu": (pft208, False), "clean": (pft208_clean, True)},
    "pft209_blocking_copy": {"gpu": (pft209, True), "cpu": (pft209, False), "clean": (pft208_clean, True)},
    "pft210_tensor_from_python_data": {"gpu": (pft210, True), "cpu": (pft210, False), "clean": (pft202_clean, True)},
    "pft211_explicit_synchronize": {"gpu": (pft211, True), "cpu": (pft211, False), "clean": (pft206_clean, True)},
    "pft212_masked_loss": {"gpu": (pft212, True), "cpu": (pft212, False), "clean": (pft212_clean, True)},
}


def write_all(root: Path = RULES) -> list[Path]:
    written = []
    for folder, fixtures in FIXTURES.items():
        for name, (build, gpu) in fixtures.items():
            written.append(build(gpu).write(root / folder / f"{name}.json.gz"))
    return written


if __name__ == "__main__":
    for path in write_all():
        print(f"wrote {path.relative_to(RULES.parent)} ({path.stat().st_size} bytes)")
