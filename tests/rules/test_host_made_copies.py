"""PFT208/PFT209 on a CPU capture, from what device provenance saw each `.to(device)` copy
(tests/field/simclr_info_nce.py, tests/field/mae_pretrain_engine.py):

- a tensor the step makes on the host and copies every step (SimCLR's label matrix and mask)
  is a pageable, blocking copy on a GPU wherever it sits in the step, not only right after
  the DataLoader;
- a `torch.cat` of the loader's views is host memory the loader never pinned;
- a batch from a loader that asks for pinned memory through an expression the source cannot
  read (`pin_memory=args.pin_mem`) is pinned;
- a `.to(device)` of a tensor already on the device copies nothing.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

from perftune.documents import ProvenanceDocument, ProvenanceSite
from perftune.engine.context import Context
from perftune.engine.fixtures import compute, copy_to_device, pycall
from perftune.engine.registry import analyze
from perftune.engine.testing import TraceBuilder
from perftune.rundir import RunDir
from perftune.trace import load

LOSS = textwrap.dedent("""\
    def info_nce(features, device):
        sim = features @ features.T
        labels = make_labels().to(device)
        mask = make_mask().to(device)
        norm = features.norm().to(device)
        return sim, labels, mask, norm
""")
LOSS_MOVES = (3, 4, 5)  # the lines of the three moves, in the order they run


@pytest.fixture(autouse=True)
def _in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _loss_trace(tmp: Path) -> Path:
    (tmp / "loss.py").write_text(LOSS)
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step(), b.frame("loss.py", 1, "info_nce"):
            for _ in range(10):  # the forward: the moves are not among the step's first ops
                compute(b, "aten::mm", 200)
            for _ in LOSS_MOVES:
                with pycall(b, "to"):
                    copy_to_device(b, 4 * 128 * 128, "Pageable", non_blocking=False, dims=[128, 128])
            with b.optimizer_step():
                compute(b, "aten::_foreach_add_", 50)
    return b.write(tmp / "trace.json.gz")


def _provenance(tmp: Path, file: str, function: str, calls: dict[int, str], steps: int = 3) -> None:
    RunDir(tmp).write_document(ProvenanceDocument(device="cpu", steps=steps, sites=[
        ProvenanceSite(file=str(tmp / file), line=line, function=function, call=call, order=k,
                       untagged=steps if call != "to[none]" else 0,
                       tagged=steps if call == "to[none]" else 0)
        for k, (line, call) in enumerate(calls.items())]))


def _lines(path: Path, code: str) -> set[int | None]:
    findings = analyze(Context.build(load(path), [path.parent]), select=[code])
    return {f.location.line for f in findings}


def test_host_made_tensors_copied_mid_step_are_pageable_blocking_copies(tmp_path: Path) -> None:
    path = _loss_trace(tmp_path)
    _provenance(tmp_path, "loss.py", "info_nce", {3: "to[host]", 4: "to[host]", 5: "to[none]"})
    assert _lines(path, "PFT208") == {3, 4}
    assert _lines(path, "PFT209") == {3, 4}


def test_without_provenance_mid_step_moves_are_not_guessed(tmp_path: Path) -> None:
    path = _loss_trace(tmp_path)
    assert _lines(path, "PFT208") == set() and _lines(path, "PFT209") == set()


def test_moves_that_do_not_match_the_record_are_not_assigned(tmp_path: Path) -> None:
    path = _loss_trace(tmp_path)  # three moves a step, two recorded: no guess among them
    _provenance(tmp_path, "loss.py", "info_nce", {3: "to[host]", 4: "to[host]"})
    assert _lines(path, "PFT208") == set()


LOOP = textwrap.dedent("""\
    from torch.utils.data import DataLoader


    def train(model, dataset, optimizer, args, device):
        loader = DataLoader(dataset, batch_size=64, pin_memory={pin})
        for views, _ in loader:
            images = {moved}.to(device)
            model(images).sum().backward()
            optimizer.step()
""")


def _loop_trace(tmp: Path, *, pin: str, moved: str, recorded: str | None) -> Path:
    (tmp / "train.py").write_text(LOOP.format(pin=pin, moved=moved))
    b = TraceBuilder(device=False)
    with b.frame("train.py", 4, "train"):
        for _ in range(3):
            with b.step():
                with b.dataloader(single_process=False, dur=40):
                    pass
                with pycall(b, "to"):
                    copy_to_device(b, 4 * 64 * 3 * 32 * 32, "Pageable", non_blocking=False,
                                   dims=[64, 3, 32, 32])
                compute(b, "aten::conv2d", 2000)
                with b.optimizer_step():
                    compute(b, "aten::_foreach_add_", 50)
    path = b.write(tmp / "trace.json.gz")
    (tmp / "provenance.json").unlink(missing_ok=True)
    if recorded is not None:
        _provenance(tmp, "train.py", "train", {7: recorded})
    return path


def test_a_loader_that_asks_for_pinned_memory_through_an_argument_pins(tmp_path: Path) -> None:
    path = _loop_trace(tmp_path, pin="args.pin_mem", moved="views", recorded="to[pinned]")
    assert _lines(path, "PFT208") == set()
    # the same run without provenance: the source cannot say, the copy is reported as before
    (tmp_path / "provenance.json").unlink()
    assert _lines(path, "PFT208") == {7}


def test_a_loader_that_does_not_pin_keeps_its_pageable_copy(tmp_path: Path) -> None:
    path = _loop_trace(tmp_path, pin="args.pin_mem", moved="views", recorded="to[batch]")
    assert _lines(path, "PFT208") == {7}


def test_a_concatenation_of_pinned_views_is_pageable(tmp_path: Path) -> None:
    path = _loop_trace(tmp_path, pin="True", moved="torch.cat(views)", recorded="to[host]")
    assert _lines(path, "PFT208") == {7}
    path = _loop_trace(tmp_path, pin="True", moved="torch.cat(views)", recorded=None)
    assert _lines(path, "PFT208") == set()  # without provenance: the loader's pinning, as before


SCHEDULE = textwrap.dedent("""\
    def extract(arr, t):
        return torch.from_numpy(arr).to(device=t.device)[t]


    def q_sample(x, t, noise, a, b):
        return extract(a, t) * x + extract(b, t) * noise
""")


def test_a_function_called_twice_a_step_makes_its_share_of_the_recorded_moves(tmp_path: Path) -> None:
    """DDPM's schedule lookup (tests/field/ddpm_noise_schedule.py): `extract` runs twice a
    step and copies its host array each time; provenance counts 2 moves a step at its line,
    the trace shows 1 per call of the function."""
    (tmp_path / "diffusion.py").write_text(SCHEDULE)
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step(), b.frame("diffusion.py", 5, "q_sample"):
            for _ in range(10):
                compute(b, "aten::mm", 200)
            for _ in range(2):
                with b.frame("diffusion.py", 1, "extract"), pycall(b, "to"):
                    copy_to_device(b, 8 * 1000, "Pageable", non_blocking=False, dims=[1000])
            with b.optimizer_step():
                compute(b, "aten::_foreach_add_", 50)
    path = b.write(tmp_path / "trace.json.gz")
    RunDir(tmp_path).write_document(ProvenanceDocument(device="cpu", steps=3, sites=[
        ProvenanceSite(file=str(tmp_path / "diffusion.py"), line=2, function="extract",
                       call="to[host]", untagged=6, order=0)]))
    assert _lines(path, "PFT208") == {2}
    assert _lines(path, "PFT209") == {2}


COMPREHENSIONS = textwrap.dedent("""\
    def train(model, loader, device):
        for dense, offsets, indices, target in loader:
            dense = dense.to(device)
            offsets = [o.to(device) for o in offsets]
            indices = [i.to(device) for i in indices]
            target = target.to(device)
            model(dense, offsets, indices, target).backward()
""")


def test_copies_in_comprehension_frames_stay_at_their_own_lines(tmp_path: Path) -> None:
    """Python < 3.12 runs each comprehension as a frame of its own (`<listcomp>`): the moves
    of two comprehensions on two lines of one function are told apart by the frame's line, and
    the function's own moves never land on the comprehensions' `.to(` calls
    (tests/field/dlrm_embedding_bag.py)."""
    (tmp_path / "train.py").write_text(COMPREHENSIONS)
    b = TraceBuilder(device=False)

    def move(n: int = 128) -> None:
        with pycall(b, "to"):
            copy_to_device(b, 8 * n, "Pageable", non_blocking=False, dims=[n])

    with b.frame("train.py", 1, "train"):
        for _ in range(3):
            with b.step():
                with b.dataloader(single_process=True, dur=40):
                    pass
                move()
                for line in (4, 5):
                    with b.frame("train.py", line, "<listcomp>"):
                        for _ in range(4):
                            move()
                move()
                compute(b, "aten::mm", 2000)
                with b.optimizer_step():
                    compute(b, "aten::_foreach_add_", 50)
    path = b.write(tmp_path / "trace.json.gz")
    RunDir(tmp_path).write_document(ProvenanceDocument(device="cpu", steps=3, sites=[
        ProvenanceSite(file=str(tmp_path / "train.py"), line=line, function=function,
                       call="to[batch]", untagged=3 * per_step, order=k)
        for k, (line, function, per_step) in enumerate(
            [(3, "train", 1), (4, "<listcomp>", 4), (5, "<listcomp>", 4), (6, "train", 1)])]))
    assert _lines(path, "PFT208") == {3, 4, 5, 6}


RNN = textwrap.dedent("""\
    def encode(rnn, embedded, lengths):
        packed = pack_padded_sequence(embedded, lengths.to("cpu"), enforce_sorted=False)
        return rnn(packed)
""")


def test_a_copy_torch_s_own_helper_makes_is_not_the_user_s_move(tmp_path: Path) -> None:
    """`pack_padded_sequence(..., enforce_sorted=False)` moves its sorted indices to the
    input's device itself: not a `.to()` the user wrote, pinned or made non-blocking."""
    (tmp_path / "seq.py").write_text(RNN)
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step(), b.frame("seq.py", 1, "encode"):
            with pycall(b, "to"):  # the user's `lengths.to("cpu")`: a copy to the host
                copy_to_device(b, 8 * 32, "Pageable", non_blocking=False, dims=[32])
            with b.frame("/usr/lib/python3.11/site-packages/torch/nn/utils/rnn.py", 300,
                         "pack_padded_sequence"), pycall(b, "to"):
                copy_to_device(b, 8 * 32, "Pageable", non_blocking=False, dims=[32])
            for _ in range(10):
                compute(b, "aten::mm", 200)
            with b.optimizer_step():
                compute(b, "aten::_foreach_add_", 50)
    path = b.write(tmp_path / "trace.json.gz")
    RunDir(tmp_path).write_document(ProvenanceDocument(device="cpu", steps=3, sites=[
        ProvenanceSite(file=str(tmp_path / "seq.py"), line=2, function="encode", call=call,
                       tagged=3, order=k) for k, call in enumerate(("to[none]", "cpu"))]))
    assert _lines(path, "PFT208") == set() and _lines(path, "PFT209") == set()

