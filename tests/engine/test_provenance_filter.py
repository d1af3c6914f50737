"""Latent hazards on a CPU run are reported only where the capture's device provenance says the
tensor would be on the accelerator (issue #13, section 3). The real capture is tested in
tests/capture/test_provenance.py; this reads a provenance.json written next to a trace."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from perftune.documents import ProvenanceDocument, ProvenanceSite
from perftune.engine.context import Context
from perftune.engine.fixtures import pycall
from perftune.engine.registry import run_rules, select_rules
from perftune.engine.testing import TraceBuilder
from perftune.rundir import RunDir
from perftune.trace import load

STEP = textwrap.dedent("""\
    def step(model, x, ix):
        n = ix[0].item()
        loss = model(x[:n]).sum()
        value = loss.item()
        return value
""")


@pytest.fixture(autouse=True)
def _in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _trace(tmp: Path) -> Path:
    (tmp / "train.py").write_text(STEP)
    b = TraceBuilder(device=False)
    for _ in range(2):
        with b.step(), b.frame("train.py", 1, "step"):
            for _ in range(2):
                with pycall(b, "item"), b.op("aten::item", input_dims=[[]], input_types=["float"]), \
                        b.op("aten::_local_scalar_dense"):
                    pass
    return b.write(tmp / "trace.json.gz")


def _pft206(path: Path) -> list:
    trace = load(path)
    return [f for f in run_rules(Context.build(trace, [path.parent]), select_rules(select=["PFT2"]),
                                 strict=True) if f.code == "PFT206"]


def test_without_provenance_both_items_are_latent_hazards(tmp_path: Path) -> None:
    assert {f.location.line for f in _pft206(_trace(tmp_path))} == {2, 4}


def test_provenance_keeps_only_the_item_of_device_data(tmp_path: Path) -> None:
    path = _trace(tmp_path)
    RunDir(tmp_path).write_document(ProvenanceDocument(device="cpu", steps=2, sites=[
        ProvenanceSite(file=str(tmp_path / "train.py"), line=2, function="step", call="item",
                       untagged=2),
        ProvenanceSite(file=str(tmp_path / "train.py"), line=4, function="step", call="item",
                       tagged=2),
    ]))
    (f,) = _pft206(path)
    assert f.location.line == 4 and f.latent and f.count == 2
    assert "loss.item()" in (f.location.source or "")


def test_provenance_with_no_device_data_leaves_no_latent_finding(tmp_path: Path) -> None:
    path = _trace(tmp_path)
    RunDir(tmp_path).write_document(ProvenanceDocument(device="cpu", steps=2, sites=[
        ProvenanceSite(file="train.py", line=2, function="step", call="item", untagged=2),
        ProvenanceSite(file="train.py", line=4, function="step", call="item", untagged=2),
    ]))
    assert _pft206(path) == []


LOG = textwrap.dedent("""\
    def log_step(loss):
        total = loss.item()
        if loss.isnan().any():
            raise FloatingPointError
        return total
""")


def test_an_item_and_a_bool_of_one_function_land_on_their_own_lines(tmp_path: Path) -> None:
    """`.item()` (a recorded python call) then `if t.any():` (bool(t): aten::is_nonzero, no
    python call): each occurrence takes the next recorded call of its own kind, in the order
    the mode saw them run; the bool is not laid over the `.item()` line."""
    (tmp_path / "train.py").write_text(LOG)
    b = TraceBuilder(device=False)
    for _ in range(2):
        with b.step(), b.frame("train.py", 1, "log_step"):
            with pycall(b, "item"), b.op("aten::item", input_dims=[[]], input_types=["float"]), \
                    b.op("aten::_local_scalar_dense"):
                pass
            with b.op("aten::is_nonzero", input_dims=[[]], input_types=["bool"]), \
                    b.op("aten::item"), b.op("aten::_local_scalar_dense"):
                pass
    path = b.write(tmp_path / "trace.json.gz")
    RunDir(tmp_path).write_document(ProvenanceDocument(device="cpu", steps=2, sites=[
        ProvenanceSite(file=str(tmp_path / "train.py"), line=2, function="log_step", call="item",
                       tagged=2, order=0),
        ProvenanceSite(file=str(tmp_path / "train.py"), line=3, function="log_step",
                       call="__bool__", tagged=2, order=1),
    ]))
    found = {(f.location.line, f.evidence["kind"]) for f in _pft206(path)}
    assert found == {(2, ".item()"), (3, "bool(tensor)")}


EVERY_TEN = textwrap.dedent("""\
    def train(model, opt, it):
        if it % 10 == 0:
            print(last.item())
        d_x = model(x).mean().item()
        opt.step()
""")


def test_a_call_that_runs_every_tenth_step_holds_no_place_in_the_other_steps(tmp_path: Path) -> None:
    """The mode saw a log line's `.item()` (every tenth iteration) before the per-step one:
    in steps without the log line, the one occurrence is the per-step call (the DCGAN
    loop's D(x)), not the first recorded site."""
    (tmp_path / "train.py").write_text(EVERY_TEN)
    b = TraceBuilder(device=False)
    with b.frame("train.py", 5, "train"):  # already running: its current line
        for _ in range(3):
            with b.step(), pycall(b, "item"), \
                    b.op("aten::item", input_dims=[[]], input_types=["float"]), \
                    b.op("aten::_local_scalar_dense"):
                pass
    path = b.write(tmp_path / "trace.json.gz")
    RunDir(tmp_path).write_document(ProvenanceDocument(device="cpu", steps=6, sites=[
        ProvenanceSite(file=str(tmp_path / "train.py"), line=3, function="train", call="item",
                       tagged=1, order=0),
        ProvenanceSite(file=str(tmp_path / "train.py"), line=4, function="train", call="item",
                       tagged=6, order=1),
    ]))
    assert {f.location.line for f in _pft206(path)} == {4}


PREDICT = textwrap.dedent("""\
    def predict(model, loader, out):
        for x in loader:
            out.append(model(x).argmax(1).cpu())
""")


@pytest.mark.parametrize("tagged", [True, False])
def test_a_per_batch_cpu_of_device_data_is_found_from_provenance(tmp_path: Path, tagged: bool) -> None:
    """`.cpu()` of a CPU tensor is a no-op: a CPU trace has no event for it. Provenance saw it
    run on device-bound tensors every step: PFT207 at that line; on host-only tensors, nothing."""
    from perftune.engine.fixtures import compute

    (tmp_path / "predict.py").write_text(PREDICT)
    b = TraceBuilder(device=False)
    with b.frame("predict.py", 2, "predict"):
        for _ in range(3):
            with b.step():
                compute(b, "aten::conv2d", 500)
    path = b.write(tmp_path / "trace.json.gz")
    RunDir(tmp_path).write_document(ProvenanceDocument(device="cpu", steps=3, sites=[
        ProvenanceSite(file=str(tmp_path / "predict.py"), line=3, function="predict", call="cpu",
                       tagged=3 if tagged else 0, untagged=0 if tagged else 3)]))
    ctx = Context.build(load(path), [tmp_path])
    found = [f for f in run_rules(ctx, select_rules(select=["PFT207"]), strict=True)]
    assert [(f.location.line, f.latent) for f in found] == ([(3, True)] if tagged else [])


def test_provenance_document_round_trips_and_has_a_schema(tmp_path: Path) -> None:
    from perftune.report.schema import json_schema

    doc = ProvenanceDocument(sites=[ProvenanceSite(file="a.py", line=3, function="f",
                                                   call="nonzero", tagged=1)])
    RunDir(tmp_path).write_document(doc)
    back = RunDir(tmp_path).read_provenance()
    assert back is not None and back.tagged_at("a.py", 3) is True and back.tagged_at("a.py", 4) is None
    assert "sites" in json_schema("provenance")["$defs"]["ProvenanceDocument"]["properties"]


WHERE = textwrap.dedent("""\
    def match(labels, reg):
        pos = torch.where(labels > 0)[0]
        return reg[pos].sum()
""")


def test_a_one_argument_where_on_device_data_is_kept(tmp_path: Path) -> None:
    """Device provenance records one-argument `torch.where(cond)` (a nonzero): before, it was
    missing from the record and the latent PFT202 was dropped as host-only."""
    (tmp_path / "train.py").write_text(WHERE)
    b = TraceBuilder(device=False)
    for _ in range(2):
        with b.step(), b.frame("train.py", 1, "match"), pycall(b, "where", of="type"), \
                b.op("aten::where", input_dims=[[64]], input_types=["bool"]), \
                b.op("aten::nonzero_numpy", input_dims=[[64]], input_types=["bool"]), \
                b.op("aten::nonzero", input_dims=[[64]], input_types=["bool"]):
            b.leaf("aten::as_strided_", input_dims=[[12, 1], [], [], []], dur=1)
    path = b.write(tmp_path / "trace.json.gz")
    RunDir(tmp_path).write_document(ProvenanceDocument(device="cpu", steps=2, sites=[
        ProvenanceSite(file=str(tmp_path / "train.py"), line=2, function="match", call="where", tagged=2)]))
    trace = load(path)
    found = [f for f in run_rules(Context.build(trace, [tmp_path]), select_rules(select=["PFT202"]), strict=True)]
    assert [(f.code, f.location.line) for f in found] == [("PFT202", 2)]


EPOCH = textwrap.dedent("""\
    def step(loss, approx_kl, target_kl):
        total = loss.item()
        if approx_kl > target_kl:
            return total
        return total + loss.item()
""")


def _epoch_trace(tmp: Path) -> Path:
    (tmp / "train.py").write_text(EPOCH)
    b = TraceBuilder(device=False)
    for _ in range(2):
        with b.step(), b.frame("train.py", 1, "step"):
            with pycall(b, "item"), b.op("aten::item", input_dims=[[]], input_types=["float"]), \
                    b.op("aten::_local_scalar_dense"):
                pass
            with b.op("aten::is_nonzero", input_dims=[[]]), b.op("aten::item"), \
                    b.op("aten::_local_scalar_dense"):
                pass
    return b.write(tmp / "trace.json.gz")


def test_a_read_in_fewer_than_half_of_the_recorded_steps_keeps_its_own_line(tmp_path: Path) -> None:
    """PPO's `if approx_kl > target_kl: break` after every epoch (1 step in 4 where provenance
    recorded, both steps of the window here): its `bool()` is reported at its own line, not
    laid over the every-step `.item()` before it (tests/field/ppo_gae_rollout.py)."""
    path = _epoch_trace(tmp_path)
    RunDir(tmp_path).write_document(ProvenanceDocument(device="cpu", steps=4, sites=[
        ProvenanceSite(file=str(tmp_path / "train.py"), line=2, function="step", call="item",
                       tagged=4, order=0),
        ProvenanceSite(file=str(tmp_path / "train.py"), line=3, function="step", call="__bool__",
                       tagged=1, order=1),
        # a read once per iteration that did not run in the window
        ProvenanceSite(file=str(tmp_path / "train.py"), line=5, function="step", call="item",
                       tagged=1, order=2),
    ]))
    assert {f.location.line for f in _pft206(path)} == {2, 3}


LIBRARY = "/opt/py/lib/python3.11/site-packages/torch/distributions/categorical.py"
DIST = textwrap.dedent("""\
    def act(logits, action):
        probs = Categorical(logits=logits)
        return probs.log_prob(action)
""")


def test_a_check_inside_a_library_call_takes_the_record_of_that_call(tmp_path: Path) -> None:
    """A distribution validates its logits in `__init__` and the action in `log_prob` (one
    `bool()` each); where the recorded steps ran each 7 times a step (a rollout) and the
    window's steps once, each check keeps its own line: the record of the library function
    it ran in (tests/field/ppo_gae_rollout.py)."""
    (tmp_path / "train.py").write_text(DIST)
    b = TraceBuilder(device=False)
    for _ in range(2):
        with b.step(), b.frame("train.py", 1, "act"):
            for function, line in (("__init__", 50), ("log_prob", 120)):
                with b.frame(LIBRARY, line, function), b.op("aten::is_nonzero", input_dims=[[]]), \
                        b.op("aten::item"), b.op("aten::_local_scalar_dense"):
                    pass
    path = b.write(tmp_path / "trace.json.gz")
    RunDir(tmp_path).write_document(ProvenanceDocument(device="cpu", steps=2, sites=[
        ProvenanceSite(file=str(tmp_path / "train.py"), line=2, function="act", call="__bool__",
                       via="torch.distributions.categorical.__init__", tagged=14, order=0),
        ProvenanceSite(file=str(tmp_path / "train.py"), line=3, function="act", call="__bool__",
                       via="torch.distributions.categorical.log_prob", tagged=14, order=1),
    ]))
    assert {f.location.line for f in _pft206(path)} == {2, 3}


GRAPH = textwrap.dedent("""\
    def epoch(model, x, y, train_mask):
        acc = (pred[train_mask] == y[train_mask]).float().mean()
        out = model(x)
        loss = F.cross_entropy(out[train_mask], y[train_mask])
        return loss, acc
""")


def test_a_masked_loss_after_masked_reads_keeps_the_loss_line(tmp_path: Path) -> None:
    """GCN training: boolean-mask selections for an accuracy, then for the loss, in one
    function. The recorded selections are laid over every selection of the step, not only
    the masked loss's (PFT212): the loss keeps its own line, the accuracy gets PFT202
    (tests/field/gcn_message_passing.py)."""
    from perftune.engine.fixtures import compute, nonzero

    (tmp_path / "train.py").write_text(GRAPH)
    b = TraceBuilder(device=False)
    for _ in range(2):
        with b.step(), b.frame("train.py", 1, "epoch"):
            for _ in range(2):
                with b.op("aten::index", input_dims=[[3000, 7], [3000]]):
                    nonzero(b, n=3000, selected=300)
            compute(b, "aten::eq", 5)
            for _ in range(12):  # the model's forward
                compute(b, "aten::addmm", 20)
            for dims in ([[3000, 7], [3000]], [[3000], [3000]]):
                with b.op("aten::index", input_dims=dims):
                    nonzero(b, n=3000, selected=300)
            with b.pycall("torch/nn/functional.py(3462): cross_entropy"), \
                    b.pycall("<built-in function cross_entropy_loss>"), \
                    b.op("aten::cross_entropy_loss", input_dims=[[300, 7], [300], [], [], [], []]):
                compute(b, "aten::log_softmax", 20)
                compute(b, "aten::nll_loss_nd", 10)
    path = b.write(tmp_path / "trace.json.gz")
    RunDir(tmp_path).write_document(ProvenanceDocument(device="cpu", steps=2, sites=[
        ProvenanceSite(file=str(tmp_path / "train.py"), line=2, function="epoch",
                       call="__getitem__[bool]", tagged=4, order=0),
        ProvenanceSite(file=str(tmp_path / "train.py"), line=4, function="epoch",
                       call="__getitem__[bool]", tagged=4, order=1),
    ]))
    found = [f for f in run_rules(Context.build(load(path), [tmp_path]),
                                  select_rules(select=["PFT2"]), strict=True)
             if f.code in ("PFT202", "PFT212")]
    assert sorted((f.code, f.location.line) for f in found) == [("PFT202", 2), ("PFT212", 4)]
