"""Launching base and head interleaved, and adding launches until the data decide.

Each launch is one process measured like `perftune profile` (perftune.capture.parent.measure:
warm-up discarded, median of the steady steps); the per-launch medians are the samples. Steps
of one launch are not independent (they share the process, its allocator state, its CPU
frequency), so they are never pooled across launches.

Launches alternate in randomised ABBA blocks: slow drift of a shared runner (a neighbour job
starting, thermal throttling) then hits both sides alike instead of biasing one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from perftune.capture.parent.measure import (
    BASE,
    HEAD,
    Launch,
    MeasureSettings,
    Side,
    measure_launch,
)
from perftune.errors import UsageError
from perftune.gate.decision import Decision, DecisionRule, decide

DEFAULT_LAUNCHES = 6


@dataclass(frozen=True)
class LaunchPlan:
    """How many launches per side: `launches` first, then `add` more per round up to the max."""

    launches: int = DEFAULT_LAUNCHES
    max_launches: int = 20
    add: int = 4

    def __post_init__(self) -> None:
        if self.launches < 2:
            raise UsageError(f"--launches must be at least 2 per side, got {self.launches}")
        if self.max_launches < self.launches:
            raise UsageError(f"--max-launches ({self.max_launches}) must be >= --launches ({self.launches})")
        if self.add < 1:
            raise UsageError(f"launches added per round must be >= 1, got {self.add}")

    @property
    def looks(self) -> int:
        """How many times the gate may decide: once after each round."""
        return len(self.rounds())

    def rounds(self) -> list[int]:
        """Launches per side to add at each look: [6, 4, 4, 4, 2] for 6/20/4."""
        sizes = [self.launches]
        total = self.launches
        while total < self.max_launches:
            more = min(self.add, self.max_launches - total)
            sizes.append(more)
            total += more
        return sizes


@dataclass(frozen=True)
class SequentialResult:
    launches: tuple[Launch, ...]
    decisions: tuple[Decision, ...]

    @property
    def decision(self) -> Decision:
        return self.decisions[-1]

    def samples(self, side: str) -> tuple[float, ...]:
        return tuple(launch.median_ms for launch in self.launches if launch.side == side)


def abba_order(per_side: int, rng: random.Random) -> list[str]:
    """Launch order for `per_side` launches of each side in randomised ABBA / BAAB blocks.

    Within a block each side sits once early and once late, so a linear drift cancels; the
    random choice of block keeps a periodic disturbance from lining up with one side.
    """
    order: list[str] = []
    for _ in range(per_side // 2):
        first, second = (BASE, HEAD) if rng.random() < 0.5 else (HEAD, BASE)
        order += [first, second, second, first]
    if per_side % 2:
        order += [BASE, HEAD] if rng.random() < 0.5 else [HEAD, BASE]
    return order


@dataclass
class SequentialGate:
    """Adds launches round by round until the decision rule decides or the plan runs out.

    With `base` None (baseline mode) only the head is launched and `base_samples` are the
    stored ones.
    """

    head: Side
    base: Side | None
    launch_root: Path
    settings: MeasureSettings
    base_samples: Sequence[float] = ()
    seed: int | None = None
    on_launch: Callable[[Launch], None] | None = None
    on_decision: Callable[[Decision], None] | None = None
    _launches: list[Launch] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.base is None and len(self.base_samples) < 2:
            raise UsageError("baseline mode needs at least two stored samples")

    def _run_one(self, side: Side) -> Launch:
        seq = len(self._launches)
        run_dir = self.launch_root / f"{seq:03d}-{side.name}"
        launch = measure_launch(side, seq, run_dir, self.settings)
        self._launches.append(launch)
        if self.on_launch is not None:
            self.on_launch(launch)
        return launch

    def _samples(self, side: str) -> list[float]:
        if side == BASE and self.base is None:
            return list(self.base_samples)
        return [launch.median_ms for launch in self._launches if launch.side == side]

    def run(self, rule: DecisionRule, plan: LaunchPlan) -> SequentialResult:
        rng = random.Random(self.seed)
        look_rule = rule.per_look(plan.looks)
        decisions: list[Decision] = []
        for per_side in plan.rounds():
            order = [HEAD] * per_side if self.base is None else abba_order(per_side, rng)
            for name in order:
                side = self.head if name == HEAD else self.base
                assert side is not None
                self._run_one(side)
            # Interleaved launches are analysed as ABBA pairs; stored samples as a second sample.
            decision = decide(self._samples(BASE), self._samples(HEAD), look_rule,
                              paired=self.base is not None)
            decisions.append(decision)
            if self.on_decision is not None:
                self.on_decision(decision)
            if decision.decided:
                break
        return SequentialResult(launches=tuple(self._launches), decisions=tuple(decisions))
