"""PFT101/PFT102 on a single-process DataLoader (num_workers=0): every step loads its own
batches in the training process, so a real input-bound loop waits in every step. On a contended
machine a preemption inflates whichever interval it lands in: tests/field/trainer_nan_callback.py
(64 cheap dict items per batch) waited 0.2-12 % of the steps' time over 7 windows at load
5.6-9.4, the 12 % from one step at 14 % (the others 3.5 % and 5.5 %). The share is the median
step's; worker processes deliver in bursts, so theirs stays the total's."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from perftune.engine.context import Context
from perftune.engine.fixtures import compute, encode
from perftune.engine.registry import analyze
from perftune.engine.testing import TraceBuilder
from perftune.trace import load

SOURCE = """from torch.utils.data import DataLoader


def train(model, dataset, optimizer):
    loader = DataLoader(dataset, batch_size=64, num_workers={workers})
    for images, labels in loader:
        model(images).cross_entropy(labels).backward()
        optimizer.step()
"""


def _codes(tmp_path: Path, waits_us: list[float], *, single: bool) -> set[str]:
    (tmp_path / "train.py").write_text(SOURCE.format(workers=0 if single else 2), encoding="utf-8")
    b = TraceBuilder()
    with b.frame("train.py", 6, "train"):
        for wait in waits_us:
            with b.step():
                with b.dataloader(single_process=single, dur=wait):
                    pass
                compute(b, "aten::conv2d", 2000, host=2000)
                with b.optimizer_step():
                    compute(b, "aten::_foreach_add_", 50)
    path = tmp_path / "trace.json.gz"
    path.write_bytes(encode(b.to_dict()))
    return {f.code for f in analyze(Context.build(load(path), [tmp_path]), select=["PFT101", "PFT102"])}


def test_one_preempted_step_is_no_input_bound_loop(tmp_path: Path) -> None:
    # 27 % of the steps' time in total, from one step; the median step waits 5 %
    assert _codes(tmp_path, [100, 100, 2000, 100], single=True) == set()


def test_a_wait_in_every_step_is_reported(tmp_path: Path) -> None:
    assert _codes(tmp_path, [300, 320, 310, 300], single=True) == {"PFT101", "PFT102"}


def test_worker_processes_keep_the_total_share(tmp_path: Path) -> None:
    # two workers that fall behind deliver every other batch late: the wait is real
    assert _codes(tmp_path, [0, 1500, 0, 1500], single=False) == {"PFT101"}
