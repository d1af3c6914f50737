"""The gate's statistics: quantiles against scipy, the Welch interval, detectable regressions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perftune.analysis import stats
from perftune.errors import UsageError


@pytest.mark.parametrize("df", [1.0, 1.7, 2.0, 3.0, 4.5, 10.0, 37.2, 500.0])
@pytest.mark.parametrize("p", [0.55, 0.9, 0.975, 0.995, 0.9995])
def test_t_quantile_matches_scipy(df: float, p: float) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    expected = float(scipy_stats.t.ppf(p, df))
    assert stats.t_quantile(p, df) == pytest.approx(expected, rel=1e-6)
    assert stats.t_quantile(1 - p, df) == pytest.approx(-expected, rel=1e-6)


@pytest.mark.parametrize("p", [1e-6, 0.01, 0.3, 0.5, 0.8, 0.999])
def test_normal_quantile_matches_scipy(p: float) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    assert stats.normal_quantile(p) == pytest.approx(float(scipy_stats.norm.ppf(p)), abs=1e-8)


def test_quantiles_reject_impossible_probabilities() -> None:
    with pytest.raises(ValueError):
        stats.t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        stats.t_quantile(0.9, 0)
    with pytest.raises(ValueError):
        stats.normal_quantile(0.0)


def test_ratio_interval_is_the_ratio_of_geometric_means() -> None:
    base = [10.0, 11.0, 9.5, 10.4]
    head = [12.0, 12.5, 11.8, 12.2, 12.1]
    est = stats.ratio_interval(base, head, 0.95)
    assert est.ratio == pytest.approx(stats.geometric_mean(head) / stats.geometric_mean(base))
    assert est.low < est.ratio < est.high
    assert (est.n_base, est.n_head) == (4, 5)
    # Interval half-widths are symmetric on the log scale.
    assert math.log(est.high / est.ratio) == pytest.approx(math.log(est.ratio / est.low))


def test_ratio_interval_matches_scipy_welch_on_logs() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    base = rng.lognormal(math.log(20), 0.03, 8)
    head = rng.lognormal(math.log(21), 0.06, 6)
    est = stats.ratio_interval(base, head, 0.9)
    result = scipy_stats.ttest_ind(np.log(head), np.log(base), equal_var=False)
    low, high = result.confidence_interval(0.9)
    assert est.low == pytest.approx(math.exp(low), rel=1e-6)
    assert est.high == pytest.approx(math.exp(high), rel=1e-6)
    assert est.df == pytest.approx(result.df, rel=1e-6)


def test_higher_confidence_gives_a_wider_interval() -> None:
    rng = np.random.default_rng(3)
    base, head = rng.lognormal(3, 0.05, 6), rng.lognormal(3.02, 0.05, 6)
    narrow, wide = stats.ratio_interval(base, head, 0.8), stats.ratio_interval(base, head, 0.99)
    assert wide.low < narrow.low and narrow.high < wide.high


def test_identical_launches_give_a_point_interval() -> None:
    est = stats.ratio_interval([5.0, 5.0, 5.0], [6.0, 6.0], 0.95)
    assert est.low == est.high == pytest.approx(1.2)


@pytest.mark.parametrize("bad", [[], [1.0, -2.0], [1.0, float("nan")], [0.0, 1.0]])
def test_bad_samples_are_refused(bad: list[float]) -> None:
    with pytest.raises(UsageError):
        stats.ratio_interval(bad, [1.0, 2.0])


def test_one_launch_per_side_is_not_enough_for_an_interval() -> None:
    with pytest.raises(UsageError):
        stats.ratio_interval([1.0], [1.0, 1.1])


def test_detectable_regression_shrinks_with_launches_and_grows_with_noise() -> None:
    few = stats.min_detectable_regression(0.03, 4)
    many = stats.min_detectable_regression(0.03, 30)
    noisy = stats.min_detectable_regression(0.06, 30)
    assert many < few
    assert noisy > many
    assert stats.min_detectable_regression(0.0, 10) == 0.0


def test_detectable_regression_is_detected_about_as_often_as_promised() -> None:
    # Simulate the two-sample comparison at the promised size: the interval should exclude 1
    # in about `power` of the cases (90 %).
    rng = np.random.default_rng(11)
    noise, n = 0.04, 8
    effect = stats.min_detectable_regression(noise, n, 0.95, 0.9)
    hits = 0
    trials = 400
    for _ in range(trials):
        base = rng.lognormal(0.0, noise, n)
        head = rng.lognormal(math.log1p(effect), noise, n)
        hits += stats.ratio_interval(base, head, 0.95).low > 1.0
    assert 0.82 <= hits / trials <= 0.97


def test_paired_interval_matches_scipy_on_log_ratios() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(4)
    base = rng.lognormal(3.0, 0.05, 7)
    head = base * rng.lognormal(0.04, 0.02, 7)
    est = stats.paired_ratio_interval(base, head, 0.95)
    result = scipy_stats.ttest_rel(np.log(head), np.log(base))
    low, high = result.confidence_interval(0.95)
    assert (est.low, est.high) == (pytest.approx(math.exp(low)), pytest.approx(math.exp(high)))
    assert est.method == "paired" and est.df == 6
    # Still the ratio of geometric means.
    assert est.ratio == pytest.approx(stats.geometric_mean(head) / stats.geometric_mean(base))


def test_pairs_cancel_drift_that_both_launches_share() -> None:
    # A runner whose load changes between pairs (±30 %) but not within one: pairing removes it.
    rng = np.random.default_rng(9)
    load = rng.lognormal(0.0, 0.3, 10)
    base = 20.0 * load * rng.lognormal(0.0, 0.01, 10)
    head = 21.0 * load * rng.lognormal(0.0, 0.01, 10)
    paired = stats.paired_ratio_interval(base, head)
    welch = stats.ratio_interval(base, head)
    assert paired.low > 1.0 and welch.low < 1.0
    assert paired.noise < 0.03 < welch.noise
    assert paired.low < 1.05 < paired.high


def test_paired_interval_needs_matching_pairs() -> None:
    with pytest.raises(UsageError, match="as many"):
        stats.paired_ratio_interval([1.0, 2.0, 3.0], [1.0, 2.0])


def test_paired_detection_has_fewer_degrees_of_freedom() -> None:
    assert stats.min_detectable_regression(0.03, 4, paired=True) > stats.min_detectable_regression(0.03, 4)
