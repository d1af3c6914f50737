"""Running the original and its rewritten versions interleaved, one process per launch.

A launch is measured exactly as a gate launch is (`perftune.capture.parent.measure.capture_side`: warm-up
discarded, median of the steady steps). The versions take turns in palindromic blocks — a
random order, then the same order reversed (ABBA for two versions) — so that a shared machine
slowing down or speeding up during the run hits every version alike and cancels out of each
pair of blocks.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from perftune.capture.parent.measure import MeasureSettings, Side, capture_side, log_tail
from perftune.errors import ScriptError
from perftune.fix.verify import losses_by_step
from perftune.rundir import OUTPUT_LOG, RunDir

BASE = "base"


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
            settings: MeasureSettings) -> ArmLaunch:
    result = capture_side(arm.side, run_dir, settings, profile=False)
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
                     step_source=result.step_source, seeded=result.seeded)


def run_interleaved(arms: Sequence[Arm], launches: int, launch_root: Path,
                    settings: MeasureSettings, seed: int | None = None,
                    on_launch: Callable[[ArmLaunch], None] | None = None,
                    into: Measurements | None = None, first_block: int = 0) -> Measurements:
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
            launch = _launch(by_key[key], seq, number, run_dir, settings)
            seq += 1
            found.launches.append(launch)
            if on_launch is not None:
                on_launch(launch)
            if launch.ok:
                continue
            why = f"{launch.status}: {launch.error}" if launch.error else launch.status
            if key == BASE:
                raise ScriptError(f"the original script's launch failed ({why}); run dir "
                                  f"{run_dir}" + log_tail(run_dir))
            found.failed[key] = f"the rewritten script failed ({why}); see {run_dir}/output.log"
    return found
