"""The trials so far, grouped by configuration, with each configuration's verdict.

A configuration can be measured several times (the interleaved repeats of the top candidates);
its figure is the median throughput of its measurements, leaving out noisy ones (step spread,
IQR/median, above NOISY_SPREAD) when it has quiet ones. Its verdict is one of: feasible,
over-budget, accuracy (rejected by the guard), or the failure of its trials (oom, crashed, ...).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from perftune.analysis import stats
from perftune.capture.parent.knobs import BATCH_SIZE, baseline_values, needs_guard
from perftune.tune.constraints import GuardResult, guard
from perftune.tune.space import SearchSpace, config_key
from perftune.tune.trial import MEMORY_FAILURES, TrialOutcome

# Roles a trial plays: the search proper, the fp32 run the accuracy guard needs, a repeat of a
# top candidate, the first run that discovers the knobs the script declares, a second
# measurement of a configuration whose first one was too noisy to act on, one more measurement
# of the best or of the configuration it is not yet told apart from (the sequential phase).
ROLES = ("probe", "search", "baseline", "repeat", "recheck", "separate")
# A measurement whose steps spread more than this (interquartile range over the median) was
# disturbed (a load spike on a shared machine): the structured search measures the
# configuration again before it acts on the figure. Quiet trials spread 0.02-0.2 on CPU.
NOISY_SPREAD = 0.3
# Measurements a noisy configuration gets at most for the recheck (then its figure stands).
RECHECK_LIMIT = 2


def noisy(outcome: TrialOutcome) -> bool:
    return outcome.spread is not None and outcome.spread > NOISY_SPREAD


@dataclass(frozen=True)
class TrialRecord:
    number: int
    values: dict[str, Any]
    role: str
    why: str
    worker: str | None
    outcome: TrialOutcome | None  # None while running

    @property
    def key(self) -> str:
        return config_key(self.values)

    @property
    def running(self) -> bool:
        return self.outcome is None

    @property
    def status(self) -> str:
        return "running" if self.outcome is None else self.outcome.status

    @property
    def counts(self) -> bool:
        """Whether the trial counts towards --max-trials (an interrupted one is re-run)."""
        return self.status not in ("interrupted", "duplicate")


@dataclass(frozen=True)
class ConfigResult:
    values: dict[str, Any]
    key: str
    trials: tuple[TrialRecord, ...]
    in_space: bool
    guard: GuardResult | None

    @property
    def measurements(self) -> tuple[TrialOutcome, ...]:
        return tuple(t.outcome for t in self.trials if t.outcome is not None and t.outcome.measured)

    @property
    def throughput(self) -> float | None:
        """Median throughput of the quiet measurements (of all, when every one was noisy)."""
        measured = [m for m in self.measurements if m.throughput is not None]
        quiet = [m for m in measured if not noisy(m)]
        figures = [m.throughput for m in (quiet or measured) if m.throughput is not None]
        return statistics.median(figures) if figures else None

    @property
    def needs_recheck(self) -> bool:
        """Feasible, but measured only noisily and fewer than RECHECK_LIMIT times."""
        measured = self.measurements
        return (
            0 < len(measured) < RECHECK_LIMIT
            and all(noisy(m) for m in measured)
            and self.verdict == "feasible"
        )

    @property
    def throughputs(self) -> tuple[float, ...]:
        return tuple(m.throughput for m in self.measurements if m.throughput is not None)

    @property
    def peak_memory_bytes(self) -> int | None:
        peaks = [m.peak_memory_bytes for m in self.measurements if m.peak_memory_bytes is not None]
        return max(peaks) if peaks else None

    @property
    def verdict(self) -> str:
        measured = self.measurements
        if not measured:
            done = [t.outcome for t in self.trials if t.outcome is not None]
            return done[0].status if done else "running"
        if any(m.status == "over-budget" for m in measured):
            return "over-budget"
        if self.guard is not None and not self.guard.passed:
            return "accuracy"
        return "feasible"

    @property
    def memory_failure(self) -> bool:
        return self.verdict in MEMORY_FAILURES

    @property
    def first_trial(self) -> int:
        return min(t.number for t in self.trials)


class History:
    """All trials of a study, as the strategy and the results see them."""

    def __init__(
        self,
        space: SearchSpace,
        records: Iterable[TrialRecord],
        *,
        tolerance: float,
    ) -> None:
        self.space = space
        self.tolerance = tolerance
        self.records = tuple(sorted(records, key=lambda r: r.number))
        self.done = tuple(r for r in self.records if not r.running and r.counts)
        self.pending = tuple(r for r in self.records if r.running)
        self.pending_keys = frozenset(r.key for r in self.pending)
        by_key: dict[str, list[TrialRecord]] = {}
        for record in self.done:
            by_key.setdefault(record.key, []).append(record)
        self._baseline_losses: dict[str, tuple[int, tuple[float | None, ...]]] = {}
        for key, trials in by_key.items():
            first_ok = next((t for t in trials if t.outcome and t.outcome.measured), None)
            if first_ok is not None and first_ok.outcome is not None:
                self._baseline_losses[key] = (first_ok.number, first_ok.outcome.losses)
        self.configs: dict[str, ConfigResult] = {
            key: ConfigResult(
                values=dict(trials[0].values),
                key=key,
                trials=tuple(trials),
                in_space=space.contains(trials[0].values),
                guard=self._guard(trials),
            )
            for key, trials in by_key.items()
        }

    def _guard(self, trials: list[TrialRecord]) -> GuardResult | None:
        values = trials[0].values
        if not needs_guard(values):
            return None
        first_ok = next((t for t in trials if t.outcome and t.outcome.measured), None)
        if first_ok is None or first_ok.outcome is None:
            return None
        baseline = self._baseline_losses.get(config_key(baseline_values(values)))
        if baseline is None:
            return guard(first_ok.outcome.losses, None, self.tolerance, None)
        return guard(first_ok.outcome.losses, baseline[1], self.tolerance, baseline[0])

    def trial_guard(self, record: TrialRecord) -> GuardResult | None:
        """The accuracy guard applied to one trial's own losses (None: no guard needed)."""
        if record.outcome is None or not record.outcome.measured or not needs_guard(record.values):
            return None
        baseline = self._baseline_losses.get(config_key(baseline_values(record.values)))
        if baseline is None:
            return guard(record.outcome.losses, None, self.tolerance, None)
        return guard(record.outcome.losses, baseline[1], self.tolerance, baseline[0])

    # --- questions the strategy asks ------------------------------------------------------

    def seen(self, values: Mapping[str, Any]) -> bool:
        """Evaluated or being evaluated."""
        key = config_key(values)
        return key in self.configs or key in self.pending_keys

    def result(self, values: Mapping[str, Any]) -> ConfigResult | None:
        return self.configs.get(config_key(values))

    def counted(self) -> int:
        """Trials that count towards --max-trials, the running ones included."""
        return sum(1 for r in self.records if r.counts)

    def ranking(self) -> list[ConfigResult]:
        """Feasible configurations of the space, fastest first (ties: the earlier trial)."""
        feasible = [
            c
            for c in self.configs.values()
            if c.in_space and c.verdict == "feasible" and c.throughput is not None
        ]
        return sorted(feasible, key=lambda c: (-(c.throughput or 0.0), c.first_trial))

    def incumbent(self) -> ConfigResult | None:
        ranking = self.ranking()
        return ranking[0] if ranking else None

    def needs_baseline(self, top: int) -> dict[str, Any] | None:
        """The fp32 baseline a leading configuration still waits for, or None.

        Only configurations that could win need their accuracy checked: the measured ones
        ranked in the top `top` by throughput, guard aside.
        """
        contenders = [
            c
            for c in self.configs.values()
            if c.in_space
            and c.throughput is not None
            and c.verdict in ("feasible", "accuracy")
        ]
        contenders.sort(key=lambda c: -(c.throughput or 0.0))
        for config in contenders[:top]:
            if config.guard is None or config.guard.status != "unchecked":
                continue
            if config.guard.baseline_trial is not None:
                continue  # a baseline ran but recorded no losses: nothing more to learn
            base = baseline_values(config.values)
            result = self.result(base)
            if result is None and config_key(base) not in self.pending_keys:
                return base
        return None

    def memory_pruned(self, values: Mapping[str, Any]) -> bool:
        """Whether a smaller-or-equal batch with the same other values ran out of memory or
        over the budget (memory grows with the batch size, so this one would too)."""
        if BATCH_SIZE not in values or self.space.get(BATCH_SIZE) is None:
            return False
        batch = values[BATCH_SIZE]
        for config in self.configs.values():
            other = config.values
            if not config.memory_failure or other.get(BATCH_SIZE, batch + 1) > batch:
                continue
            if all(other.get(k) == v for k, v in values.items() if k != BATCH_SIZE):
                return True
        return False


def record_from_attrs(
    number: int, params: Mapping[str, Any], attrs: Mapping[str, Any], running: bool
) -> TrialRecord:
    outcome_data = attrs.get("outcome")
    outcome = None
    if not running:
        outcome = (
            TrialOutcome.from_json(outcome_data)
            if isinstance(outcome_data, Mapping)
            else TrialOutcome(status="interrupted", reason="the trial did not finish")
        )
    return TrialRecord(
        number=number,
        values=dict(attrs.get("values", params)),
        role=str(attrs.get("role", "search")),
        why=str(attrs.get("why", "")),
        worker=attrs.get("worker"),
        outcome=outcome,
    )


def reliably_faster(best: ConfigResult, other: ConfigResult, confidence: float = 0.95) -> bool:
    """Whether `best`'s repeated throughputs are reliably above `other`'s: the gate's statistics
    (perftune.analysis.stats, Welch interval on the logarithms) over the repeats, which needs two
    measurements of each. "Every repeat beat every repeat" is not enough: with two repeats each,
    a third of truly equal pairs look like that once the better median is called the best."""
    mine = [v for v in best.throughputs if v > 0]
    theirs = [v for v in other.throughputs if v > 0]
    if len(mine) < 2 or len(theirs) < 2:
        return False
    estimate = stats.ratio_interval(theirs, mine, confidence)
    return stats.direction(estimate) == "higher"


def summarise_spread(values: Iterable[float]) -> float | None:
    """(max - min) / median of repeated figures, or None with fewer than two."""
    figures = list(values)
    if len(figures) < 2:
        return None
    middle = statistics.median(figures)
    return (max(figures) - min(figures)) / middle if middle else None
