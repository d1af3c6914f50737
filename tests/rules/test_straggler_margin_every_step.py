"""PFT602 on few steps: a rank slowest in all 3 profiled steps by 0.3, 4 and 8 ms (two gloo
ranks sharing two loaded cores, tests/field/ddp_gloo.py) is chance, not a straggler; slower by
the margin in every step, it is one."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from perftune.engine.fixtures import straggler_rank
from perftune.engine.registry import analyze
from perftune.trace import load


def _pft602(tmp_path: Path, slow: list[float]) -> list:
    fast = [2000.0] * 3
    # the fast rank waits in its two all-reduces for the slow rank's extra compute
    straggler_rank(0, fast, [1000.0 + (s - f) / 2 for s, f in zip(slow, fast, strict=True)]).write(
        tmp_path / "run" / "rank0.json.gz")
    straggler_rank(1, slow, [1000.0] * 3).write(tmp_path / "run" / "rank1.json.gz")
    return analyze(load(tmp_path / "run"), select=["PFT602"])


def test_a_margin_within_the_noise_in_one_of_few_steps_is_chance(tmp_path: Path) -> None:
    assert _pft602(tmp_path, [2300.0, 6000.0, 10000.0]) == []


def test_slower_by_the_margin_in_every_step_is_a_straggler(tmp_path: Path) -> None:
    (finding,) = _pft602(tmp_path, [6000.0, 6000.0, 6000.0])
    assert finding.rank == 1 and "slowest in 3 of 3 steps" in finding.message
