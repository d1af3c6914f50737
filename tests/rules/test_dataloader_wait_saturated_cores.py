"""PFT101 with worker processes that already take every spare core (tests/field/pinned_loader.py:
2 workers on 2 cores, an 11 % wait): more workers cannot help, a short wait is the machine's
limit and no finding; a long one is reported with advice that fits (cheaper samples)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from perftune.engine.context import Context
from perftune.engine.fixtures import compute, cpu_host, encode
from perftune.engine.registry import analyze
from perftune.engine.testing import TraceBuilder
from perftune.trace import load

SOURCE = """from torch.utils.data import DataLoader


def train(model, dataset, optimizer):
    loader = DataLoader(dataset, batch_size=64, num_workers={workers}, persistent_workers=True)
    for images, labels in loader:
        model(images).cross_entropy(labels).backward()
        optimizer.step()
"""


def _findings(tmp_path: Path, *, workers: int, cores: int | None, wait_us: float) -> list:
    (tmp_path / "train.py").write_text(SOURCE.format(workers=workers), encoding="utf-8")
    header = cpu_host(threads=cores, cores=cores) if cores else None
    b = TraceBuilder(header=header)
    with b.frame("train.py", 6, "train"):
        for _ in range(4):
            with b.step():
                with b.dataloader(single_process=False, dur=wait_us):
                    pass
                compute(b, "aten::conv2d", 2000, host=2000)
                with b.optimizer_step():
                    compute(b, "aten::_foreach_add_", 50)
    path = tmp_path / "trace.json.gz"
    path.write_bytes(encode(b.to_dict()))
    return analyze(Context.build(load(path), [tmp_path]), select=["PFT101"])


def test_a_short_wait_with_every_spare_core_loading_is_not_a_finding(tmp_path: Path) -> None:
    assert _findings(tmp_path, workers=2, cores=2, wait_us=300) == []  # ~13 % of the step


def test_the_same_wait_with_spare_cores_asks_for_more_workers(tmp_path: Path) -> None:
    (finding,) = _findings(tmp_path, workers=2, cores=16, wait_us=300)
    assert "num_workers=4" in finding.suggestion.title
    # a foreign trace (no host facts): as before
    (finding,) = _findings(tmp_path, workers=2, cores=None, wait_us=300)
    assert "num_workers=4" in finding.suggestion.title


def test_a_long_wait_on_saturated_cores_asks_for_cheaper_samples_not_workers(tmp_path: Path) -> None:
    (finding,) = _findings(tmp_path, workers=2, cores=2, wait_us=3000)
    assert "more workers cannot help" in finding.suggestion.title
    assert "num_workers" not in (finding.suggestion.diff or "") and not finding.suggestion.knobs
    assert "already take every spare core of the 2" in finding.message
