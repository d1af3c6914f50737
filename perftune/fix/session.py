"""`perftune fix` from start to end: findings → candidates → measured, checked rewrites → patch.

Every version of the code (the original included) runs from its own copy of the project, with
the same seed, interleaved with the others; the original's own files are only touched by
`apply_patch` (`--apply`), after the measurement, and only when git says they are unchanged.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from perftune.capture.parent.measure import (
    MeasureSettings,
    Side,
    ZygotePool,
    forked_note,
    side_zygotes,
)
from perftune.capture.parent.runner import ScriptTarget
from perftune.engine.types import Finding
from perftune.errors import UsageError
from perftune.fix.apply import apply_diff
from perftune.fix.diffs import parse_unified_diff
from perftune.fix.measure import (
    BASE,
    Arm,
    ArmLaunch,
    Measurements,
    launch_rounds,
    launch_seconds,
    new_warnings,
    run_sequential,
)
from perftune.fix.plan import Candidate, Plan, compatible_set, conflicts_of, make_plan
from perftune.fix.verify import (
    DIFFERS,
    SLOWER_MEASURED,
    UNKNOWN,
    LossCheck,
    MemoryCheck,
    SpeedCheck,
    Tolerance,
    Verdict,
    baseline_reproducible,
    compare_losses,
    compare_speed,
    judge,
    launches_to_settle,
    typical_memory,
)
from perftune.fix.workspace import (
    Project,
    copy_project,
    find_project,
    git_dirty_files,
    import_roots,
    module_root,
    write_texts,
)

ALL = "all"
CHOSEN = "chosen"
# What starting a launch forked from a zygote costs beyond the script's own setup and steps
# (the client, the fork, perftune's capture set-up, writing steps.json), about, on a quiet
# 2-core machine.
FORKED_START_S = 0.6


@dataclass(frozen=True)
class FixSettings:
    warmup: int = 5  # steps discarded at the start of each launch
    steps: int = 10  # steps measured per launch
    launches: int = 4  # launches per version at most (fewer once its verdict is decided)
    tolerance: Tolerance = field(default_factory=Tolerance)
    seed: int = 0
    confidence: float = 0.95
    timeout_s: float | None = 900.0
    select: tuple[str, ...] = ()
    require_faster: bool = False
    # Fork launches from zygotes that imported torch once (one per distinct working directory
    # and environment of the versions) instead of starting a fresh python for each.
    reuse_processes: bool = True

    def __post_init__(self) -> None:
        if self.launches < 1:
            raise UsageError(f"--launches must be at least 1, got {self.launches}")
        if self.tolerance.rtol < 0 or self.tolerance.atol < 0:
            raise UsageError("--rtol and --atol must not be negative")
        if self.tolerance.steps < 1:
            raise UsageError(f"--check-steps must be at least 1, got {self.tolerance.steps}")


@dataclass(frozen=True)
class FixTarget:
    """The script to fix, how it is run, and what the analysis found in it."""

    script: Path  # absolute; with `module`, the module's source file
    args: tuple[str, ...]
    cwd: Path
    findings: tuple[Finding, ...]
    roots: tuple[Path, ...] = ()  # where relative finding paths are looked up
    # Findings read from a run directory: their diffs are not trusted, the rewrites are made
    # again on the current source (perftune.fix.regen).
    regenerate: bool = False
    # From the profile run, for the expected time of the measurement: the median step time
    # and the seconds a launch takes beyond its steps (Python, imports, the script's setup).
    step_ms: float | None = None
    setup_s: float | None = None
    # Of setup_s, the seconds outside the script: starting Python, importing perftune and
    # torch (a launch forked from a zygote skips them).
    start_s: float | None = None
    module: str | None = None  # run as `python -m module` (its file is `script`)


@dataclass(frozen=True)
class Measured:
    """What one version did against the original."""

    key: str
    rewrites: tuple[str, ...]
    speed: SpeedCheck
    memory: MemoryCheck
    losses: LossCheck
    verdict: Verdict


@dataclass(frozen=True)
class RewriteResult:
    candidate: Candidate
    measured: Measured
    conflicts: tuple[str, ...] = ()


@dataclass(frozen=True)
class FixOutcome:
    plan: Plan
    settings: FixSettings
    target: FixTarget
    rewrites: tuple[RewriteResult, ...]
    combined: Measured | None  # the chosen rewrites measured together (two or more)
    chosen: tuple[str, ...]
    patch: str
    baseline_ms: float | None
    baseline_memory: int | None
    memory_kind: str
    reproducible: LossCheck | None
    launches: tuple[ArmLaunch, ...]
    notes: tuple[str, ...] = ()
    # Every compatible rewrite together, as first measured (None with fewer than two).
    all_together: Measured | None = None

    def result(self, rewrite_id: str) -> RewriteResult:
        return next(r for r in self.rewrites if r.candidate.id == rewrite_id)

    @property
    def chosen_measure(self) -> Measured | None:
        """The measurement that stands for the patch as a whole."""
        if self.combined is not None and set(self.combined.rewrites) == set(self.chosen):
            return self.combined
        if len(self.chosen) == 1:
            return self.result(self.chosen[0]).measured
        return None


Progress = Callable[[str], None]


def plan_for(target: FixTarget, select: Sequence[str] = ()) -> Plan:
    project = find_project(target.script)
    if target.module is not None and not project.git:
        # Without git, the project is the folder the module resolves from (its packages too).
        project = Project(module_root(target.module, target.script), False)
    roots = (*target.roots, target.cwd, target.script.parent)
    return make_plan(target.findings, project, target.script, roots, select,
                     regenerate=target.regenerate)


# ---------------------------------------------------------------------------- workspaces
@dataclass
class _Workspaces:
    plan: Plan
    target: FixTarget
    settings: FixSettings
    temp: Path
    arms: dict[str, Arm] = field(default_factory=dict)

    def env(self, copy_root: Path) -> dict[str, str]:
        touched = [f for c in self.plan.candidates for f in c.files]
        extra = [str(copy_root / rel) for rel in import_roots(self.plan.project, self.plan.script,
                                                                touched)]
        if self.target.module is not None:
            # `python -m` finds the module through sys.path: the copy's comes first.
            root = module_root(self.target.module, self.plan.project.root / self.plan.script)
            extra.insert(0, str(copy_root / root.relative_to(self.plan.project.root)))
        env = {"PYTHONHASHSEED": str(self.settings.seed)}
        if extra:
            existing = os.environ.get("PYTHONPATH")
            env["PYTHONPATH"] = os.pathsep.join([*extra, *([existing] if existing else [])])
        return env

    def launched(self, copy_root: Path) -> ScriptTarget:
        """What one version runs: the copy's script, or the module from the copy.

        A module is run in the copy's counterpart of the working directory when that lies in
        the project (sys.path[0] of `python -m` is the working directory, which would find the
        original first); relative paths the script opens resolve there to the same files."""
        target = self.target
        if target.module is None:
            return ScriptTarget(path=copy_root / self.plan.script, args=target.args,
                                cwd=target.cwd)
        cwd = target.cwd.resolve()
        if cwd.is_relative_to(self.plan.project.root):
            cwd = copy_root / cwd.relative_to(self.plan.project.root)
        return ScriptTarget(module=target.module, args=target.args, cwd=cwd)

    def add(self, key: str, ids: Sequence[str]) -> Arm:
        # Same-length folder names keep file paths (and so tracebacks, __file__) alike in size.
        root = self.temp / f"{len(self.arms):03d}"
        touched = sorted(self.plan.originals)
        copy_project(self.plan.project, root, real_copies=touched)
        write_texts(root, {**self.plan.originals, **self.plan.texts(ids)})
        side = Side(name=key, target=self.launched(root),
                    label=",".join(ids) or "original", env=self.env(root), seed=self.settings.seed)
        arm = Arm(key=key, side=side, rewrites=tuple(ids))
        self.arms[key] = arm
        return arm


# ---------------------------------------------------------------------------- judging
# steps.json's step_source when no step boundary was seen: fixed time slices.
TIME_SLICES = "time-window"


def not_comparable(base: ArmLaunch) -> str | None:
    """Why the losses of this script's steps cannot be compared between runs, if they cannot."""
    if base.step_source == TIME_SLICES:
        return ("the steps are time slices (perftune saw no optimizer step, backward() or "
                "module call), so step k of two runs does not hold the same work; call "
                "perftune.step() once per iteration to compare losses")
    return None


def unreproducible_reason(base_launches: Sequence[ArmLaunch]) -> str:
    """Why two runs of the unchanged script gave different losses: never "seed it" to a script
    that seeds."""
    if any(launch.seeded for launch in base_launches):
        return ("two runs of the unchanged script gave different losses although it seeds torch "
                "(torch.manual_seed): something else differs between runs (DataLoader workers "
                "or numpy/random without a seed, data read in a varying order, nondeterministic "
                "kernels); make it deterministic for this check")
    return ("two runs of the unchanged script gave different losses and it never calls "
            "torch.manual_seed; seed it for this check")


def _losses_against(base: ArmLaunch, launches: Sequence[ArmLaunch], tol: Tolerance,
                    reproducible: LossCheck | None,
                    base_launches: Sequence[ArmLaunch] = ()) -> LossCheck:
    head = tuple(base.losses[:tol.steps])
    why = not_comparable(base)
    if why is not None:
        return LossCheck(UNKNOWN, 0, None, None, None, head, (), why)
    if reproducible is not None and reproducible.status == DIFFERS:
        return LossCheck(UNKNOWN, 0, None, None, None, head, (),
                         unreproducible_reason(base_launches or (base,)))
    if not launches:
        return LossCheck(UNKNOWN, 0, None, None, None, head, (), "no launch finished")
    checks = []
    for launch in launches:
        if launch.step_source != base.step_source:
            checks.append(LossCheck(
                UNKNOWN, 0, None, None, None, head, tuple(launch.losses[:tol.steps]),
                f"the original's steps were found by {base.step_source}, this version's by "
                f"{launch.step_source}: step k is not the same work"))
            continue
        checks.append(compare_losses(base.losses, launch.losses, tol))
    return next((c for c in checks if c.status == DIFFERS), checks[0])


def _measured(key: str, arm: Arm, found: Measurements, base_ref: ArmLaunch,
              reproducible: LossCheck | None, settings: FixSettings, applicability: str,
              memory_kind: str, base_memory: int | None) -> Measured:
    xs, ys = found.paired_medians(key)
    speed = compare_speed(xs, ys, settings.confidence)
    launches = found.of(key)
    memory = MemoryCheck(base_memory, typical_memory([x.peak_memory_bytes for x in launches]),
                         memory_kind)
    losses = _losses_against(base_ref, launches, settings.tolerance, reproducible,
                             found.of(BASE))
    warnings = new_warnings(found.of(BASE), launches) if key != BASE else ()
    verdict = judge(losses, speed, applicability, require_faster=settings.require_faster,
                    failed=found.failed.get(key), warnings=warnings)
    return Measured(key, arm.rewrites, speed, memory, losses, verdict)


def _applicability(candidates: Sequence[Candidate]) -> str:
    return "safe" if all(c.applicability == "safe" for c in candidates) else "unsafe"


# ---------------------------------------------------------------------------- the run
def verify_rewrites(plan: Plan, target: FixTarget, settings: FixSettings, run_dir: Path,
                    progress: Progress | None = None) -> FixOutcome:
    """Measure every candidate alone and the compatible ones together; choose the patch."""
    say = progress or (lambda _text: None)
    empty = FixOutcome(plan, settings, target, (), None, (), "", None, None, "rss", None, ())
    if not plan.candidates:
        return empty
    temp = Path(tempfile.mkdtemp(prefix="perftune-fix-"))
    try:
        return _verify(plan, target, settings, run_dir, say, temp)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def per_launch_estimate(target: FixTarget, forked: bool, measure: MeasureSettings) -> float | None:
    """About how long one measured launch takes, from the profile run; a launch forked from a
    zygote does not repeat the start-up outside the script (Python, perftune, torch)."""
    setup_s = target.setup_s
    if forked and setup_s is not None and target.start_s is not None:
        setup_s = max(0.0, setup_s - target.start_s) + FORKED_START_S
    return launch_seconds(target.step_ms, setup_s, measure)


def one_zygote(sides: Sequence[Side]) -> bool:
    """Whether every version can fork from one zygote: the same working directory and
    environment (import paths), so that all forks share its memory layout alike."""
    return len({(str(side.target.cwd), tuple(sorted(side.env.items()))) for side in sides}) <= 1


def zygote_start_s(target: FixTarget, settings: FixSettings) -> float:
    """Starting the zygotes costs about what a fresh start does (Python, perftune, torch)."""
    return (target.start_s or 0.0) if settings.reuse_processes else 0.0


def _verify(plan: Plan, target: FixTarget, settings: FixSettings, run_dir: Path,
            say: Progress, temp: Path) -> FixOutcome:
    spaces = _Workspaces(plan, target, settings, temp)
    arms = [spaces.add(BASE, ())]
    arms += [spaces.add(c.id, (c.id,)) for c in plan.candidates]
    together = [c.id for c in compatible_set(plan.candidates)]
    if len(together) >= 2:
        arms.append(spaces.add(ALL, together))
    measure = MeasureSettings(warmup=settings.warmup, steps=settings.steps,
                              timeout_s=settings.timeout_s)
    zygote_notes: list[str] = []
    if settings.reuse_processes and not one_zygote([arm.side for arm in arms]):
        # Forks of different zygotes can sit ~2 % apart (memory layout): the size of the
        # change a rewrite is judged on. Versions that need their own import paths run fresh.
        settings = dataclasses.replace(settings, reuse_processes=False)
        zygote_notes.append("every launch started as a fresh process: the versions import from "
                            "different paths, so they could not fork from one zygote (forks of "
                            "two zygotes can differ by ~2 %, the size of change judged here)")
    total = [len(arms) * settings.launches]  # launches at most, grows with the chosen set
    launch_root = run_dir / "launches"

    def show(launch: ArmLaunch) -> None:
        what = f"{launch.median_ms:.2f} ms/step" if launch.median_ms else launch.status
        say(f"launch {launch.seq + 1} (at most {total[0]}) {launch.arm}: {what}")

    per_launch = per_launch_estimate(target, settings.reuse_processes, measure)
    say(expected_time(len(arms), settings.launches, per_launch, zygote_start_s(target, settings)))
    started = time.monotonic()
    with side_zygotes([arm.side for arm in arms], run_dir, settings.reuse_processes,
                      zygote_notes, share_identical=True) as launchers:
        return _judge_all(plan, target, settings, run_dir, say, spaces, arms, together, measure,
                          launch_root, show, total, per_launch, started, launchers,
                          zygote_notes)


def _judge_all(plan: Plan, target: FixTarget, settings: FixSettings, run_dir: Path,
               say: Progress, spaces: _Workspaces, arms: list[Arm], together: list[str],
               measure: MeasureSettings, launch_root: Path, show: Callable[[ArmLaunch], None],
               total: list[int], per_launch: float | None, started: float, launchers: ZygotePool,
               zygote_notes: list[str]) -> FixOutcome:
    zygote_s = zygote_start_s(target, settings)
    sequential = run_sequential(arms, settings.launches, launch_root, measure,
                                settings.confidence, settings.seed, show, launchers=launchers,
                                require_faster=settings.require_faster,
                                renew_launchers=launchers.renew)
    found = sequential.found
    whole = settings.confidence
    # Every interval is read at the confidence of one look of the sequential test.
    settings = dataclasses.replace(settings, confidence=sequential.confidence)
    base_launches = found.of(BASE)
    base_ref = base_launches[0]
    reproducible: LossCheck | None = baseline_reproducible([b.losses for b in base_launches],
                                                           settings.tolerance)
    if not_comparable(base_ref) is not None:
        reproducible = None  # time slices: two runs' step k are different work
    memory_kind = base_launches[0].memory_kind
    base_memory = typical_memory([b.peak_memory_bytes for b in base_launches])

    def measured(key: str, candidates: Sequence[Candidate]) -> Measured:
        return _measured(key, spaces.arms[key], found, base_ref, reproducible, settings,
                         _applicability(candidates), memory_kind, base_memory)

    results = tuple(RewriteResult(c, measured(c.id, [c]),
                                  tuple(conflicts_of(c, plan.candidates)))
                    for c in plan.candidates)
    notes: list[str] = [measured_note(sequential.decided_after, len(found.launches),
                                      time.monotonic() - started, per_launch, len(arms),
                                      settings.launches, zygote_s), *zygote_notes]
    opened = [(key, *found.paired_medians(key)) for key, after
              in sequential.decided_after.items() if after is None and key not in found.failed]
    if opened:
        notes.append(open_note(opened, sequential.confidence, settings.launches, per_launch))
    forked = forked_note([x.started_by for x in found.launches],
                         settings.reuse_processes and not zygote_notes)
    if forked:
        notes.append(forked)
    why_not = not_comparable(base_ref)
    if why_not is not None:
        notes.append(f"losses were not compared: {why_not}")
    elif reproducible is not None and reproducible.status == DIFFERS:
        notes.append(f"losses were not compared: {unreproducible_reason(base_launches)}")
    accepted = sorted((r for r in results if r.measured.verdict.included),
                      key=lambda r: r.measured.speed.ratio or 1.0)
    chosen_set = compatible_set([r.candidate for r in accepted])
    chosen = tuple(c.id for c in chosen_set)
    all_together = (measured(ALL, plan.by_id(together)) if ALL in spaces.arms else None)
    combined: Measured | None = None
    if len(chosen) >= 2:
        if set(chosen) == set(together):
            combined = all_together
        else:
            spaces.add(CHOSEN, chosen)
            say(f"measuring the {len(chosen)} verified rewrites together; "
                + expected_time(2, settings.launches, per_launch, zygote_s))
            total[0] = len(found.launches) + 2 * settings.launches
            # The chosen set forks from a zygote already running for the same working
            # directory and environment, or a new one.
            launchers.add(spaces.arms[CHOSEN].side)
            run_sequential([spaces.arms[BASE], spaces.arms[CHOSEN]], settings.launches,
                           launch_root, measure, whole,
                           settings.seed + 100, show, into=found, launchers=launchers,
                           require_faster=settings.require_faster,
                           renew_launchers=launchers.renew)
            combined = measured(CHOSEN, chosen_set)
        if combined is None or not combined.verdict.included:
            best = accepted[0].candidate.id
            why = combined.verdict.reason if combined is not None else "not measured"
            notes.append(f"the verified rewrites together failed their check ({why}); the "
                         f"patch holds only the best one, {best}")
            chosen = (best,)
    patch = plan.patch(chosen)
    return FixOutcome(plan, settings, target, results, combined, chosen, patch,
                      _median([b.median_ms for b in base_launches]), base_memory, memory_kind,
                      reproducible, tuple(found.launches), tuple(notes), all_together)


def expected_span(versions: int, max_launches: int, per_launch_s: float,
                  zygote_s: float = 0.0) -> tuple[float, float]:
    """Seconds the launches take when every version is decided at the first look, and when
    none is before --launches: launches x per_launch_s, plus starting the zygotes (`zygote_s`,
    side by side) once, and again before every later round."""
    rounds = launch_rounds(max_launches)
    return (versions * rounds[0] * per_launch_s + zygote_s,
            versions * max_launches * per_launch_s + zygote_s * len(rounds))


def expected_time(versions: int, max_launches: int, per_launch_s: float | None,
                  zygote_s: float = 0.0) -> str:
    """The line said before the launches start: how many, and about how long."""
    rounds = launch_rounds(max_launches)
    low, high = versions * rounds[0], versions * max_launches
    text = (f"measuring the original and {versions - 1} rewritten version(s): {rounds[0]} "
            f"launches each, up to {max_launches} for a version whose verdict is still open "
            f"({low}–{high} launches")
    if per_launch_s is None:
        return text + ")"
    fast, slow = expected_span(versions, max_launches, per_launch_s, zygote_s)
    return (text + f", ~{per_launch_s:.0f} s each: expect {_minutes(fast)} to "
            f"{_minutes(slow)})")


SETTLE_LIMIT = 1000


def open_note(opened: Sequence[tuple[str, Sequence[float], Sequence[float]]], confidence: float,
              max_launches: int, per_launch_s: float | None) -> str:
    """What versions still undecided after --launches mean, and what deciding them would take
    (`opened`: each version's key and its paired original/rewritten launch medians)."""
    keys = ", ".join(key for key, _, _ in opened)
    text = (f"{keys}: undecided after {max_launches} launches — at this launch-to-launch noise "
            f"the interval cannot tell a change within ±{SLOWER_MEASURED:.0%} from none, so "
            f"{'it is' if len(opened) == 1 else 'each is'} judged on its measured ratio (kept "
            "unless measured slower)")
    settle = []
    for key, base, rewritten in opened:
        needed = launches_to_settle(base, rewritten, confidence, limit=SETTLE_LIMIT)
        if needed is None or needed <= max_launches:
            continue
        if needed > SETTLE_LIMIT:
            settle.append(f"{key} more than {SETTLE_LIMIT}")
            continue
        cost = f", ~{_minutes(2 * needed * per_launch_s)}" if per_launch_s else ""
        settle.append(f"{key} ~{needed} (--launches {needed}{cost})")
    if settle:
        text += "; settling it would take launches per version: " + "; ".join(settle)
    return text


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def measured_note(decided_after: dict[str, int | None], launches: int, elapsed_s: float,
                  per_launch_s: float | None, versions: int, max_launches: int,
                  zygote_s: float = 0.0) -> str:
    """After the launches: when each version was decided, and the time against the estimate."""
    parts = [f"{key} after {n} launches" if n is not None else f"{key} open after {max_launches}"
             for key, n in decided_after.items()]
    expected = ""
    if per_launch_s is not None:
        fast, slow = expected_span(versions, max_launches, per_launch_s, zygote_s)
        expected = f" (expected {_minutes(fast)} to {_minutes(slow)})"
    return (f"measured sequentially: {', '.join(parts)}; {launches} launches in "
            f"{_minutes(elapsed_s)}{expected}")


def _median(values: Sequence[float | None]) -> float | None:
    import statistics

    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


# ---------------------------------------------------------------------------- --apply
def check_clean(project: Project, files: Sequence[str], force: bool) -> None:
    """Refuse (UsageError, exit 2) to write files git does not show as committed."""
    if force or not files:
        return
    dirty = git_dirty_files(project, files)
    if dirty is None:
        raise UsageError(f"{project.root} is not a git repository, so perftune cannot check that "
                         f"{', '.join(files)} can be restored; commit them or pass --force")
    if dirty:
        raise UsageError(f"{', '.join(sorted(dirty))} has uncommitted changes; commit or stash "
                         "them first, or pass --force")


def apply_patch(plan: Plan, chosen: Sequence[str], force: bool = False,
                show: Callable[[str], None] | None = None) -> list[Path]:
    """Write the chosen rewrites into the user's files; return the files written.

    What is written is `plan.patch(chosen)` — the patch shown to the user and saved as
    fix.patch — applied to the files as they are now, so the bytes written are the shown ones.
    Refused when a file changed since it was planned (the measured rewrite would not be the
    one written) or, without `force`, when git shows uncommitted changes in it. `show` is
    handed the patch after those checks and before anything is written.
    """
    texts = plan.texts(chosen)
    check_clean(plan.project, sorted(texts), force)
    for rel in texts:
        current = (plan.project.root / rel).read_text(encoding="utf-8")
        if current != plan.originals[rel]:
            raise UsageError(f"{rel} changed while perftune fix ran; nothing was written")
    patch = plan.patch(chosen)
    patched = {diff.path: apply_diff(diff, plan.originals[diff.path], diff.path)
               for diff in (parse_unified_diff(patch, "fix.patch") if patch else ())}
    changed = {rel: text for rel, text in texts.items() if text != plan.originals[rel]}
    if patched != changed:  # the shown patch and the measured text must be one and the same
        raise UsageError("the patch does not reproduce the measured rewrite; nothing was written")
    if show is not None:
        show(patch)
    written: list[Path] = []
    for rel, text in patched.items():
        path = plan.project.root / rel
        tmp = path.with_name(f".{path.name}.perftune-fix.tmp")
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
        written.append(path)
    return written

