"""Device provenance on a real CPU capture (issue #13, section 3): `perftune profile` runs the
script in a child process; over the last warm-up steps before the profiler window (the same code
as the profiled steps) a TorchFunctionMode tags tensors that would be on the accelerator and
records every sync-prone call site; provenance.json says which, and the latent-sync rules report
only those."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from capture_helpers import child_env

SCRIPT = textwrap.dedent("""\
    import torch
    from torch import nn

    device = "cpu"                        # the script's device: a GPU would be "cuda"
    WEIGHTS = torch.tensor([1.0, 2.0])    # a module-level constant, never moved
    data = torch.randn(256, 8)
    labels = torch.randint(0, 2, (256,))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    use_mask = True

    for step in range(12):
        ix = torch.randint(0, 256, (32,))
        first = int(ix[0])                                   # perftune: not[PFT206]
        x, y = data[ix].to(device), labels[ix].to(device)
        out = model(x)
        loss = nn.functional.cross_entropy(out, y)
        if use_mask:                                         # perftune: not[PFT206]
            confident = out[out.max(dim=1).values > 0.5]     # perftune: expect[PFT202]
        opt.zero_grad()
        loss.backward()
        opt.step()
        scale = WEIGHTS[1].item()                            # perftune: not[PFT206]
        value = loss.item()                                  # perftune: expect[PFT206]
""")


def _profile(tmp_path: Path, env: dict[str, str] | None = None) -> Path:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "perftune", "profile", "--out", str(run_dir), "--skip", "4",
         "--active", "2", str(script)],
        cwd=tmp_path, env=child_env(**(env or {})), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return run_dir


def _lines(run_dir: Path, code: str) -> set[int]:
    findings = json.loads((run_dir / "findings.json").read_text())["findings"]
    return {f["location"]["line"] for f in findings
            if f["code"] == code and f["location"]["file"] and f["location"]["file"].endswith("train.py")}


@pytest.mark.slow
def test_cpu_capture_reports_only_device_bound_syncs(tmp_path: Path) -> None:
    run_dir = _profile(tmp_path)
    doc = json.loads((run_dir / "provenance.json").read_text())
    # three warm-up steps, more while the step detector holds the window back
    assert doc["enabled"] and doc["device"] == "cpu" and doc["steps"] >= 3
    sites = {(s["line"], s["call"]): s for s in doc["sites"] if s["file"].endswith("train.py")}
    assert sites[(14, "__int__")]["tagged"] == 0 and sites[(14, "__int__")]["untagged"] >= 2
    assert sites[(23, "item")]["untagged"] >= 2 and sites[(23, "item")]["tagged"] == 0
    # (the first step it covers starts after its forward: that loss predates the mode)
    assert sites[(24, "item")]["tagged"] >= 2
    assert sites[(19, "__getitem__[bool]")]["tagged"] >= 2
    # the optimizer's own step counter (`_get_value(step)` in torch/optim) is host-only
    assert all(s["tagged"] == 0 for s in doc["sites"] if s["call"] == "item" and s["via"]
               and "optim" in s["via"])
    assert _lines(run_dir, "PFT206") == {24}
    assert 19 in _lines(run_dir, "PFT202")


@pytest.mark.slow
def test_provenance_can_be_turned_off(tmp_path: Path) -> None:
    run_dir = _profile(tmp_path, {"PERFTUNE_PROVENANCE": "0"})
    assert not (run_dir / "provenance.json").exists()


def test_a_factory_given_the_device_through_a_library_helper_is_device_data() -> None:
    """`nn.Transformer.generate_square_subsequent_mask(n, device=device)` builds the mask with
    `torch.full(..., device=device)` inside torch: the user chose the device, so the mask is
    device data (its causal-mask check inside nn.TransformerEncoder syncs on a GPU). A
    host-side library's own explicit-device tensors (the optimizer's) stay untagged."""
    import torch
    from torch import nn

    from perftune.capture.child.provenance import ProvenanceMode, TagSet

    mode = ProvenanceMode(TagSet())
    param = nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([param], lr=0.1, capturable=False, foreach=False)
    param.grad = torch.ones(3)
    with mode:
        mask = nn.Transformer.generate_square_subsequent_mask(4, device="cpu")
        plain = torch.zeros(4)
        opt.step()
    assert mode.tagged(mask)
    assert not mode.tagged(plain)
    assert not any(mode.tagged(v) for state in opt.state.values() for v in state.values()
                   if isinstance(v, torch.Tensor) and v.dim() == 0)


def test_every_move_is_recorded_with_what_it_copies() -> None:
    """A `.to(device)` of a DataLoader batch (from a loader that does / does not ask for pinned
    memory), of a tensor the step made on the host, and of a tensor already on the device
    (or a dtype-only cast): `to[pinned]`, `to[batch]`, `to[host]`, `to[none]`, in the order they
    ran — what PFT208/PFT209 read on a CPU run (tests/rules/test_host_made_copies.py)."""
    import inspect

    import torch
    from torch import nn

    from perftune.capture.child.provenance import Provenance

    device = "cpu"  # the run's device (a GPU run: "cuda")
    recorder = Provenance(cuda=False)
    recorder.start()
    assert recorder.mode is not None
    pinned, plain = torch.ones(4, 3), torch.ones(4, 3)
    param = nn.Parameter(torch.ones(3))
    try:
        recorder.on_batch({"x": pinned}, pinned=True)
        recorder.on_batch([plain], pinned=False)
        first = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
        pinned.to(device)
        plain.to(device)
        torch.cat([torch.ones(2), torch.ones(2)]).to(device)
        (param * 2).to(device)
        torch.zeros(2).to(torch.float64)
    finally:
        recorder.stop()
    doc = recorder.document()
    assert doc is not None
    here = {(s.line - first, s.call, s.tagged, s.untagged) for s in doc.sites if s.file == __file__}
    assert here == {(0, "to[pinned]", 0, 1), (1, "to[batch]", 0, 1), (2, "to[host]", 0, 1),
                    (3, "to[none]", 1, 0), (4, "to[none]", 1, 0)}


def test_one_argument_where_is_recorded_as_a_read_back() -> None:
    """`torch.where(cond)` is `nonzero(cond, as_tuple=True)`: the host reads the count back
    (tests/field/detection_reference.py's positive anchors); the three-argument form is not."""
    import inspect

    import torch
    from torch import nn

    from perftune.capture.child.provenance import ProvenanceMode, TagSet

    mode = ProvenanceMode(TagSet())
    labels = nn.Parameter(torch.tensor([0.0, 2.0, 1.0]))
    with mode:
        first = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
        torch.where(labels > 0)
        torch.where(labels > 0, labels, torch.zeros(3))
    here = {(key[1] - first, key[3], counts[0]) for key, counts in mode.sites.items() if key[0] == __file__}
    assert here == {(0, "where", 1)}


def test_tensors_nested_in_a_detection_batch_are_the_loader_s() -> None:
    """A detection batch (a tuple of images and a tuple of target dicts) from a pinned loader:
    the target tensors are the loader's pinned memory too, not host tensors of the step."""
    import torch

    from perftune.capture.child.provenance import Provenance

    device = "cpu"  # the run's device (a GPU run: "cuda")
    recorder = Provenance(cuda=False)
    recorder.start()
    boxes = torch.ones(2, 4)
    try:
        recorder.on_batch(((torch.ones(3, 8, 8),), ({"boxes": boxes, "image_id": 3},)), pinned=True)
        boxes.to(device)
    finally:
        recorder.stop()
    doc = recorder.document()
    assert doc is not None
    assert [s.call for s in doc.sites if s.file == __file__] == ["to[pinned]"]


def test_a_host_tensor_copied_every_step_is_a_copy_every_step() -> None:
    """On a CPU run `.to(device)` returns its input itself. A tensor built once on the host
    before the loop (class weights, a label matrix) and moved every step is a pageable copy
    every step on a GPU; a tensor moved once before the loop (`w = w.to(device)`) and moved
    again in the step copies nothing. Both before the mode starts (the `.to` wrapper) and in it."""
    import inspect

    import torch

    from perftune.capture.child.provenance import Provenance

    device = "cpu"  # the run's device (a GPU run: "cuda")
    recorder = Provenance(cuda=False)
    recorder.install()
    try:
        host = torch.arange(6.0)
        moved = torch.ones(3).to(device)       # moved before the window: device data
        assert moved.to(device) is moved      # a move of device data is the tensor itself
        before = host.to(device)
        assert not host.requires_grad and before is not host
        recorder.start()
        try:
            first = inspect.currentframe().f_lineno + 2  # type: ignore[union-attr]
            for _ in range(3):
                (host.to(device) * 2).sum()
                moved.to(device).sum()
        finally:
            recorder.stop()
    finally:
        recorder.uninstall()
    doc = recorder.document()
    assert doc is not None
    here = {(s.line - first, s.call, s.tagged, s.untagged) for s in doc.sites if s.file == __file__}
    assert here == {(0, "to[host]", 0, 3), (1, "to[none]", 3, 0)}
    assert torch.equal(before, host)  # the copy is the host tensor's data


def test_a_move_to_the_host_in_so_many_words_is_a_read_back() -> None:
    """`lengths.to("cpu")` of device data (the packed-sequence tutorials' `src_len.to("cpu")`)
    is a device→host copy, recorded as `.cpu()` (and as a move that copies nothing to the
    device); what it returns, like `.cpu()`'s result, is host data — so the PackedSequence
    built from it is not a device tensor the GRU reads back. `.to(device)` with
    device="cpu" in this run stays a move to the device."""
    import inspect

    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from perftune.capture.child.provenance import ProvenanceMode, TagSet

    mode = ProvenanceMode(TagSet())
    device = "cpu"
    embedded = nn.Parameter(torch.randn(5, 3, 4))
    rnn = nn.GRU(4, 4)
    with mode:
        lengths = torch.tensor([5, 3, 2]).to(device)
        first = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
        host_lengths = lengths.to("cpu")
        packed = pack_padded_sequence(embedded * 1, host_lengths, enforce_sorted=False)
        out, _ = rnn(packed)
        _, out_lengths = pad_packed_sequence(out)
        norm = (embedded * 2).sum().cpu()
    assert mode.tagged(lengths) and not mode.tagged(host_lengths)
    assert mode.tagged(packed.data) and not mode.tagged(packed.batch_sizes)
    assert not mode.tagged(out_lengths) and not mode.tagged(norm)
    here = {(key[1] - first, key[3], counts[0]) for key, counts in mode.sites.items()
            if key[0] == __file__ and key[4] is None}
    assert (0, "cpu", 1) in here and (0, "to[none]", 1) in here
    assert not any(call == "__int__" for _, call, _ in here)
    assert (-2, "to[host]", 0) in here  # the move to the run's device: a host→device copy


def test_ctc_loss_reads_its_length_tensors() -> None:
    """`F.ctc_loss` with tensor lengths copies them to the host before it starts (its
    tensor-lengths overload): recorded on device lengths, not on host ones."""
    import inspect

    import torch
    from torch import nn
    from torch.nn import functional as F

    from perftune.capture.child.provenance import ProvenanceMode, TagSet

    mode = ProvenanceMode(TagSet())
    device = "cpu"
    logits = nn.Parameter(torch.randn(12, 2, 5))
    targets = torch.randint(1, 5, (2, 4))
    lengths, target_lengths = torch.tensor([12, 10]), torch.tensor([4, 3])
    with mode:
        device_lengths = lengths.to(device)
        log_probs = logits.log_softmax(-1)
        first = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
        F.ctc_loss(log_probs, targets, device_lengths, target_lengths)
        F.ctc_loss(log_probs, targets, lengths, target_lengths)
    here = {(key[1] - first, key[3], tuple(counts[:2])) for key, counts in mode.sites.items()
            if key[0] == __file__ and key[3] == "ctc_loss"}
    assert here == {(0, "ctc_loss", (1, 0)), (1, "ctc_loss", (0, 1))}


HOST_BY_NAME = textwrap.dedent("""\
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    host_device = torch.device("cpu")


    def step(embedded, lengths, rnn, loss, acc):
        device_lengths = lengths.to(device)
        packed = pack_padded_sequence(embedded, device_lengths.to(host_device), enforce_sorted=False)
        out, _ = rnn(packed)
        padded, _ = pad_packed_sequence(out)
        stats = torch.tensor([loss, acc])
        return padded, stats
""")


def test_a_move_to_a_name_bound_to_the_host_a_packed_batch_and_a_tensor_of_tensors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`.to(host_device)` where the file binds `host_device` to the host only (and names an
    accelerator elsewhere) is a device→host copy like `.to("cpu")`; `pad_packed_sequence` of a
    batch packed with `enforce_sorted=False` reads its device `unsorted_indices` back with
    `.cpu()` (recorded with the function as `via`); `torch.tensor([loss, acc])` reads each
    device tensor of the list back (one `item` per element)."""
    import torch
    from torch import nn

    from perftune.capture.child.provenance import ProvenanceMode, TagSet

    (tmp_path / "host_by_name.py").write_text(HOST_BY_NAME)
    monkeypatch.syspath_prepend(str(tmp_path))
    import host_by_name  # type: ignore[import-not-found]

    mode = ProvenanceMode(TagSet())
    embedded = nn.Parameter(torch.randn(5, 3, 4))
    with mode:
        host_by_name.step(embedded * 1, torch.tensor([5, 3, 2]), nn.GRU(4, 4),
                          embedded.detach().sum(), embedded.detach().mean())
    here = {(key[1], key[3], key[4], tuple(counts[:2])) for key, counts in mode.sites.items()
            if key[0].endswith("host_by_name.py")}
    assert (10, "cpu", None, (1, 0)) in here  # `.to(host_device)` of the device lengths
    assert not any(call == "__int__" and counts[0] for _, call, _, counts in here)  # batch_sizes: host data
    assert (12, "cpu", "torch.nn.utils.rnn.pad_packed_sequence", (1, 0)) in here
    assert (13, "item", None, (2, 0)) in here


def test_a_name_bound_to_the_host_in_a_file_that_names_no_accelerator_is_the_run_s_device(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A script whose only device is `device = "cpu"` does not tell host from device: its
    `.to(device)` stays a move to the run's device."""
    import torch

    from perftune.capture.child.provenance import ProvenanceMode, TagSet

    (tmp_path / "cpu_only.py").write_text(
        'device = "cpu"\n\n\ndef move(x):\n    return x.to(device)\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    import cpu_only  # type: ignore[import-not-found]

    mode = ProvenanceMode(TagSet())
    with mode:
        moved = cpu_only.move(torch.ones(3))
    assert mode.tagged(moved)
    calls = {key[3] for key in mode.sites if key[0].endswith("cpu_only.py")}
    assert calls == {"to[host]"}
