"""One measured launch of a script: the A/B step-time measurement the gate and fix share.

A launch is one process run with capture and profiling off (warm-up discarded, the median of
the steady steps is its figure). The gate interleaves base and head launches
(perftune.gate.runner), fix interleaves the original with each rewrite (perftune.fix.measure);
both measure a launch here, so a gate and a fix of the same script measure alike.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perftune import _signals
from perftune.errors import ScriptError, UsageError
from perftune.rundir import OUTPUT_LOG, RunDir

if TYPE_CHECKING:
    from perftune.capture.parent.runner import CaptureResult, ScriptTarget

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
    seed: int | None = None  # seeds torch, random and numpy in the child before the script runs


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
class Launch:
    """One measured process."""

    side: str
    seq: int
    median_ms: float
    measured_steps: int
    run_dir: Path
    wall_s: float
    peak_memory_bytes: int | None = None
    # Median CPU time (user + sys) of the measured steps: the figure a busy runner barely
    # moves; None when the steps did not record it.
    median_cpu_ms: float | None = None
    # What else ran on the machine during the launch (perftune.gate.load), when measured.
    load: Any = field(default=None, compare=False)
    # meta.json of the launch (interpreter, torch/CUDA, devices) for the fingerprint.
    meta: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # "zygote": forked from a side's pre-imported zygote; "fresh": a new python process.
    started_by: str = "fresh"


def log_tail(run_dir: Path) -> str:
    """The last lines of a launch's output.log (the script's own error), as a message's end."""
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
            + log_tail(result.run_dir))
    median = result.median_step_ms()
    if median is None or not median > 0:
        raise ScriptError(
            f"{what} launch measured no steps after the warm-up; run more steps or lower "
            f"--warmup; run dir {result.run_dir}" + log_tail(result.run_dir))
    return float(median)


def capture_side(side: Side, run_dir: Path, settings: MeasureSettings, *, profile: bool,
                 active: int | None = None,
                 launcher: Sequence[str] | None = None) -> CaptureResult:
    """Run one process of `side` with capture (profiling on for explaining, off for timing).

    `launcher`: a ZygoteLauncher's command (perftune.capture.parent.launcher) to fork the
    process from a zygote that imported torch once, instead of starting a fresh python.
    """
    # Imported here: capture is the package that may pull in torch, and `perftune gate
    # --help` or a config error should not pay for it.
    from perftune.capture.parent.runner import CaptureOptions, run_capture

    options = CaptureOptions(
        skip=settings.warmup,
        active=active if active is not None else settings.steps,
        profile=profile,
        knobs=dict(side.knobs),
        timeout_s=settings.timeout_s,
        env=dict(side.env),
        seed=side.seed,
        quiet=True,
        launcher=launcher,
    )
    return run_capture(side.target, run_dir, options)


def measure_launch(side: Side, seq: int, run_dir: Path, settings: MeasureSettings,
                   launcher: Sequence[str] | None = None) -> Launch:
    started = time.monotonic()
    signals = _signals.count()
    result = capture_side(side, run_dir, settings, profile=False, launcher=launcher)
    if _signals.count() != signals:
        # Ctrl-C or a cancelled CI job arrived while a launch that had already finished its
        # steps was ending (the child then reports ok): unwind the whole gate all the same.
        raise KeyboardInterrupt
    median = check_measured(result, side)
    return Launch(
        side=side.name,
        seq=seq,
        median_ms=median,
        measured_steps=len(result.measured()),
        run_dir=run_dir,
        wall_s=time.monotonic() - started,
        peak_memory_bytes=result.peak_memory_bytes,
        median_cpu_ms=result.median_cpu_ms(),
        meta=dict(result.meta),
        started_by=started_by(result.meta),
    )


def started_by(meta: Mapping[str, Any]) -> str:
    """"zygote" when the launch was forked from a zygote, else "fresh"."""
    launch = meta.get("launch")
    if isinstance(launch, Mapping) and launch.get("launcher") == "zygote":
        return "zygote"
    return "fresh"


class ZygotePool(dict[str, Any]):
    """Side name -> the zygote (perftune.capture.parent.launcher.ZygoteLauncher) its launches
    are forked from: one per side, or with `share_identical` one per distinct (working
    directory, environment) — fix's versions differ only in the script file each runs, which a
    fork imports fresh. Empty when a zygote could not start (`notes` says why): then every
    launch is a fresh process.

    Forks of one zygote share its address-space layout (ASLR, heap), which can shift step time
    by a few percent for the zygote's whole life; a fresh process draws a new layout every
    launch. So that one side's layout luck does not persist through a whole comparison,
    `renew()` replaces every zygote (the sequential measurements call it before each round of
    launches after the first).
    """

    def __init__(self, sides: Sequence[Side], run_dir: Path, notes: list[str],
                 share_identical: bool = False) -> None:
        super().__init__()
        self.sides = list(sides)
        self.run_dir = run_dir
        self.notes = notes
        self.share_identical = share_identical
        self.failed = False
        self.renewals = 0
        self._started: list[Any] = []
        self._by_key: dict[Any, Any] = {}

    def _key(self, side: Side) -> Any:
        if self.share_identical:
            return (str(Path(side.target.cwd)), tuple(sorted(side.env.items())))
        return side.name

    def _attach(self, sides: Sequence[Side]) -> bool:
        """Map each side to its zygote, starting those not running for their key yet: all
        spawned first, then waited for, so that they import torch side by side."""
        from perftune.capture.parent.launcher import ZygoteError, ZygoteLauncher

        fresh: list[Any] = []
        try:
            for side in sides:
                key = self._key(side)
                if key not in self._by_key:
                    launcher = ZygoteLauncher(self.run_dir / "zygote" / side.name,
                                              Path(side.target.cwd),
                                              env={**os.environ, **side.env})
                    self._started.append(launcher)
                    launcher.spawn()
                    self._by_key[key] = launcher
                    fresh.append(launcher)
            for launcher in fresh:
                launcher.wait_ready()
        except ZygoteError as exc:
            self.notes.append(f"{exc}; every launch runs as a fresh process")
            self.failed = True
            self.stop()
            return False
        for side in sides:
            self[side.name] = self._by_key[self._key(side)]
        return True

    def start(self) -> None:
        self._attach(self.sides)

    def add(self, side: Side) -> None:
        """One more side, forked from a running zygote of its key or a new one."""
        self.sides.append(side)
        if self and not self.failed:
            self._attach([side])

    def renew(self) -> None:
        """New zygotes for every side (see the class docstring)."""
        if self.failed or not self:
            return
        self.stop()
        self.renewals += 1
        self.start()

    def stop(self) -> None:
        started, self._started = self._started, []
        self.clear()
        self._by_key = {}
        for launcher in started:
            launcher.stop()


@contextlib.contextmanager
def side_zygotes(sides: Sequence[Side], run_dir: Path, enabled: bool, notes: list[str], *,
                 share_identical: bool = False) -> Iterator[ZygotePool]:
    """A started ZygotePool of `sides` for exactly as long as the `with` lasts, Ctrl-C and
    errors too (empty when not `enabled`)."""
    pool = ZygotePool(sides, run_dir, notes, share_identical)
    try:
        if enabled:
            pool.start()
        yield pool
    finally:
        pool.stop()


def forked_note(started_by: Sequence[str], reused: bool) -> str | None:
    """How the launches were started, when they were meant to be forked from zygotes."""
    if not reused or not started_by:
        return None
    forked = sum(1 for how in started_by if how == "zygote")
    if forked == len(started_by):
        return ("each launch was forked from a zygote that had imported torch once, new "
                "zygotes for each round of launches (--no-reuse: fresh processes)")
    return (f"{forked} of {len(started_by)} launches were forked from a zygote, the others "
            "started fresh (the zygote could not take them; see RUN_DIR/zygote/*/zygote.log)")
