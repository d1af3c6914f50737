"""Launching base and head interleaved, and adding launches until the data decide.

Each launch is one process measured like `perftune profile` (capture with profiling off:
warm-up discarded, median of the steady steps); the per-launch medians are the samples. Steps
of one launch are not independent (they share the process, its allocator state, its CPU
frequency), so they are never pooled across launches.

Launches alternate in randomised ABBA blocks: slow drift of a shared runner (a neighbour job
starting, thermal throttling) then hits both sides alike instead of biasing one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perftune.errors import ScriptError, UsageError
from perftune.gate.decision import Decision, DecisionRule, decide
from perftune.rundir import OUTPUT_LOG, RunDir

if TYPE_CHECKING:
    from perftune.capture.runner import CaptureResult, ScriptTarget

DEFAULT_LAUNCHES = 6
BASE = "base"
HEAD = "head"
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class Side:
    """One side of the comparison: a script (in a worktree or the checkout) and its knobs."""

    name: str
    target: ScriptTarget
    label: str = ""
    knobs: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MeasureSettings:
    """How one launch is measured."""

    warmup: int = 5
    steps: int = 10
    timeout_s: float | None = 900.0

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise UsageError(f"--warmup must be >= 0, got {self.warmup}")
        if self.steps < 1:
            raise UsageError(f"--steps must be >= 1, got {self.steps}")


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
class Launch:
    """One measured process."""

    side: str
    seq: int
    median_ms: float
    measured_steps: int
    run_dir: Path
    wall_s: float
    peak_memory_bytes: int | None = None
    # meta.json of the launch (interpreter, torch/CUDA, devices) for the fingerprint.
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


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


def _log_tail(run_dir: Path) -> str:
    log = RunDir(run_dir).file(OUTPUT_LOG)
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    tail = "\n".join(lines[-LOG_TAIL_LINES:])
    return f"\nlast lines of {log}:\n{tail}" if tail else ""


def check_measured(result: CaptureResult, side: Side) -> float:
    """The launch's median step time, or a ScriptError saying why there is none."""
    what = f"{side.name} ({side.label})" if side.label else side.name
    if result.status == "interrupted":
        # Ctrl-C or a cancelled CI job reached the child first; unwind the whole gate (and its
        # worktree) the same way.
        raise KeyboardInterrupt
    if not result.ok:
        detail = f": {result.error}" if result.error else ""
        code = f", exit code {result.exit_code}" if result.exit_code is not None else ""
        raise ScriptError(
            f"{what} launch failed ({result.status}{code}){detail}; run dir {result.run_dir}"
            + _log_tail(result.run_dir))
    median = result.median_step_ms()
    if median is None or not median > 0:
        raise ScriptError(
            f"{what} launch measured no steps after the warm-up; run more steps or lower "
            f"--warmup; run dir {result.run_dir}" + _log_tail(result.run_dir))
    return float(median)


def capture_side(side: Side, run_dir: Path, settings: MeasureSettings, *, profile: bool,
                 active: int | None = None) -> CaptureResult:
    """Run one process of `side` with capture (profiling on for explaining, off for timing)."""
    # Imported here: capture is the package that may pull in torch, and `perftune gate
    # --help` or a config error should not pay for it.
    from perftune.capture.runner import CaptureOptions, run_capture

    options = CaptureOptions(
        skip=settings.warmup,
        active=active if active is not None else settings.steps,
        profile=profile,
        knobs=dict(side.knobs),
        timeout_s=settings.timeout_s,
        env=dict(side.env),
        quiet=True,
    )
    return run_capture(side.target, run_dir, options)


def measure_launch(side: Side, seq: int, run_dir: Path, settings: MeasureSettings) -> Launch:
    started = time.monotonic()
    result = capture_side(side, run_dir, settings, profile=False)
    median = check_measured(result, side)
    return Launch(
        side=side.name,
        seq=seq,
        median_ms=median,
        measured_steps=len(result.measured()),
        run_dir=run_dir,
        wall_s=time.monotonic() - started,
        peak_memory_bytes=result.peak_memory_bytes,
        meta=dict(result.meta),
    )


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
