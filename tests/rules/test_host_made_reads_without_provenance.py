"""A CPU run without device provenance (torch.compile turns it off): a scalar read of a tensor
a torch factory made on the same line without `device=` (`int(torch.randint(0, 48, (),
generator=g))`, samples/compiled_recompile.py's padded length) is a host tensor in any run, not
a latent sync; a read of anything else on such a run still is."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from perftune.engine.context import Context
from perftune.engine.fixtures import compute, encode, item, pycall, steps
from perftune.engine.hazards import reads_host_made_tensor
from perftune.engine.registry import analyze
from perftune.engine.testing import TraceBuilder
from perftune.trace import load


def _pft206(tmp_path: Path, read_line: str) -> list:
    (tmp_path / "train.py").write_text(
        "def train_step(model, x, generator):\n"
        f"    {read_line}\n"
        "    return model(x[:, :length])\n", encoding="utf-8")

    def body(b: TraceBuilder) -> None:
        with b.frame("train.py", 1, "train_step"):
            with pycall(b, "__int__" if read_line.lstrip().startswith("length = 16 + int(") else "item"):
                item(b)
            compute(b, "aten::linear", 400)

    path = tmp_path / "trace.json.gz"
    path.write_bytes(encode(steps(TraceBuilder(device=False), body).to_dict()))
    return analyze(Context.build(load(path), [tmp_path]), select=["PFT206"])


def test_a_read_of_a_tensor_made_on_the_host_on_that_line_is_not_a_latent_sync(tmp_path: Path) -> None:
    assert _pft206(tmp_path, "length = 16 + int(torch.randint(0, 48, (), generator=generator))") == []


def test_a_read_of_the_loss_is_still_one(tmp_path: Path) -> None:
    (finding,) = _pft206(tmp_path, "length = int(model.loss.item())")
    assert finding.location.line == 2


@pytest.mark.parametrize(("line", "host"), [
    ("top, left = torch.randint(0, 16, (2,), generator=g).tolist()", True),
    ("n = int(torch.randint(0, 4, (), device=device))", False),  # made where the model is
    ("n = int(torch.randint(0, 4, ()).to(device))", False),
    ("a = int(x.sum()) + int(torch.randint(0, 3, ()))", False),  # reads x too
    ("x = loss.item()", False),
    ("if (", False),  # a line that does not parse alone: no opinion
])
def test_which_lines_read_only_host_made_tensors(line: str, host: bool) -> None:
    assert reads_host_made_tensor(line) is host
