"""Running the original and its rewritten versions interleaved, one process per launch.

A launch is measured exactly as a gate launch is (`perftune.capture.parent.measure.capture_side`: warm-up
discarded, median of the steady steps). The versions take turns in palindromic blocks — a
random order, then the same order reversed (ABBA for two versions) — so that a shared machine
slowing down or speeding up during the run hits every version alike and cancels out of each
pair of blocks.

The measurement is sequential: every version runs FIRST_LOOK launches, then one palindromic
block (two launches) at a time up to `--launches`, and a version whose verdict is decided
(`perftune.fix.verify.speed_decided`: faster, slower, or at most 2 % slower — kept either way —
at the confidence split over the looks) is not launched again. A clear rewrite costs FIRST_LOOK
launches, an unclear one `--launches`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perftune.analysis.stats import per_look_confidence
from perftune.capture.parent.measure import (
    MeasureSettings,
    Side,
    capture_side,
    log_tail,
    started_by,
)
from perftune.errors import ScriptError
from perftune.fix.verify import losses_by_step, speed_decided
from perftune.rundir import OUTPUT_LOG, RunDir

BASE = "base"
# Launches per version before the first look: two pairs give an interval with one degree of
# freedom (a t quantile of ~25 at 97.5 %), too wide to decide anything; three give two.
FIRST_LOOK = 3


@dataclass(frozen=True)
class Arm:
    """One version of the code: the original (key "base") or a set of rewrites."""

    key: str
    side: Side
    rewrites: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArmLaunch:
    arm: str
    seq: int
    block: int
    status: str
    median_ms: float | None
    peak_memory_bytes: int | None
    memory_kind: str
    losses: tuple[float | None, ...]  # position k: the loss of step k (losses_by_step)
    run_dir: Path
    error: str | None = None
    # Warning lines the launch printed (Python's "file:line: SomeWarning: text" form).
    warnings: tuple[str, ...] = ()
    step_source: str = ""  # the step detector that numbered the steps (steps.json)
    seeded: bool | None = None  # the script called torch.manual_seed (None: unknown)
    # "zygote": forked from a zygote that imported torch once; "fresh": a new python.
    started_by: str = "fresh"

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.median_ms is not None and self.median_ms > 0


@dataclass
class Measurements:
    launches: list[ArmLaunch] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # arm -> why it was dropped

    def of(self, key: str) -> list[ArmLaunch]:
        return [launch for launch in self.launches if launch.arm == key and launch.ok]

    def paired_medians(self, key: str) -> tuple[list[float], list[float]]:
        """(base, arm) launch medians of the blocks where both ran."""
        base: dict[int, list[float]] = {}
        arm: dict[int, list[float]] = {}
        for launch in self.launches:
            if not launch.ok or launch.median_ms is None:
                continue
            if launch.arm == BASE:
                base.setdefault(launch.block, []).append(launch.median_ms)
            elif launch.arm == key:
                arm.setdefault(launch.block, []).append(launch.median_ms)
        xs: list[float] = []
        ys: list[float] = []
        for block in sorted(set(base) & set(arm)):
            n = min(len(base[block]), len(arm[block]))
            xs += base[block][:n]
            ys += arm[block][:n]
        return xs, ys


def palindrome_blocks(keys: Sequence[str], launches: int, rng: random.Random) -> list[list[str]]:
    """Launch order in blocks: each block is a random order then its reverse, so every version
    runs `launches` times; an odd count ends with one forward pass."""
    blocks: list[list[str]] = []
    for _ in range(launches // 2):
        order = list(keys)
        rng.shuffle(order)
        blocks.append(order + order[::-1])
    if launches % 2:
        order = list(keys)
        rng.shuffle(order)
        blocks.append(order)
    return blocks


_WARNING = re.compile(r"\b(\w*Warning): (.+)$")


def warning_lines(text: str) -> tuple[str, ...]:
    """The warnings in a launch's output, as 'Category: message' without the file and line
    (which differ between the original and a rewritten copy)."""
    found = []
    for line in text.splitlines():
        match = _WARNING.search(line)
        if match:
            found.append(f"{match.group(1)}: {match.group(2).strip()}")
    return tuple(dict.fromkeys(found))


def _warnings(run_dir: Path) -> tuple[str, ...]:
    try:
        return warning_lines(RunDir(run_dir).file(OUTPUT_LOG).read_text(errors="replace"))
    except OSError:
        return ()


def new_warnings(base: Sequence[ArmLaunch], arm: Sequence[ArmLaunch]) -> tuple[str, ...]:
    """Warnings every launch of the rewritten version printed and no original launch did: the
    library complaining about the rewrite on every run (pin_memory=True with no GPU)."""
    if not arm:
        return ()
    known = {w for launch in base for w in launch.warnings}
    common = set(arm[0].warnings)
    for launch in arm[1:]:
        common &= set(launch.warnings)
    return tuple(w for w in arm[0].warnings if w in common and w not in known)


def _launch(arm: Arm, seq: int, block: int, run_dir: Path,
            settings: MeasureSettings, launchers: Mapping[str, Any] | None = None) -> ArmLaunch:
    launcher = (launchers or {}).get(arm.key)
    command = launcher.command() if launcher is not None and launcher.alive() else None
    result = capture_side(arm.side, run_dir, settings, profile=False, launcher=command)
    if result.status == "interrupted":
        raise KeyboardInterrupt
    median = result.median_step_ms() if result.ok else None
    status, error = result.status, result.error
    if result.ok and not median:
        status, error = "no-steps", "measured no steps after the warm-up"
    return ArmLaunch(arm=arm.key, seq=seq, block=block, status=status, median_ms=median,
                     peak_memory_bytes=result.peak_memory_bytes, memory_kind=result.memory_kind,
                     losses=losses_by_step([(step.index, step.loss) for step in result.steps]),
                     run_dir=run_dir, error=error, warnings=_warnings(run_dir),
                     step_source=result.step_source, seeded=result.seeded,
                     started_by=started_by(result.meta))


LaunchFn = Callable[[Arm, int, int, Path, MeasureSettings], ArmLaunch]


def run_interleaved(arms: Sequence[Arm], launches: int, launch_root: Path,
                    settings: MeasureSettings, seed: int | None = None,
                    on_launch: Callable[[ArmLaunch], None] | None = None,
                    into: Measurements | None = None, first_block: int = 0,
                    launch: LaunchFn | None = None,
                    launchers: Mapping[str, Any] | None = None) -> Measurements:
    """Launch every arm `launches` times in palindromic blocks.

    The original failing is the user's script failing: ScriptError. A rewritten version that
    fails is dropped from later blocks and recorded in `failed`.
    """
    by_key: Mapping[str, Arm] = {arm.key: arm for arm in arms}
    found = into if into is not None else Measurements()
    rng = random.Random(seed)
    seq = len(found.launches)
    for number, order in enumerate(palindrome_blocks(list(by_key), launches, rng),
                                   start=first_block):
        for key in order:
            if key in found.failed:
                continue
            run_dir = launch_root / f"{seq:03d}-{key}"
            done = (launch(by_key[key], seq, number, run_dir, settings) if launch is not None
                    else _launch(by_key[key], seq, number, run_dir, settings, launchers))
            seq += 1
            found.launches.append(done)
            if on_launch is not None:
                on_launch(done)
            if done.ok:
                continue
            why = f"{done.status}: {done.error}" if done.error else done.status
            if key == BASE:
                raise ScriptError(f"the original script's launch failed ({why}); run dir "
                                  f"{run_dir}" + log_tail(run_dir))
            found.failed[key] = f"the rewritten script failed ({why}); see {run_dir}/output.log"
    return found


def launch_rounds(max_launches: int) -> list[int]:
    """Launches per version added at each look: FIRST_LOOK, then two (a palindromic block) at
    a time up to `max_launches`: [3, 2, 1] for 6, [3, 1] for 4, [2] for 2."""
    sizes = [min(FIRST_LOOK, max_launches)]
    while sum(sizes) < max_launches:
        sizes.append(min(2, max_launches - sum(sizes)))
    return sizes


@dataclass(frozen=True)
class Sequential:
    """What the sequential measurement did: the launches, the confidence of each look, and
    after how many launches each version was decided (None: measured to the end)."""

    found: Measurements
    confidence: float
    decided_after: dict[str, int | None]
    looks: int


def run_sequential(arms: Sequence[Arm], max_launches: int, launch_root: Path,
                   settings: MeasureSettings, confidence: float, seed: int | None = None,
                   on_launch: Callable[[ArmLaunch], None] | None = None,
                   into: Measurements | None = None,
                   launch: LaunchFn | None = None,
                   launchers: Mapping[str, Any] | None = None,
                   require_faster: bool = False,
                   renew_launchers: Callable[[], None] | None = None) -> Sequential:
    """Measure the versions against the original (arms[0], key BASE) round by round, stopping
    for each version once its verdict is decided, and for all once every one is."""
    rounds = launch_rounds(max_launches)
    look = per_look_confidence(confidence, len(rounds))
    found = into if into is not None else Measurements()
    undecided = [arm for arm in arms if arm.key != BASE]
    decided_after: dict[str, int | None] = {arm.key: None for arm in undecided}
    base = next(arm for arm in arms if arm.key == BASE)
    total = 0
    for index, size in enumerate(rounds):
        if index and renew_launchers is not None:
            renew_launchers()  # new zygotes each round (ZygotePool)
        block = max((x.block for x in found.launches), default=-1) + 1
        run_interleaved([base, *undecided], size, launch_root, settings,
                        None if seed is None else seed + index, on_launch, into=found,
                        first_block=block, launch=launch, launchers=launchers)
        total += size
        still = []
        for arm in undecided:
            xs, ys = found.paired_medians(arm.key)
            if arm.key in found.failed or speed_decided(xs, ys, look, require_faster):
                decided_after[arm.key] = total
            else:
                still.append(arm)
        undecided = still
        if not undecided:
            break
    return Sequential(found, look, decided_after, len(rounds))


def launch_seconds(step_ms: float | None, setup_s: float | None,
                   settings: MeasureSettings) -> float | None:
    """About how long one launch takes: starting the script (`setup_s`: Python, imports, the
    script's own setup, as the profile run showed) plus its warm-up and measured steps."""
    if step_ms is None or setup_s is None:
        return None
    return setup_s + (settings.warmup + settings.steps) * step_ms / 1000.0
