"""The one answer to "is B slower than A": ratio of geometric means with a Welch (or paired)
interval on log step times. Used by the gate, fix, the tuner's history and `perftune diff`.

Step times are positive and their noise is multiplicative (a busy neighbour slows everything by
some percent), so this works on logarithms: the mean of log-medians is the log of the
geometric mean, and a difference of means is the log of the head/base ratio.

Only numpy and the standard library (scipy is a test dependency, not a runtime one): normal
quantiles are `statistics.NormalDist`'s; the Student-t quantile, which the standard library
lacks, is computed here (integration plus bisection); the tests check both against scipy.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from perftune.errors import UsageError

# The calibration's "reliably detect" means this chance of failing the gate on a real regression.
DEFAULT_POWER = 0.9


def percent(level: float) -> str:
    """0.95 → '95%', 0.9875 → '98.8%' (confidence levels split over looks are not round)."""
    return f"{level:.1%}".replace(".0%", "%")


def log_samples(samples: Sequence[float], what: str = "samples") -> NDArray[np.float64]:
    """Logarithms of positive, finite step times; anything else is a measurement bug."""
    values = np.asarray(samples, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise UsageError(f"{what}: need at least one step time")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise UsageError(f"{what}: step times must be positive finite numbers, got {list(samples)!r}")
    return np.log(values)


def geometric_mean(samples: Sequence[float]) -> float:
    return float(np.exp(np.mean(log_samples(samples))))


def log_sd(samples: Sequence[float]) -> float:
    """Launch-to-launch noise: standard deviation of the log step times (≈ relative spread)."""
    logs = log_samples(samples)
    return float(np.std(logs, ddof=1)) if logs.size > 1 else 0.0


_NORMAL = statistics.NormalDist()


def _t_cdf(x: float, df: float) -> float:
    """P(T <= x) for Student's t with `df` (real, > 0) degrees of freedom."""
    if x == 0.0:
        return 0.5
    if math.isinf(df):
        return _NORMAL.cdf(x)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(math.pi)
    # With x = sqrt(df)·tan(θ) the density becomes cos(θ)^(df-1) on a finite range, smooth
    # for df >= 1 (Welch gives at least 1), so composite Simpson is accurate to ~1e-9 even
    # in the far tails; the tests compare against scipy.stats.t.
    theta = np.linspace(0.0, math.atan(abs(x) / math.sqrt(df)), 2001)
    density = np.exp(log_norm + (df - 1) * np.log(np.cos(theta)))
    h = theta[1] - theta[0]
    area = h / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum())
    return 0.5 + math.copysign(float(area), x)


def _invert(cdf_at: float, cdf: Callable[[float], float], hi: float) -> float:
    """The x >= 0 with cdf(x) = cdf_at (cdf_at >= 0.5), by bisection on a monotone cdf."""
    lo = 0.0
    while cdf(hi) < cdf_at:
        lo, hi = hi, hi * 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if cdf(mid) < cdf_at:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10 * max(1.0, hi):
            break
    return (lo + hi) / 2


def normal_quantile(p: float) -> float:
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {p}")
    return _NORMAL.inv_cdf(p)


@functools.lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (df may be fractional).

    Cached: each costs ~2-10 ms of numerical integration, and sequential tests and their
    replays ask for the same few (per-look confidence, whole degrees of freedom) again and again.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {p}")
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    return _invert(p, lambda x: _t_cdf(x, df), 4.0)


@dataclass(frozen=True)
class RatioEstimate:
    """head/base ratio of geometric means with a two-sided confidence interval."""

    ratio: float
    low: float
    high: float
    confidence: float
    n_base: int
    n_head: int
    base_geomean_ms: float
    head_geomean_ms: float
    base_log_sd: float
    head_log_sd: float
    df: float
    method: str = "welch"  # welch | paired
    # Launch-to-launch noise as this method sees it (log sd per launch): pooled over both
    # sides for Welch; for pairs, the spread of the pair differences divided by √2, i.e. what
    # is left once the drift both launches of a pair share is taken out.
    noise: float = 0.0
    # Standard error of the log ratio (0 when the launches showed no spread): one-sided
    # bounds at another level come from it (one_sided_low).
    se: float = 0.0

    @property
    def change(self) -> float:
        """Relative change of step time, +0.10 = 10 % slower."""
        return self.ratio - 1.0


def pooled_log_sd(sd_a: float, n_a: int, sd_b: float, n_b: int) -> float:
    dof = (n_a - 1) + (n_b - 1)
    if dof <= 0:
        return 0.0
    return math.sqrt(((n_a - 1) * sd_a**2 + (n_b - 1) * sd_b**2) / dof)


def _check_confidence(confidence: float) -> None:
    if not 0.5 <= confidence < 1.0:
        raise UsageError(f"confidence must be in [0.5, 1), got {confidence}")


def _estimate(x: NDArray[np.float64], y: NDArray[np.float64], diff: float, half: float,
              confidence: float, df: float, method: str, noise: float, se: float) -> RatioEstimate:
    return RatioEstimate(
        ratio=math.exp(diff),
        low=math.exp(diff - half),
        high=math.exp(diff + half),
        confidence=confidence,
        n_base=int(x.size),
        n_head=int(y.size),
        base_geomean_ms=float(np.exp(x.mean())),
        head_geomean_ms=float(np.exp(y.mean())),
        base_log_sd=float(np.std(x, ddof=1)),
        head_log_sd=float(np.std(y, ddof=1)),
        df=df,
        method=method,
        noise=noise,
        se=se,
    )


def ratio_interval(
    base: Sequence[float], head: Sequence[float], confidence: float = 0.95
) -> RatioEstimate:
    """Welch interval on log step times, mapped back to a ratio of geometric means.

    Welch rather than a pooled t-test because base and head need not share their noise: a
    regression that adds a host sync often makes the step time noisier too.
    """
    _check_confidence(confidence)
    x = log_samples(base, "base")
    y = log_samples(head, "head")
    if x.size < 2 or y.size < 2:
        raise UsageError("need at least two launches per side for an interval")
    var_x = float(np.var(x, ddof=1)) / x.size
    var_y = float(np.var(y, ddof=1)) / y.size
    diff = float(y.mean() - x.mean())
    se = math.sqrt(var_x + var_y)
    if se > 0:
        # Welch–Satterthwaite; guarded against one side having zero spread.
        df = se**4 / (
            (var_x**2 / (x.size - 1) if var_x else 0.0) + (var_y**2 / (y.size - 1) if var_y else 0.0)
        )
        half = t_quantile(0.5 + confidence / 2, df) * se
    else:
        # Identical launches (a coarse clock): the data show no spread at all.
        df, half = float(x.size + y.size - 2), 0.0
    noise = pooled_log_sd(float(np.std(x, ddof=1)), x.size, float(np.std(y, ddof=1)), y.size)
    return _estimate(x, y, diff, half, confidence, df, "welch", noise, se if half > 0 else 0.0)


def paired_ratio_interval(
    base: Sequence[float], head: Sequence[float], confidence: float = 0.95
) -> RatioEstimate:
    """Interval from launch pairs: base[i] and head[i] ran next to each other.

    A shared runner's load changes over seconds to minutes, so the two launches of an ABBA
    pair mostly see the same load; the pair's log ratio cancels it where a two-sample test
    would count it as noise. The mean of the pair log ratios is still the log of the ratio of
    geometric means.
    """
    _check_confidence(confidence)
    x = log_samples(base, "base")
    y = log_samples(head, "head")
    if x.size != y.size:
        raise UsageError(f"paired launches need as many base as head launches ({x.size} vs {y.size})")
    if x.size < 2:
        raise UsageError("need at least two launch pairs for an interval")
    d = y - x
    sd = float(np.std(d, ddof=1))
    df = float(d.size - 1)
    half = t_quantile(0.5 + confidence / 2, df) * sd / math.sqrt(d.size) if sd > 0 else 0.0
    return _estimate(x, y, float(d.mean()), half, confidence, df, "paired", sd / math.sqrt(2.0),
                     sd / math.sqrt(d.size))


def per_look_confidence(confidence: float, looks: int) -> float:
    """The confidence of each of `looks` looks at growing data (Bonferroni).

    Deciding again after every round of launches gives chance more than one try; splitting the
    error rate over the planned looks keeps the whole sequential test's error rate at
    1 - confidence (gate and fix stop as soon as a look decides). One look leaves it as it is.
    """
    if looks < 1:
        raise UsageError(f"looks must be at least 1, got {looks}")
    return 1.0 - (1.0 - confidence) / looks


def direction(estimate: RatioEstimate) -> str:
    """Whether head is reliably above base ("higher"), below ("lower"), or neither ("unclear"):
    the interval of head/base excludes 1 on one side. For step times higher is slower; for a
    throughput, higher is faster."""
    if estimate.low > 1.0:
        return "higher"
    if estimate.high < 1.0:
        return "lower"
    return "unclear"


def min_detectable_regression(
    noise: float, launches: int, confidence: float = 0.95, power: float = DEFAULT_POWER,
    paired: bool = False,
) -> float:
    """Smallest relative slowdown that `launches` per side detect with chance `power`.

    `noise` is the launch-to-launch log sd (as from calibration). Standard two-sample
    formula on logs: the slowdown must clear the interval half-width plus a power margin.
    Pairs have as many degrees of freedom as pairs less one, two samples twice that.
    """
    if launches < 2:
        raise UsageError("need at least two launches per side")
    se = noise * math.sqrt(2.0 / launches)
    df = launches - 1 if paired else 2 * launches - 2
    effect = (t_quantile(0.5 + confidence / 2, df) + normal_quantile(power)) * se
    return math.exp(effect) - 1.0


# Part of a step (a category, an operator) measured in one launch per side moves more from
# launch to launch than the whole step does: the split between parts shifts too. Never assume
# less relative noise for a part than this.
MIN_PART_NOISE = 0.05


def part_change_interval(base_ms: float, head_ms: float, noise: float, launches: int,
                         confidence: float = 0.95) -> tuple[float, float]:
    """Interval of head − base (ms) for one part of a step measured in one launch per side.

    Each side's value is one launch's, so it carries one launch's relative noise: `noise` is
    the launch-to-launch log sd the gate measured on whole steps (floored at MIN_PART_NOISE),
    with `launches` launches behind that estimate (its degrees of freedom). Used for the
    gate's explanation lines: a line whose interval holds 0 is noise, not a change.
    """
    _check_confidence(confidence)
    sd = max(noise, MIN_PART_NOISE)
    spread = math.sqrt((sd * base_ms) ** 2 + (sd * head_ms) ** 2)
    df = max(1, launches - 2)
    half = t_quantile(0.5 + confidence / 2, df) * spread
    delta = head_ms - base_ms
    return delta - half, delta + half


def separated(estimate: RatioEstimate) -> bool:
    """The interval excludes "no difference" (1): one side is reliably above the other."""
    return direction(estimate) != "unclear"


def one_sided_low(estimate: RatioEstimate, alpha: float) -> float:
    """The ratio's one-sided lower confidence bound at error rate `alpha` (0.002: a true ratio
    at or below it lies under the bound 0.2 % of the time), from the estimate's own standard
    error and degrees of freedom."""
    if not 0.0 < alpha < 0.5:
        raise UsageError(f"one-sided error rate must be in (0, 0.5), got {alpha}")
    if estimate.se <= 0:
        return estimate.ratio
    return math.exp(math.log(estimate.ratio) - t_quantile(1.0 - alpha, estimate.df) * estimate.se)
