"""The decision rule on seeded synthetic samples with known true ratios, and the verdict's codes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from perftune.errors import UsageError
from perftune.gate.decision import Decision, DecisionRule, decide
from perftune.gate.runner import LaunchPlan
from perftune.gate.verdict import Verdict

SEEDS = range(40)


def samples(seed: int, ratio: float, noise: float, n: int, base_ms: float = 25.0) -> tuple[list[float], list[float]]:
    """n base and n head launch medians, lognormal with the given true head/base ratio."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(math.log(base_ms), noise, n)
    head = rng.lognormal(math.log(base_ms * ratio), noise, n)
    return base.tolist(), head.tolist()


def outcomes(ratio: float, noise: float, n: int, rule: DecisionRule) -> set[str]:
    return {decide(*samples(seed, ratio, noise, n), rule).outcome for seed in SEEDS}


def test_a_big_slowdown_fails() -> None:
    assert outcomes(1.25, 0.02, 6, DecisionRule()) == {"regression"}


def test_no_change_passes_when_the_noise_allows() -> None:
    assert outcomes(1.0, 0.01, 6, DecisionRule()) == {"pass"}


def test_an_improvement_passes_and_is_reported() -> None:
    for seed in SEEDS:
        decision = decide(*samples(seed, 0.8, 0.02, 6), DecisionRule())
        assert decision.outcome == "pass"
        assert decision.improvement
        assert decision.estimate.high < 1.0


def test_no_change_is_not_reported_as_improvement() -> None:
    improvements = [decide(*samples(s, 1.0, 0.01, 6), DecisionRule()).improvement for s in SEEDS]
    assert sum(improvements) <= 3  # 2.5 % one-sided, over 40 seeds


def test_a_slowdown_at_the_allowance_with_noise_stays_undecided() -> None:
    # True ratio exactly at the allowance, noisy launches: neither side can be excluded.
    found = outcomes(1.05, 0.05, 6, DecisionRule())
    assert "undecided" in found
    assert found <= {"undecided", "regression", "pass"}
    undecided = sum(decide(*samples(s, 1.05, 0.05, 6), DecisionRule()).outcome == "undecided"
                    for s in SEEDS)
    assert undecided >= len(SEEDS) * 0.7


def test_a_measurable_slowdown_below_the_allowance_passes() -> None:
    # 3 % slower, measured precisely: beyond noise but allowed by the 5 % threshold.
    for seed in SEEDS:
        decision = decide(*samples(seed, 1.03, 0.003, 12), DecisionRule())
        assert decision.estimate.low > 1.0
        assert decision.outcome == "pass"


def test_the_threshold_is_respected() -> None:
    strict = DecisionRule(max_regression=0.01)
    loose = DecisionRule(max_regression=0.10)
    assert outcomes(1.03, 0.003, 12, strict) == {"regression"}
    assert outcomes(1.08, 0.003, 12, loose) == {"pass"}
    assert outcomes(1.08, 0.003, 12, DecisionRule()) == {"regression"}


def test_the_calibration_floor_raises_the_threshold() -> None:
    floored = DecisionRule(max_regression=0.05, noise_floor=0.12)
    assert floored.threshold == 0.12
    assert floored.raised_by_calibration
    assert outcomes(1.08, 0.003, 12, floored) == {"pass"}
    assert outcomes(1.20, 0.003, 12, floored) == {"regression"}
    # A floor below the requested allowance changes nothing.
    below = DecisionRule(max_regression=0.05, noise_floor=0.02)
    assert below.threshold == 0.05 and not below.raised_by_calibration


def test_regression_needs_the_interval_above_one() -> None:
    # Huge noise: the estimate may exceed the allowance, but the interval includes 1.
    for seed in SEEDS:
        decision = decide(*samples(seed, 1.06, 0.2, 3), DecisionRule())
        if decision.outcome == "regression":
            assert decision.estimate.low > 1.0


@pytest.mark.parametrize("kwargs", [{"max_regression": 0.0}, {"max_regression": -0.1},
                                    {"confidence": 1.0}, {"confidence": 0.2},
                                    {"noise_floor": -0.01}])
def test_bad_rules_are_usage_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        DecisionRule(**kwargs)


def sequential(seed: int, ratio: float, noise: float, rule: DecisionRule, plan: LaunchPlan) -> list[Decision]:
    """The gate's looks (launches added per round) on one stream of synthetic launches."""
    base, head = samples(seed, ratio, noise, plan.max_launches)
    looks, n = [], 0
    for size in plan.rounds():
        n += size
        looks.append(decide(base[:n], head[:n], rule))
        if looks[-1].decided:
            break
    return looks


def test_adding_launches_resolves_a_clear_but_noisy_slowdown() -> None:
    plan = LaunchPlan(launches=4, max_launches=20)
    first_look_undecided = 0
    for seed in SEEDS:
        looks = sequential(seed, 1.15, 0.06, DecisionRule(), plan)
        first_look_undecided += not looks[0].decided
        assert looks[-1].outcome in ("regression", "undecided")
    assert first_look_undecided > 0  # the first look alone would not have decided all of them
    final = [sequential(s, 1.15, 0.06, DecisionRule(), plan)[-1].outcome for s in SEEDS]
    assert final.count("regression") >= 0.85 * len(SEEDS)


def test_sequential_a_a_gates_never_fail_at_moderate_noise() -> None:
    plan = LaunchPlan()
    for seed in range(200):
        assert sequential(seed, 1.0, 0.02, DecisionRule(), plan)[-1].outcome != "regression"


def test_plan_rounds_add_launches_up_to_the_maximum() -> None:
    assert LaunchPlan(launches=6, max_launches=20, add=4).rounds() == [6, 4, 4, 4, 2]
    assert LaunchPlan(launches=5, max_launches=5).rounds() == [5]
    with pytest.raises(UsageError):
        LaunchPlan(launches=8, max_launches=4)
    with pytest.raises(UsageError):
        LaunchPlan(launches=1)


def make_verdict(decision: Decision, status: str, policy: str = "error") -> Verdict:
    return Verdict(status=status, decisions=(decision,), rule=DecisionRule(), mode="ab",  # type: ignore[arg-type]
                   base_label="base", head_label="head", launches=(), base_samples_ms=(),
                   head_samples_ms=(), inconclusive_policy=policy, run_dir=Path("x"))  # type: ignore[arg-type]


def test_verdict_return_codes() -> None:
    fail = decide(*samples(1, 1.3, 0.01, 6), DecisionRule())
    ok = decide(*samples(1, 1.0, 0.01, 6), DecisionRule())
    unclear = decide(*samples(1, 1.05, 0.08, 4), DecisionRule())
    assert unclear.outcome == "undecided"
    assert make_verdict(fail, "regression").return_code == 1
    assert make_verdict(ok, "pass").return_code == 0
    assert make_verdict(unclear, "inconclusive").return_code == 4
    assert make_verdict(unclear, "inconclusive", "pass").return_code == 0
    assert make_verdict(unclear, "inconclusive", "fail").return_code == 1
    verdict = make_verdict(fail, "regression")
    with pytest.raises(AttributeError):
        verdict.status = "pass"  # type: ignore[misc]
    assert verdict.headline.startswith("REGRESSION")
    assert "CI [" in verdict.headline


def test_paired_decision_on_a_drifting_runner() -> None:
    # Load drifts between pairs: paired analysis sees a 10 % slowdown the two-sample one misses.
    rule = DecisionRule()
    caught = missed = 0
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        load = rng.lognormal(0.0, 0.25, 8)
        base = (20.0 * load * rng.lognormal(0.0, 0.01, 8)).tolist()
        head = (22.0 * load * rng.lognormal(0.0, 0.01, 8)).tolist()
        caught += decide(base, head, rule, paired=True).outcome == "regression"
        missed += decide(base, head, rule, paired=False).outcome != "regression"
    assert caught == len(SEEDS)
    assert missed > len(SEEDS) // 2


def test_calibration_file_sets_the_floor(tmp_path: Path) -> None:
    from perftune.analysis import stats
    from perftune.errors import ConfigError
    from perftune.gate import calibration

    est = stats.paired_ratio_interval([20.0, 21.0, 19.5], [20.5, 20.0, 20.1])
    cal = calibration.Calibration(noise=0.08, paired_noise=0.02, launches=3, aa=est, confidence=0.95)
    path = tmp_path / "cal.json"
    calibration.save(cal, path)
    revision_floor = calibration.noise_floor(path, 0.95, LaunchPlan(), paired=True)
    baseline_floor = calibration.noise_floor(path, 0.95, LaunchPlan(), paired=False)
    assert revision_floor == pytest.approx(cal.detectable(20, paired=True))
    assert baseline_floor == pytest.approx(cal.detectable(20, paired=False))
    assert baseline_floor > revision_floor
    needed = cal.launches_for(0.05)
    assert needed is not None
    assert cal.detectable(needed) <= 0.05 < cal.detectable(needed - 1)
    assert cal.launches_for(0.0001) is None
    path.write_text('{"kind": "perftune-calibration", "noise_log_sd": "high"}')
    with pytest.raises(ConfigError):
        calibration.noise_floor(path, 0.95, LaunchPlan(), paired=False)


def test_per_look_rule_splits_the_error_rate() -> None:
    rule = DecisionRule(max_regression=0.07, confidence=0.95, noise_floor=0.01)
    assert rule.per_look(1) == rule
    five = rule.per_look(5)
    assert five.confidence == pytest.approx(0.99)
    assert (five.max_regression, five.noise_floor) == (0.07, 0.01)
    assert LaunchPlan().looks == 5


def test_splitting_over_looks_keeps_noisy_a_a_gates_from_failing() -> None:
    # Heavy noise, where the allowance alone does not protect: peeking five times at 95 %
    # fails noticeably more A/A gates than splitting the 5 % over the five looks.
    plan, rule = LaunchPlan(), DecisionRule()
    peeking = sum(sequential(s, 1.0, 0.08, rule, plan)[-1].outcome == "regression" for s in range(300))
    split = sum(sequential(s, 1.0, 0.08, rule.per_look(plan.looks), plan)[-1].outcome == "regression"
                for s in range(300))
    assert split < peeking
    assert split <= 300 * 0.02
