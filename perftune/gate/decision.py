"""The gate's decision on one set of samples: pass, regression, or not yet decided.

A flat "more than 5 % slower than the stored number" gate flaps on shared runners because one
noisy launch moves the number. This one fails only when the data exclude "no slowdown" *and*
the estimate exceeds the allowance, and passes only when the data exclude a slowdown as big as
the allowance; anything between asks for more launches.

The two errors are not worth the same: a false alarm fails someone's build on identical code,
a regression not yet shown costs a few more launches or an inconclusive verdict. So "no
slowdown" is excluded by a one-sided bound at the false-alarm rate (1 % over the whole gate by
default, split over its looks), stricter than the two-sided interval shown, which puts 2.5 % on
each side at 95 %. With launches noisier than the allowance (8 % per launch on a busy 2-core
runner) that 2.5 % was the false-alarm rate the gate approached: 2.2-2.5 % of replayed A/A gates
(benchmarks/gate_power.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from perftune.analysis.stats import (
    RatioEstimate,
    one_sided_low,
    paired_ratio_interval,
    per_look_confidence,
    percent,
    ratio_interval,
)
from perftune.errors import UsageError

Outcome = Literal["pass", "regression", "undecided"]
# What a launch's sample is: its median wall time per step, or its median CPU time per step
# (user + sys of the process), the figure a busy runner barely moves (perftune.gate.load).
Figure = Literal["wall", "cpu"]
FIGURE_WORDS = {"wall": "wall time", "cpu": "CPU time"}

DEFAULT_MAX_REGRESSION = 0.05
DEFAULT_CONFIDENCE = 0.95
# The share of gates on identical code allowed to fail, over all looks of a gate (or
# (1 - confidence) / 2 when that is smaller).
DEFAULT_FALSE_ALARM = 0.01


@dataclass(frozen=True)
class DecisionRule:
    """What counts as a regression.

    `noise_floor` is the smallest slowdown that calibration showed this runner can measure
    with the launches the gate may use; the allowance is never tighter than that, because a
    tighter one could only be met by chance.
    """

    max_regression: float = DEFAULT_MAX_REGRESSION
    confidence: float = DEFAULT_CONFIDENCE
    noise_floor: float = 0.0
    false_alarm: float = DEFAULT_FALSE_ALARM

    def __post_init__(self) -> None:
        if not 0.0 < self.max_regression < 10.0:
            raise UsageError(f"--max-regression must be a positive fraction (0.05 = 5 %), got {self.max_regression}")
        if not 0.5 <= self.confidence < 1.0:
            raise UsageError(f"--confidence must be in [0.5, 1), got {self.confidence}")
        if self.noise_floor < 0.0:
            raise UsageError(f"noise floor must not be negative, got {self.noise_floor}")
        if not 0.0 < self.false_alarm < 0.5:
            raise UsageError(f"false-alarm rate must be in (0, 0.5), got {self.false_alarm}")

    @property
    def fail_alpha(self) -> float:
        """The one-sided error rate of a regression verdict on identical code: the false-alarm
        rate, never looser than the interval's own lower side."""
        return min(self.false_alarm, (1.0 - self.confidence) / 2.0)

    @property
    def threshold(self) -> float:
        """The allowance actually applied (0.05 = 5 % slower is still fine)."""
        return max(self.max_regression, self.noise_floor)

    @property
    def raised_by_calibration(self) -> bool:
        return self.noise_floor > self.max_regression

    def per_look(self, looks: int) -> DecisionRule:
        """The rule for each of `looks` looks at growing data (Bonferroni).

        Deciding again after every round of launches gives chance more than one try; splitting
        the error rate over the planned looks keeps the whole gate's false-alarm rate at
        1 - confidence. One look leaves the rule as it is.
        """
        return DecisionRule(max_regression=self.max_regression,
                            confidence=per_look_confidence(self.confidence, looks),
                            noise_floor=self.noise_floor, false_alarm=self.false_alarm / looks)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    estimate: RatioEstimate
    threshold: float
    figure: Figure = "wall"
    # The one-sided lower bound at the false-alarm rate (what a regression must lift above 1),
    # and that rate; None where not computed.
    fail_low: float | None = None
    fail_alpha: float | None = None
    # Why a decision the interval would have made does not stand (perftune.gate.runner's
    # checks of an unpaired comparison): the outcome is then "undecided".
    withheld: str = ""

    @property
    def improvement(self) -> bool:
        """Head is faster beyond doubt (the whole interval lies below 1)."""
        return self.estimate.high < 1.0

    @property
    def decided(self) -> bool:
        return self.outcome != "undecided"

    @property
    def reason(self) -> str:
        est, limit = self.estimate, 1.0 + self.threshold
        interval = f"[{est.low:.3f}, {est.high:.3f}]"
        if self.withheld:
            return self.withheld
        bound = ("" if self.fail_low is None or self.fail_alpha is None else
                 f"its one-sided {percent(1.0 - self.fail_alpha)} lower bound {self.fail_low:.3f}")
        if self.outcome == "regression":
            return (f"ratio {est.ratio:.3f} exceeds the allowed {limit:.3f} and "
                    + (f"{bound} lies above 1" if bound else
                       f"its {percent(est.confidence)} interval {interval} lies above 1"))
        if self.fail_low is not None and est.low > 1.0 and self.fail_low <= 1.0 and est.ratio > limit:
            return (f"slower than the allowed {limit:.3f} (ratio {est.ratio:.3f}, interval "
                    f"{interval}) but {bound} does not exclude 1 at the false-alarm rate")
        if self.outcome == "pass":
            return f"the {percent(est.confidence)} interval {interval} lies below the allowed {limit:.3f}"
        if est.low > 1.0:
            return (f"slower beyond noise (interval {interval}) but the ratio {est.ratio:.3f} "
                    f"does not exceed the allowed {limit:.3f}, and the interval does not exclude it")
        return f"the {percent(est.confidence)} interval {interval} straddles the allowed {limit:.3f}"


def decide(base: Sequence[float], head: Sequence[float], rule: DecisionRule,
           paired: bool = False, figure: Figure = "wall") -> Decision:
    """Decide on per-launch step times (ms) of the base and the head.

    `paired`: base[i] and head[i] ran side by side (an interleaved gate); otherwise the two
    sides are independent samples (a stored baseline).
    """
    interval = paired_ratio_interval if paired else ratio_interval
    est = interval(base, head, rule.confidence)
    limit = 1.0 + rule.threshold
    fail_low = one_sided_low(est, rule.fail_alpha)
    outcome: Outcome
    if fail_low > 1.0 and est.ratio > limit:
        outcome = "regression"
    elif est.high < limit:
        outcome = "pass"
    else:
        outcome = "undecided"
    return Decision(outcome=outcome, estimate=est, threshold=rule.threshold, figure=figure,
                    fail_low=fail_low, fail_alpha=rule.fail_alpha)
