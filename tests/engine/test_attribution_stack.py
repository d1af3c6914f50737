"""Attribution from the recorded stack (issue #13, section 2): the reported line is the
innermost frame of the user's own code, the library function it called is named beside it,
and a sync inside a library call lands on the user's *call* line, never on an `if` of plain
Python bools that happens to sit in the same function."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from perftune.engine.context import Context
from perftune.engine.fixtures import pycall, readback
from perftune.engine.registry import run_rules, select_rules
from perftune.engine.testing import TraceBuilder
from perftune.trace import load

SITE = "/home/u/.venv/lib/python3.11/site-packages"


@pytest.fixture(autouse=True)
def _in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _findings(path: Path, select: list[str]) -> list:
    trace = load(path)
    return list(run_rules(Context.build(trace, [path.parent]), select_rules(select=select),
                          strict=True))


MODEL = textwrap.dedent("""\
    import torch
    from torch import nn


    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(64, 4, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2)
            self.head = nn.Linear(64, 10)

        def forward(self, x, mask, has_mask, use_head):
            if has_mask:
                y = self.encoder(x, mask=mask)
            else:
                y = self.encoder(x)
            if use_head:
                y = self.head(y)
            return y
""")


def _encoder_trace(tmp: Path, gpu: bool) -> Path:
    """The causal-mask check inside nn.TransformerEncoder reads a bool back to the host."""
    (tmp / "model.py").write_text(MODEL)
    b = TraceBuilder(device=gpu)
    for _ in range(2):
        with b.step(), b.frame("model.py", 12, "forward"), \
                b.pycall(f"{SITE}/torch/nn/modules/module.py(1750): _call_impl"), \
                b.pycall("nn.Module: TransformerEncoder_0"), \
                b.pycall(f"{SITE}/torch/nn/modules/transformer.py(400): forward"), \
                b.pycall(f"{SITE}/torch/nn/modules/transformer.py(1200): _detect_is_causal_mask"):
            with b.op("aten::eq", dur=5):
                pass
            with pycall(b, "all"), b.op("aten::is_nonzero", input_dims=[[]],
                                        input_types=["bool"]), \
                    b.op("aten::item"), b.op("aten::_local_scalar_dense"):
                readback(b)
    return b.write(tmp / "trace.json.gz")


@pytest.mark.parametrize("gpu", [True, False])
def test_sync_inside_a_module_is_the_users_call_line_with_the_librarys_fix(
        tmp_path: Path, gpu: bool) -> None:
    path = _encoder_trace(tmp_path, gpu)
    (f,) = [f for f in _findings(path, ["PFT2"]) if f.code == "PFT206"]
    # Before: the k-th truth test of `forward` (`if has_mask:`, a Python bool) was blamed.
    assert f.location.line == 14 and "self.encoder(x, mask=mask)" in (f.location.source or "")
    assert f.evidence["via"] == "nn.TransformerEncoder"
    assert "_detect_is_causal_mask" in f.message
    assert "is_causal=True" in f.evidence["library_fix"]


MEMMAP = textwrap.dedent("""\
    import numpy as np
    import torch

    data = np.memmap("train.bin", dtype=np.uint16, mode="r")


    def get_batch(block_size=8, batch_size=4):
        ix = torch.randint(len(data) - block_size, (batch_size,))
        x = torch.stack([torch.from_numpy(data[i:i + block_size].astype(np.int64)) for i in ix])
        return x
""")


def test_op_inside_numpy_is_the_users_line_via_numpy(tmp_path: Path) -> None:
    """A tensor used as a numpy index inside the user's list comprehension: the user's line,
    'via numpy memmap indexing' — never numpy/_core/memmap.py."""
    (tmp_path / "train.py").write_text(MEMMAP)
    b = TraceBuilder()
    for _ in range(2):
        with b.step(), b.frame("train.py", 9, "<listcomp>"), \
                b.pycall(f"{SITE}/numpy/_core/memmap.py(359): __getitem__"), \
                pycall(b, "__index__"), b.op("aten::item", input_dims=[[]], input_types=["long int"]), \
                b.op("aten::_local_scalar_dense"):
            pass
    path = b.write(tmp_path / "trace.json.gz")
    found = [f for f in _findings(path, ["PFT2"]) if f.code == "PFT206"]
    assert found, "the latent .item() is still reported (provenance is absent in this run)"
    (f,) = found
    assert (f.location.file, f.location.line) == ("train.py", 9)
    assert f.evidence["via"] == "numpy._core.memmap.__getitem__"
    assert "numpy._core.memmap.__getitem__" in f.message


def test_without_python_stacks_the_record_function_region_is_the_location(tmp_path: Path) -> None:
    """Production traces often carry no python stack: the enclosing `record_function`
    annotation names where the sync happened instead of `<trace>`."""
    b = TraceBuilder(device=True)
    for _ in range(2):
        with b.step(), b.annotation("## sparse_data_dist ##"), \
                b.op("aten::item", input_dims=[[]], input_types=["float"]), \
                b.op("aten::_local_scalar_dense"):
            readback(b)
    path = b.write(tmp_path / "trace.json.gz")
    (f,) = [f for f in _findings(path, ["PFT2"]) if f.code == "PFT206"]
    assert f.location.file is None
    assert f.location.function == "## sparse_data_dist ##"
    assert str(f.location) == "## sparse_data_dist ##"


LOADERS = textwrap.dedent("""\
    import torch
    from torch.utils.data import DataLoader, TensorDataset


    def train(model, opt):
        eval_loader = DataLoader(TensorDataset(torch.randn(64, 3)), batch_size=8, num_workers=0)
        train_loader = DataLoader(TensorDataset(torch.randn(64, 3)), batch_size=8)
        batches = iter(train_loader)
        for _ in range(100):
            (x,) = next(batches)
            model(x).sum().backward()
            opt.step()
        for (x,) in eval_loader:
            model(x)
""")


def test_dataloader_advice_goes_to_the_loader_the_steps_iterated(tmp_path: Path) -> None:
    """Two DataLoaders: the evaluation loader (first in the file) never ran in the window;
    the one the loop fetched from (`next(batches)`, `batches = iter(train_loader)`) gets the
    configuration advice."""
    from perftune.engine.fixtures import STEPS, compute

    (tmp_path / "train.py").write_text(LOADERS)
    b = TraceBuilder(device=True)
    with b.frame("train.py", 9, "train"):  # already running: its current line, in the loop
        for _ in range(STEPS + 1):
            with b.step():
                with b.dataloader(single_process=True, dur=4000):
                    pass
                compute(b, "aten::conv2d", 2000, host=2000)
                with b.optimizer_step():
                    compute(b, "aten::_foreach_add_", 50)
    path = b.write(tmp_path / "trace.json.gz")
    found = {f.code: f for f in _findings(path, ["PFT1"])}
    assert found["PFT102"].location.line == 7
    assert "train_loader = DataLoader" in (found["PFT102"].location.source or "")
    assert found["PFT101"].location.line == 10  # where the step waits: `next(batches)`
    assert "train_loader" in (found["PFT101"].suggestion.diff or "")


FACTORIES = textwrap.dedent("""\
    def make_loader(dataset):
        return DataLoader(dataset, batch_size=16, num_workers=0)


    def make_loader_fixed(dataset):
        return DataLoader(dataset, batch_size=16, num_workers=2, persistent_workers=True)


    def train(model, opt, fixed):
        loader = make_loader_fixed(data) if fixed else make_loader(data)
        for x in loader:
            model(x).sum().backward()
            opt.step()
""")


def test_dataloader_advice_goes_to_the_construction_that_agrees_with_the_trace(tmp_path: Path) -> None:
    """Two DataLoader constructions behind factory functions: the trace's single-process
    iterator can only be the one built with num_workers=0 (the loop line is not where the
    workers are configured)."""
    from perftune.engine.fixtures import STEPS, compute

    (tmp_path / "train.py").write_text(FACTORIES)
    b = TraceBuilder(device=True)
    with b.frame("train.py", 12, "train"):
        for _ in range(STEPS + 1):
            with b.step():
                with b.dataloader(single_process=True, dur=4000):
                    pass
                compute(b, "aten::conv2d", 2000, host=2000)
                with b.optimizer_step():
                    compute(b, "aten::_foreach_add_", 50)
    path = b.write(tmp_path / "trace.json.gz")
    found = {f.code: f for f in _findings(path, ["PFT1"])}
    assert found["PFT102"].location.line == 2
