"""Frameworks recognised from the stack (issue #13, section 7): Hugging Face Trainer and
Lightning. Their frames are library code; a finding gives the framework's own lever at the
user's configuration line, and what the framework already does on a GPU is not a finding.

The traces are built by hand with frames laid out as transformers' and lightning's are (neither
package is a dependency of perftune)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from perftune.engine.context import Context
from perftune.engine.fixtures import STEPS, compute, copy_to_device, pycall, readback
from perftune.engine.registry import run_rules, select_rules
from perftune.engine.testing import TraceBuilder
from perftune.trace import load

SITE = "/home/u/.venv/lib/python3.11/site-packages"

HF = textwrap.dedent("""\
    from transformers import Trainer, TrainingArguments


    def main(model, dataset):
        args = TrainingArguments(output_dir="out", per_device_train_batch_size=8,
                                 logging_steps=10)
        trainer = Trainer(model=model, args=args, train_dataset=dataset)
        trainer.train()


    if __name__ == "__main__":
        main(None, None)
""")


@pytest.fixture(autouse=True)
def _in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _findings(path: Path, select: list[str]) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in run_rules(Context.build(load(path), [path.parent]), select_rules(select=select),
                       strict=True):
        out.setdefault(f.code, []).append(f)
    return out


def _hf_trace(tmp: Path, gpu: bool) -> Path:
    (tmp / "train_hf.py").write_text(HF)
    b = TraceBuilder(device=gpu)
    with b.frame("train_hf.py", 8, "main"), b.pycall(f"{SITE}/transformers/trainer.py(2240): train"), \
            b.pycall(f"{SITE}/transformers/trainer.py(2540): _inner_training_loop"):
        for _ in range(STEPS + 1):
            with b.step():
                with b.pycall(f"{SITE}/accelerate/data_loader.py(560): __iter__"), \
                        b.dataloader(single_process=True, dur=3000):
                    pass
                with b.pycall(f"{SITE}/transformers/trainer.py(3700): _prepare_input"), \
                        pycall(b, "to"):
                    copy_to_device(b, 4 * 8 * 512, "Pinned" if gpu else "Pageable",
                                   non_blocking=False, dims=[8, 512])
                compute(b, "aten::mm", 2000, host=2000)
                # `torch.isnan(tr_loss_step) or torch.isinf(tr_loss_step)`: logging_nan_inf_filter
                with b.op("aten::isnan", dur=3):
                    pass
                with pycall(b, "__bool__"), \
                        b.op("aten::is_nonzero", input_dims=[[]], input_types=["bool"]), \
                        b.op("aten::item"), b.op("aten::_local_scalar_dense"):
                    readback(b)
                with b.optimizer_step("AdamW"):
                    compute(b, "aten::_fused_adamw_", 50)
    return b.write(tmp / "trace.json.gz")


def test_hf_trainer_nan_filter_sync_gets_the_trainingarguments_lever(tmp_path: Path) -> None:
    found = _findings(_hf_trace(tmp_path, gpu=True), ["PFT1", "PFT2"])
    (f,) = found["PFT206"]
    # Before: the finding pointed at transformers/trainer.py (advice to edit library code).
    assert (f.location.file, f.location.line) == ("train_hf.py", 5)
    assert "TrainingArguments(" in (f.location.source or "")
    assert "logging_nan_inf_filter=False" in f.evidence["library_fix"]
    assert f.evidence["framework"] == "Hugging Face Trainer"
    assert f.evidence["called_from"] == "train_hf.py:8"
    assert "logging_nan_inf_filter" in (f.suggestion.after or "")


def test_hf_trainer_workers_lever_and_no_pin_memory_finding(tmp_path: Path) -> None:
    found = _findings(_hf_trace(tmp_path, gpu=True), ["PFT1", "PFT2"])
    (workers,) = found["PFT102"]
    assert workers.location.line == 5
    assert "dataloader_num_workers=4" in (workers.suggestion.after or "")
    # the Trainer pins batch memory by default: no PFT103 / PFT208 about its loader
    assert "PFT103" not in found and "PFT208" not in found
    # its blocking copy of the batch: the Trainer's own lever, at the same line
    (copy,) = found["PFT209"]
    assert copy.location.line == 5 and "non_blocking" in copy.evidence["library_fix"]


def test_hf_trainer_batch_moves_are_not_latent_hazards_on_cpu(tmp_path: Path) -> None:
    found = _findings(_hf_trace(tmp_path, gpu=False), ["PFT2"])
    assert "PFT208" not in found and "PFT209" not in found


LIGHTNING = textwrap.dedent("""\
    import lightning as L
    import torch
    from torch.utils.data import DataLoader


    class Model(L.LightningModule):
        def training_step(self, batch, batch_idx):
            loss = self.net(batch).mean()
            self.log("train_loss", loss, on_step=True, sync_dist=True)
            return loss


    class Data(L.LightningDataModule):
        def val_dataloader(self):
            return DataLoader(self.val, batch_size=64, num_workers=2)

        def train_dataloader(self):
            return DataLoader(self.train, batch_size=32)


    trainer = L.Trainer(max_epochs=1)
    trainer.fit(Model(), Data())
""")


def test_lightning_log_sync_and_train_dataloader(tmp_path: Path) -> None:
    (tmp_path / "lit.py").write_text(LIGHTNING)
    b = TraceBuilder(device=True)
    loop = f"{SITE}/lightning/pytorch/loops/training_epoch_loop.py(250): advance"
    with b.frame("lit.py", 22, "<module>"), b.pycall(f"{SITE}/lightning/pytorch/trainer/trainer.py(540): fit"), \
            b.pycall(loop):
        for _ in range(STEPS + 1):
            with b.step():
                with b.pycall(f"{SITE}/lightning/pytorch/loops/fetchers.py(130): __next__"), \
                        b.dataloader(single_process=True, dur=3000):
                    pass
                with b.frame("lit.py", 7, "training_step"):
                    compute(b, "aten::mm", 2000, host=2000)
                    with b.pycall(f"{SITE}/lightning/pytorch/core/module.py(480): log"), \
                            pycall(b, "item"), b.op("aten::item", input_dims=[[]], input_types=["float"]), \
                            b.op("aten::_local_scalar_dense"):
                        readback(b)
                with b.optimizer_step("Adam"):
                    compute(b, "aten::_fused_adam_", 50)
    path = b.write(tmp_path / "trace.json.gz")
    found = _findings(path, ["PFT1", "PFT2"])
    (f,) = found["PFT206"]
    assert (f.location.file, f.location.line) == ("lit.py", 9)   # the user's self.log line
    assert "on_epoch=True" in f.evidence["library_fix"] and f.evidence["framework"] == "Lightning"
    (workers,) = found["PFT102"]
    # the loader Lightning trains on is the one train_dataloader() returns, not the first
    assert workers.location.line == 18 and "self.train" in (workers.location.source or "")
