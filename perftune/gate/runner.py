"""Launching base and head interleaved, and adding launches until the data decide.

Each launch is one process measured like `perftune profile` (perftune.capture.parent.measure:
warm-up discarded, median of the steady steps); the per-launch medians are the samples. Steps
of one launch are not independent (they share the process, its allocator state, its CPU
frequency), so they are never pooled across launches.

Launches alternate in randomised ABBA blocks: slow drift of a shared runner (a neighbour job
starting, thermal throttling) then hits both sides alike instead of biasing one.

Around each launch the runner's load is measured (perftune.gate.load). While the runner is
quiet the gate decides on wall time per step; once other processes are seen competing for the
CPUs it decides on CPU time per step (user + sys of the training process), which they barely
move, and the verdict says which figure decided. Launch length follows the measured step time
when the user did not fix --steps: enough steps for about a second of steady state.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from perftune.capture.parent.measure import (
    BASE,
    HEAD,
    Launch,
    MeasureSettings,
    Side,
    measure_launch,
)
from perftune.errors import UsageError
from perftune.gate import load as load_mod
from perftune.gate.decision import Decision, DecisionRule, Figure, decide


class Launcher(Protocol):
    """Where a side's launch processes come from (perftune.capture.parent.launcher.ZygoteLauncher)."""

    def alive(self) -> bool: ...
    def command(self) -> list[str]: ...

DEFAULT_LAUNCHES = 6
# Steady-state time one launch should measure when its length is sized from the step time:
# a launch's fixed cost (starting Python, importing torch) is seconds, so a second of steps
# costs little and halves the noise of a launch median over a 10-step one on a fast script.
TARGET_MEASURED_S = 1.0
MIN_SIZED_STEPS = 5
MAX_SIZED_STEPS = 100
# A gate against stored launches compares two independent samples taken at different times;
# with fewer stored launches than this their spread is too poorly known to decide on.
MIN_STORED_LAUNCHES = 5


def unpaired_doubt(decision: Decision, stored: int, base_busy: bool | None,
                   head_busy: bool) -> str:
    """Why a decision against stored launches cannot stand ("" when it can).

    Interleaved launches pair each head launch with a base launch that saw the same runner;
    stored ones were measured another time, maybe on a quiet runner where the head now runs on
    a busy one. Contention slows CPU time per step too (other processes evict the caches and
    share the memory bandwidth: identical code measured 2.36x on CPU time next to one busy
    process against a baseline recorded quiet), so a verdict against stored launches stands
    only when the load could not have produced it: a regression measured on a runner no busier
    than the baseline's, a pass measured on a runner no quieter than it.
    """
    if not decision.decided:
        return ""
    if stored < MIN_STORED_LAUNCHES:
        return (f"not decided: the baseline holds {stored} launches, and a gate against stored "
                f"launches (unpaired) decides only from {MIN_STORED_LAUNCHES} or more; record it "
                f"again with --launches {MIN_STORED_LAUNCHES} or more")
    if decision.outcome == "regression" and head_busy and base_busy is not True:
        recorded = ("on a quiet runner" if base_busy is False
                    else "under a load that was not measured (an older baseline)")
        return ("not failed: the head ran while other processes competed for the CPUs and the "
                f"baseline was recorded {recorded}; contention slows CPU time as well as wall "
                f"time, so the measured slowdown (ratio {decision.estimate.ratio:.3f}) may be "
                "the runner's. Gate against a revision (--against: launches paired) or record "
                "the baseline under the same load")
    if decision.outcome == "pass" and base_busy is True and not head_busy:
        return ("not passed: the baseline was recorded while other processes competed for the "
                "CPUs and the head ran on a quiet runner, so a slowdown could hide behind the "
                "baseline's contention. Record the baseline on a quiet runner or gate against a "
                "revision (--against: launches paired)")
    return ""


def sized_steps(step_ms: float, default: int) -> int:
    """Measured steps per launch for a script whose steps take `step_ms`: about
    TARGET_MEASURED_S of them, between MIN_SIZED_STEPS and MAX_SIZED_STEPS (`default` when the
    step time is unknown)."""
    if not step_ms > 0:
        return default
    wanted = math.ceil(TARGET_MEASURED_S * 1000.0 / step_ms)
    return max(MIN_SIZED_STEPS, min(MAX_SIZED_STEPS, wanted))


def launch_samples(launches: Sequence[Launch], side: str, figure: Figure) -> list[float] | None:
    """One side's per-launch samples of `figure`; None when a launch lacks it."""
    values = [launch.median_ms if figure == "wall" else launch.median_cpu_ms
              for launch in launches if launch.side == side]
    if any(v is None or not v > 0 for v in values):
        return None
    return [float(v) for v in values if v is not None]


def choose_figure(launches: Sequence[Launch], load: load_mod.RunnerLoad,
                  base_cpu: Sequence[float] | None = None, stored_base: bool = False) -> Figure:
    """CPU time once the runner is busy and every launch measured it; wall time otherwise."""
    if not load.busy:
        return "wall"
    if launch_samples(launches, HEAD, "cpu") is None:
        return "wall"
    if stored_base:
        return "cpu" if base_cpu else "wall"
    return "cpu" if launch_samples(launches, BASE, "cpu") is not None else "wall"


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

    load: load_mod.RunnerLoad = field(default_factory=lambda: load_mod.RunnerLoad(None))
    steps: int | None = None  # measured steps per launch after sizing, None: as set

    @property
    def figure(self) -> Figure:
        return self.decision.figure

    def samples(self, side: str, figure: Figure = "wall") -> tuple[float, ...]:
        return tuple(launch_samples(self.launches, side, figure) or ())


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
    # CPU time per step of the stored base launches, when the baseline recorded it.
    base_cpu_samples: Sequence[float] = ()
    # Whether the stored base launches ran on a busy runner (None: not measured).
    base_busy: bool | None = None
    seed: int | None = None
    on_launch: Callable[[Launch], None] | None = None
    on_decision: Callable[[Decision], None] | None = None
    # Size the launches' measured steps from the first launch's step time (sized_steps).
    size_launches: bool = False
    # Measure the runner's load around launches (perftune.gate.load); off for replays.
    measure_load: bool = True
    # Side name -> its zygote (perftune.capture.parent.launcher.ZygoteLauncher): launches are
    # forked from it while it is alive, else started fresh.
    launchers: Mapping[str, Launcher] = field(default_factory=dict)
    # Called before each round of launches after the first: new zygotes, so that one side's
    # address-space layout does not persist through the whole gate (ZygotePool.renew).
    renew_launchers: Callable[[], None] | None = None
    _launches: list[Launch] = field(default_factory=list, init=False)
    _load: load_mod.RunnerLoad = field(default_factory=lambda: load_mod.RunnerLoad(None), init=False)

    def __post_init__(self) -> None:
        if self.base is None and len(self.base_samples) < 2:
            raise UsageError("baseline mode needs at least two stored samples")

    def _run_one(self, side: Side) -> Launch:
        seq = len(self._launches)
        run_dir = self.launch_root / f"{seq:03d}-{side.name}"
        launcher = self.launchers.get(side.name)
        command = launcher.command() if launcher is not None and launcher.alive() else None
        # A forked launch is its zygote's child, not ours: the zygotes' CPU counts as ours.
        zygotes = {pid for pid in (getattr(z, "pid", None) for z in self.launchers.values())
                   if pid is not None}
        before = load_mod.read_cpu_times(zygotes) if self.measure_load else None
        launch = measure_launch(side, seq, run_dir, self.settings, launcher=command)
        measured = (load_mod.launch_load(before, load_mod.read_cpu_times(zygotes)) if before
                    else None)
        if measured is not None:
            launch = dataclasses.replace(launch, load=measured)
            self._load = self._load.with_launch(measured)
        self._launches.append(launch)
        if seq == 0 and self.size_launches:
            steps = sized_steps(launch.median_ms, self.settings.steps)
            self.settings = dataclasses.replace(self.settings, steps=steps)
        if self.on_launch is not None:
            self.on_launch(launch)
        return launch

    def _samples(self, side: str, figure: Figure) -> list[float]:
        if side == BASE and self.base is None:
            return list(self.base_samples if figure == "wall" else self.base_cpu_samples)
        return launch_samples(self._launches, side, figure) or []

    def _figure(self) -> Figure:
        return choose_figure(self._launches, self._load, self.base_cpu_samples,
                             stored_base=self.base is None)

    def run(self, rule: DecisionRule, plan: LaunchPlan) -> SequentialResult:
        rng = random.Random(self.seed)
        look_rule = rule.per_look(plan.looks)
        decisions: list[Decision] = []
        if self.measure_load:
            # Before the first launch: what the rest of the machine does with nothing of ours
            # running (a one-second look at /proc/stat, and the load average).
            self._load = load_mod.RunnerLoad(load_mod.probe_others())
        for number, per_side in enumerate(plan.rounds()):
            if number and self.renew_launchers is not None:
                self.renew_launchers()
            order = [HEAD] * per_side if self.base is None else abba_order(per_side, rng)
            for name in order:
                side = self.head if name == HEAD else self.base
                assert side is not None
                self._run_one(side)
            # Interleaved launches are analysed as ABBA pairs; stored samples as a second sample.
            figure = self._figure()
            decision = decide(self._samples(BASE, figure), self._samples(HEAD, figure), look_rule,
                              paired=self.base is not None, figure=figure)
            doubt = "" if self.base is not None else unpaired_doubt(
                decision, len(self.base_samples), self.base_busy, self._load.busy)
            if doubt:
                decision = dataclasses.replace(decision, outcome="undecided", withheld=doubt)
            decisions.append(decision)
            if self.on_decision is not None:
                self.on_decision(decision)
            # A withheld decision stops too: more launches measure the same mismatch.
            if decision.decided or doubt:
                break
        return SequentialResult(launches=tuple(self._launches), decisions=tuple(decisions),
                                load=self._load,
                                steps=self.settings.steps if self.size_launches else None)
