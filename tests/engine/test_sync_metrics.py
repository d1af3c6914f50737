"""Unit tests of perftune.trace.sync_metrics: hazards, their classification and measures."""

from __future__ import annotations

import pytest

from perftune.engine.testing import TraceBuilder
from perftune.trace import sync_metrics as sm


@pytest.mark.parametrize(("name", "expected"), [
    ("<built-in method item of Tensor object at 0x7f00>", "item"),
    ("<built-in function cross_entropy_loss>", "cross_entropy_loss"),
    ("<built-in method tensor of type object at 0x1>", "tensor"),
    ("train.py(12): step", None),
    ("torch/nn/functional.py(3462): cross_entropy", None),
])
def test_python_call_name(name: str, expected: str | None) -> None:
    assert sm.python_call_name(name) == expected


@pytest.mark.parametrize(("names", "call", "kinds", "sync", "cause"), [
    (["aten::index_put_", "aten::_index_put_impl_", "aten::nonzero"], None, set(), True, sm.SyncCause.BOOLEAN_MASK_ASSIGNMENT),
    (["aten::index_put_", "aten::_index_put_impl_", "aten::item", "aten::masked_fill_"], None, set(), True, None),
    (["aten::index", "aten::nonzero"], None, set(), True, sm.SyncCause.DATA_DEPENDENT_SHAPE),
    (["aten::where", "aten::nonzero_numpy", "aten::nonzero"], "where", set(), True, sm.SyncCause.DATA_DEPENDENT_SHAPE),
    (["aten::_unique2"], None, set(), True, sm.SyncCause.UNIQUE),
    (["aten::repeat_interleave", "aten::item"], None, set(), True, sm.SyncCause.REPEAT_INTERLEAVE),
    (["aten::is_nonzero", "aten::item", "aten::_local_scalar_dense"], None, set(), True, sm.SyncCause.SCALAR_READBACK),
    (["aten::bincount", "aten::item"], None, set(), True, None),  # the user called bincount
    (["aten::to", "aten::_to_copy", "aten::copy_"], "cpu", {("DtoH", "Device", "Pageable")}, True, sm.SyncCause.HOST_TRANSFER),
    (["aten::to", "aten::_to_copy", "aten::copy_"], "to", {("HtoD", "Pageable", "Device")}, True, sm.SyncCause.PAGEABLE_COPY),
    (["aten::to", "aten::_to_copy", "aten::copy_"], "to", {("HtoD", "Pinned", "Device")}, True, sm.SyncCause.BLOCKING_COPY),
    (["aten::to", "aten::_to_copy", "aten::copy_"], "to", {("HtoD", "Pinned", "Device")}, False, None),
    (["aten::empty", "aten::lift_fresh"], "tensor", set(), False, sm.SyncCause.TENSOR_FROM_PYTHON),
])
def test_classify(names: list[str], call: str | None, kinds: set[tuple[str, str, str]],
                  sync: bool, cause: sm.SyncCause | None) -> None:
    assert sm.classify(names, call, kinds, has_op=True, has_sync=sync)[0] == cause


def test_sync_outside_any_op_is_explicit() -> None:
    assert sm.classify([], None, set(), has_op=False)[0] == sm.SyncCause.EXPLICIT_SYNCHRONIZE


def test_to_non_blocking_reads_each_overload() -> None:
    assert sm.to_non_blocking(["", "6", "0", "", "", "True", "False", ""]) is True
    assert sm.to_non_blocking(["", "", "6", "False", "False", ""]) is False
    assert sm.to_non_blocking(["", "6", "True", "False", ""]) is True
    assert sm.to_non_blocking(None) is None and sm.to_non_blocking(["x"]) is None


def test_hazard_measures_stall_chain_and_step() -> None:
    b = TraceBuilder(device=True)
    for _ in range(2):
        with b.step(), b.frame("t.py", 1, "f"):
            b.kernel("gemm", dur=800)
            with b.op("aten::item"), b.op("aten::_local_scalar_dense"):
                b.memcpy("DtoH", nbytes=4)
                b.sync()
    trace = b.trace()
    hazards = sm.host_hazards(sm.HostIndex(trace))
    assert [h.step for h in hazards] == [0, 1]
    h = hazards[0]
    assert h.cause == sm.SyncCause.SCALAR_READBACK and h.on_device and not h.latent
    assert h.chain == ("aten::item", "aten::_local_scalar_dense", "cudaMemcpyAsync", "cudaStreamSynchronize")
    assert h.stall_us >= 700  # waited for the 800 µs gemm
    assert trace.name_of(h.frame_row) == "t.py(1): f"
    assert sm.idle_after_us(sm.HostIndex(trace), h.sync_rows[-1]) > 0


def test_optimizer_bounded_steps_keep_the_first_and_last_iteration() -> None:
    b = TraceBuilder()
    for _ in range(3):
        with b.frame("t.py", 1, "f"):
            b.leaf("aten::item")
        with b.optimizer_step():
            b.leaf("aten::add_")
    trace = b.trace()
    assert trace.step_source == "optimizer-step" and len(trace.steps) == 2
    assert sm.step_windows(trace) == 3
    assert [h.step for h in sm.host_hazards(sm.HostIndex(trace))] == [0, 0, 1]


def test_dataloader_wait_share_and_kind() -> None:
    b = TraceBuilder()
    for _ in range(2):
        with b.step():
            with b.dataloader(single_process=False, dur=100):
                pass
            b.leaf("aten::mm", dur=300)
    wait = sm.dataloader_wait(sm.HostIndex(b.trace()))
    assert wait is not None and not wait.single_process
    assert wait.wait_us_per_step == pytest.approx(100)
    assert 0.2 < wait.share < 0.3


def test_batch_moves_right_after_the_dataloader() -> None:
    b = TraceBuilder()
    with b.step():
        with b.dataloader(dur=50):
            pass
        with b.frame("t.py", 1, "f"):
            with b.pycall("<built-in method to of Tensor object at 0x1>"):
                b.leaf("aten::to", input_dims=[[8, 3], [], [], [], [], [], [], []],
                       concrete_inputs=["", "6", "0", "", "", "False", "False", ""])
            for _ in range(12):
                b.leaf("aten::mm", dur=10)
            with b.pycall("<built-in method to of Tensor object at 0x1>"):
                b.leaf("aten::to", input_dims=[[8, 3], [], [], [], [], [], [], []])
    moves = sm.device_moves(sm.HostIndex(b.trace()))
    assert [(m.after_dataloader, m.early_in_step, m.non_blocking) for m in moves] == [
        (True, True, False), (False, False, None)]
