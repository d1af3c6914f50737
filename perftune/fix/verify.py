"""The checks a rewrite must pass: same losses as the original, not slower, and its memory.

Losses are compared step by step for the first steps of a launch (both runs start from the same
seed, so a semantics-preserving rewrite gives the same numbers up to floating-point reordering).
Step time is the gate's measure: per-launch medians, paired with the original's launch of the
same interleaved block, as a ratio of geometric means with a confidence interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from perftune.analysis.stats import paired_ratio_interval, percent, t_quantile

MATCH = "match"
DIFFERS = "differs"
UNKNOWN = "unknown"

FASTER = "faster"
SLOWER = "slower"
NO_CHANGE = "no-change"


@dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-4
    atol: float = 1e-6
    steps: int = 5  # how many leading steps' losses are compared


@dataclass(frozen=True)
class LossCheck:
    status: str  # match | differs | unknown
    steps_compared: int
    max_abs_diff: float | None
    max_rel_diff: float | None
    first_mismatch: int | None  # step index
    base: tuple[float | None, ...]
    rewritten: tuple[float | None, ...]
    reason: str = ""
    compared: tuple[int, ...] = ()  # the step indices whose losses were compared


def _close(a: float, b: float, tol: Tolerance) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= tol.atol + tol.rtol * abs(a)


def compare_losses(base: Sequence[float | None], rewritten: Sequence[float | None],
                   tol: Tolerance) -> LossCheck:
    """Compare the losses of the first `tol.steps` steps that both runs recorded.

    Position k of both sequences is step k as the step detector numbered it in each run, so
    the same step of the script is compared (see `losses_by_step`)."""
    head_base = tuple(base[:tol.steps])
    head_new = tuple(rewritten[:tol.steps])
    pairs = [(k, a, b) for k, (a, b) in enumerate(zip(head_base, head_new, strict=False))
             if a is not None and b is not None]
    if not pairs:
        return LossCheck(UNKNOWN, 0, None, None, None, head_base, head_new,
                         "no losses recorded (capture saw no loss.backward())")
    if len(head_new) < len(head_base) and len(pairs) < min(tol.steps, len(head_base)):
        reason = f"the rewritten run recorded {len(head_new)} of {len(head_base)} losses"
    else:
        reason = ""
    finite = [(a, b) for _, a, b in pairs if math.isfinite(a) and math.isfinite(b)]
    max_abs = max((abs(a - b) for a, b in finite), default=0.0)
    max_rel = max((abs(a - b) / abs(a) if a else (0.0 if a == b else math.inf)
                   for a, b in finite), default=0.0)
    first = next((k for k, a, b in pairs if not _close(a, b, tol)), None)
    status = MATCH if first is None else DIFFERS
    if first is not None:
        reason = (f"step {first}: loss {head_new[first]!r} instead of {head_base[first]!r} "
                  f"(rtol {tol.rtol:g}, atol {tol.atol:g})")
    return LossCheck(status, len(pairs), max_abs, max_rel, first, head_base, head_new, reason,
                     tuple(k for k, _, _ in pairs))


def losses_by_step(steps: Sequence[tuple[int, float | None]]) -> tuple[float | None, ...]:
    """(step index, loss) pairs as a sequence whose position k is step k (None: no loss)."""
    if not steps:
        return ()
    out: list[float | None] = [None] * (max(index for index, _ in steps) + 1)
    for index, loss in steps:
        out[index] = loss
    return tuple(out)


@dataclass(frozen=True)
class SpeedCheck:
    """rewritten/original step time: ratio of geometric means and its interval."""

    verdict: str  # faster | slower | no-change | unknown
    ratio: float | None
    low: float | None
    high: float | None
    confidence: float
    base_ms: float | None
    rewritten_ms: float | None
    pairs: int

    @property
    def speedup(self) -> float | None:
        return 1.0 / self.ratio if self.ratio else None


def compare_speed(base: Sequence[float], rewritten: Sequence[float],
                  confidence: float = 0.95) -> SpeedCheck:
    """Launch medians of interleaved blocks: base[i] and rewritten[i] ran in the same block."""
    n = min(len(base), len(rewritten))
    if n < 2:
        ratio = rewritten[0] / base[0] if n == 1 else None
        return SpeedCheck(UNKNOWN, ratio, None, None, confidence,
                          base[0] if base else None, rewritten[0] if rewritten else None, n)
    est = paired_ratio_interval(base[:n], rewritten[:n], confidence)
    if est.high < 1.0:
        verdict = FASTER
    elif est.low > 1.0:
        verdict = SLOWER
    else:
        verdict = NO_CHANGE
    return SpeedCheck(verdict, est.ratio, est.low, est.high, confidence,
                      est.base_geomean_ms, est.head_geomean_ms, n)


def speed_decided(base: Sequence[float], rewritten: Sequence[float], confidence: float,
                  require_faster: bool = False) -> bool:
    """More launches would not change what is done with the rewrite: the interval of
    rewritten/original lies above 1 (slower: dropped), below 1 (faster: kept), or its upper
    end is within SLOWER_MEASURED of 1 (at most 2 % slower: kept as not slower, however much
    faster it may be — more launches could only tell "faster" from "no change", and both are
    kept). With `require_faster` only "faster" keeps a rewrite, so "not slower" is not enough:
    the interval must lie within SLOWER_MEASURED of 1 on both sides (not faster: dropped).
    The sequential measurement of `perftune fix` stops measuring a version once this holds."""
    n = min(len(base), len(rewritten))
    if n < 2:
        return False
    est = paired_ratio_interval(base[:n], rewritten[:n], confidence)
    if est.low > 1.0 or est.high < 1.0:
        return True
    if not require_faster:
        return est.high <= 1.0 + SLOWER_MEASURED
    return est.low >= 1.0 / (1.0 + SLOWER_MEASURED) and est.high <= 1.0 + SLOWER_MEASURED


def launches_to_settle(base: Sequence[float], rewritten: Sequence[float], confidence: float,
                       limit: int = 1000) -> int | None:
    """About how many launches per version would put the interval of a version that is no
    faster and no slower within SLOWER_MEASURED of 1, at the launch-to-launch noise of the pairs
    measured (None: fewer than three pairs; `limit` + 1: more than `limit`)."""
    n = min(len(base), len(rewritten))
    if n < 3:
        return None
    logs = [math.log(r / b) for b, r in zip(base[:n], rewritten[:n], strict=True)]
    sd = statistics.stdev(logs)
    margin = math.log(1.0 + SLOWER_MEASURED)

    def settles(k: int) -> bool:
        return t_quantile(0.5 + confidence / 2, k - 1) * sd / math.sqrt(k) <= margin

    if not settles(limit):
        return limit + 1
    lo, hi = 1, limit  # the half-width shrinks as launches grow: bisect
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if settles(mid):
            hi = mid
        else:
            lo = mid
    return hi


@dataclass(frozen=True)
class MemoryCheck:
    base_bytes: int | None
    rewritten_bytes: int | None
    kind: str  # cuda-allocator | rss

    @property
    def ratio(self) -> float | None:
        if not self.base_bytes or self.rewritten_bytes is None:
            return None
        return self.rewritten_bytes / self.base_bytes


def typical_memory(values: Sequence[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return int(statistics.median(known)) if known else None


@dataclass(frozen=True)
class Verdict:
    status: str  # verified | unverified | slower | changed-results | failed
    included: bool
    reason: str


# A rewrite whose measured step time is this much above the original's is not kept even when
# the interval cannot exclude "no change": it was measured slower, and nothing says faster.
SLOWER_MEASURED = 0.02


def judge(losses: LossCheck, speed: SpeedCheck, applicability: str, *,
          require_faster: bool = False, failed: str | None = None,
          warnings: Sequence[str] = ()) -> Verdict:
    """Whether a measured rewrite goes into the patch, and why (or why not)."""
    if failed:
        return Verdict("failed", False, failed)
    if warnings:
        return Verdict("warns", False,
                       "makes the library warn on every run, which the original does not: "
                       + "; ".join(warnings[:2]))
    if losses.status == DIFFERS:
        return Verdict("changed-results", False, f"changes the losses: {losses.reason}")
    if speed.verdict == SLOWER:
        return Verdict("slower", False,
                       f"slower: {speed.ratio:.3f}× the original step time "
                       f"({_interval(speed)})")
    if (speed.verdict != FASTER and speed.low is not None and speed.ratio is not None
            and speed.ratio > 1 + SLOWER_MEASURED):
        return Verdict("slower", False,
                       f"measured slower ({speed.ratio:.3f}× the original step time, "
                       f"{_interval(speed)}); only a rewrite measured not slower is kept")
    if require_faster and speed.verdict != FASTER:
        return Verdict("not-faster", False, "not measurably faster (--require-faster)")
    if losses.status == UNKNOWN and applicability != "safe":
        return Verdict("unverified", False,
                       f"could not check the losses ({losses.reason}); an unsafe rewrite is "
                       "only kept when they match")
    if speed.verdict == FASTER:
        return Verdict("verified", True, f"{1 / (speed.ratio or 1):.2f}× faster ({_interval(speed)})")
    what = "losses match" if losses.status == MATCH else "safe rewrite, losses not compared"
    return Verdict("verified", True, f"{what}; no measurable speed change on this machine "
                   f"({_interval(speed)})")


def _interval(speed: SpeedCheck) -> str:
    if speed.low is None or speed.high is None:
        return "too few launches for an interval"
    return (f"time ratio {speed.ratio:.3f}, {percent(speed.confidence)} interval "
            f"{speed.low:.3g}–{speed.high:.3g}")


def baseline_reproducible(runs: Sequence[Sequence[float | None]], tol: Tolerance) -> LossCheck:
    """Do two unchanged runs give the same losses? If not, the script does not seed itself and
    no loss comparison means anything."""
    if len(runs) < 2:
        return LossCheck(UNKNOWN, 0, None, None, None, tuple(runs[0]) if runs else (), (),
                         "only one launch of the original")
    worst = compare_losses(runs[0], runs[1], tol)
    for other in runs[2:]:
        check = compare_losses(runs[0], other, tol)
        if check.status == DIFFERS:
            return check
    return worst
