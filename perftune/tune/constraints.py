"""Constraints a configuration must meet to win: the memory budget and the accuracy guard."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from perftune import units

DEFAULT_TOLERANCE = 0.05


def over_budget(peak_bytes: int | None, budget_bytes: int | None) -> str | None:
    """The reason a trial breaks the memory budget, or None."""
    if budget_bytes is None or peak_bytes is None or peak_bytes <= budget_bytes:
        return None
    return (
        f"peak memory {units.size(peak_bytes)} is over the budget of "
        f"{units.size(budget_bytes)}"
    )


@dataclass(frozen=True)
class GuardResult:
    """The accuracy guard's verdict on one trial against its fp32 baseline."""

    status: str  # passed | rejected | unchecked
    deviation: float | None  # largest relative loss difference over the measured steps
    step: int | None  # the measured step (0-based) where it was largest
    tolerance: float
    baseline_trial: int | None
    reason: str | None = None

    @property
    def passed(self) -> bool:
        return self.status != "rejected"


def loss_deviation(
    losses: Sequence[float | None], baseline: Sequence[float | None]
) -> tuple[float, int] | None:
    """The largest relative difference |l - b| / |b| over the steps both recorded, and where.

    None when they share no step with a loss. A non-finite loss where the baseline is finite is
    an infinite deviation.
    """
    worst: tuple[float, int] | None = None
    for index, (loss, base) in enumerate(zip(losses, baseline, strict=False)):
        if loss is None or base is None:
            continue
        if not math.isfinite(loss):
            deviation = math.inf if math.isfinite(base) else 0.0
        else:
            deviation = abs(loss - base) / max(abs(base), 1e-12)
        if worst is None or deviation > worst[0]:
            worst = (deviation, index)
    return worst


def guard(
    losses: Sequence[float | None],
    baseline: Sequence[float | None] | None,
    tolerance: float,
    baseline_trial: int | None,
) -> GuardResult:
    if baseline is None:
        return GuardResult("unchecked", None, None, tolerance, None, "no fp32 baseline run")
    found = loss_deviation(losses, baseline)
    if found is None:
        return GuardResult(
            "unchecked", None, None, tolerance, baseline_trial, "no losses recorded to compare"
        )
    deviation, step = found
    if deviation > tolerance:
        return GuardResult(
            "rejected",
            deviation,
            step,
            tolerance,
            baseline_trial,
            f"loss deviates {units.percent(deviation, digits=2)} from the fp32 baseline (trial "
            f"{baseline_trial}) at measured step {step}; tolerance {units.percent(tolerance, digits=2)}",
        )
    return GuardResult("passed", deviation, step, tolerance, baseline_trial)
