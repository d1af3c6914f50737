"""The memory budget and the accuracy guard."""

from __future__ import annotations

import math

from perftune.capture.parent.knobs import baseline_values, needs_guard
from perftune.tune.constraints import guard, loss_deviation, over_budget


def test_over_budget() -> None:
    assert over_budget(100, None) is None
    assert over_budget(100, 100) is None
    reason = over_budget(3 * 2**30, 2**30)
    assert reason is not None and "3.00 GiB" in reason and "1.00 GiB" in reason


def test_loss_deviation_is_the_largest_relative_difference() -> None:
    deviation, step = loss_deviation([2.0, 2.2, 1.0], [2.0, 2.0, 1.0]) or (None, None)
    assert math.isclose(deviation or 0, 0.1) and step == 1
    assert loss_deviation([None, None], [1.0, 1.0]) is None
    assert loss_deviation([math.nan], [1.0]) == (math.inf, 0)


def test_guard_passes_rejects_and_says_by_how_much() -> None:
    passed = guard([1.0, 1.01], [1.0, 1.0], 0.05, 3)
    assert passed.status == "passed" and passed.passed
    rejected = guard([1.0, 1.3], [1.0, 1.0], 0.05, 3)
    assert rejected.status == "rejected" and not rejected.passed
    assert rejected.reason is not None and "30.00%" in rejected.reason and "trial 3" in rejected.reason
    unchecked = guard([1.0], None, 0.05, None)
    assert unchecked.status == "unchecked" and unchecked.passed


def test_the_baseline_is_fp32_without_checkpointing() -> None:
    values = {"precision": "bf16", "checkpoint": "all", "batch_size": 8}
    assert baseline_values(values) == {"precision": "fp32", "checkpoint": "none", "batch_size": 8}
    assert needs_guard(values)
    assert not needs_guard({"precision": "fp32", "tile": 4})
    assert not needs_guard({"tile": 4})
