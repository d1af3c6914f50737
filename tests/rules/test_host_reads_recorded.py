"""PFT207 on a CPU capture, from device provenance: `.cpu().numpy()` of a device tensor is one
copy to the host (one finding per line, not one per call); `F.ctc_loss` given device length
tensors copies them to the host inside the library call (tests/field/ctc_speech.py,
tests/field/dlrm_embedding_bag.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

from perftune.documents import ProvenanceDocument, ProvenanceSite
from perftune.engine.context import Context
from perftune.engine.fixtures import compute
from perftune.engine.registry import analyze
from perftune.engine.testing import TraceBuilder
from perftune.rundir import RunDir
from perftune.trace import load

STEP = textwrap.dedent("""\
    def step(model, x, y, lengths, label_lengths, opt):
        log_probs, out_lengths = model(x, lengths)
        loss = F.ctc_loss(log_probs, y, out_lengths, label_lengths)
        loss.backward()
        opt.step()
        L = loss.detach().cpu().numpy()
        return L
""")


@pytest.fixture(autouse=True)
def _in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _findings(tmp: Path, sites: list[tuple[int, str, str | None]]) -> list[tuple[int | None, str]]:
    (tmp / "train.py").write_text(STEP)
    b = TraceBuilder(device=False)
    for _ in range(3):
        with b.step(), b.frame("train.py", 1, "step"):
            for _ in range(10):
                compute(b, "aten::mm", 200)
            with b.optimizer_step():
                compute(b, "aten::_foreach_add_", 50)
    path = b.write(tmp / "trace.json.gz")
    RunDir(tmp).write_document(ProvenanceDocument(device="cpu", steps=3, sites=[
        ProvenanceSite(file=str(tmp / "train.py"), line=line, function="step", call=call, via=via,
                       tagged=3, order=k) for k, (line, call, via) in enumerate(sites)]))
    found = analyze(Context.build(load(path), [tmp]), select=["PFT207"])
    return sorted((f.location.line, f.message) for f in found)


def test_cpu_then_numpy_is_one_copy(tmp_path: Path) -> None:
    found = _findings(tmp_path, [(6, "cpu", None), (6, "numpy", None)])
    assert [line for line, _ in found] == [6]
    assert "`.cpu().numpy()`" in found[0][1]


def test_ctc_loss_with_device_lengths_reads_them_back(tmp_path: Path) -> None:
    found = _findings(tmp_path, [(3, "ctc_loss", "torch.nn.functional.ctc_loss")])
    assert [line for line, _ in found] == [3]
    assert "length tensors" in found[0][1]


def test_a_library_s_own_copy_to_the_host_is_not_the_user_s(tmp_path: Path) -> None:
    assert _findings(tmp_path, [(2, "cpu", "torchaudio.functional.resample")]) == []


def test_pad_packed_sequence_reads_the_unsorted_indices_back(tmp_path: Path) -> None:
    """`pad_packed_sequence` of a batch packed with `enforce_sorted=False` copies its device
    `unsorted_indices` to the host itself (tests/field/seq2seq_packed.py): reported at the
    user's call, with the fix that removes the indices."""
    found = _findings(tmp_path, [(2, "cpu", "torch.nn.utils.rnn.pad_packed_sequence")])
    assert [line for line, _ in found] == [2]
    assert "unsorted_indices" in found[0][1] and "pad_packed_sequence" in found[0][1]


def test_a_tensor_built_from_tensors_is_a_read_back_per_element() -> None:
    """`torch.tensor([loss, acc])` reads each tensor of the list back (`aten::item` under the
    factory): a scalar read-back (PFT206), not Python data copied to the device (PFT210);
    `torch.tensor([0.1, 0.2], device=d)` stays PFT210."""
    from perftune.trace import sync_metrics as sm

    cause, label = sm.classify(("torch.tensor", "aten::item", "aten::_local_scalar_dense"), "tensor",
                               set(), True)
    assert cause is sm.SyncCause.SCALAR_READBACK and "torch.tensor([...])" in label
    cause, _ = sm.classify(("torch.tensor", "aten::lift_fresh", "aten::to"), "tensor", set(), True)
    assert cause is sm.SyncCause.TENSOR_FROM_PYTHON
