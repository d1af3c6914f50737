"""The gate's Python API: compare two sides, a revision, or a stored baseline; calibrate.

Each function runs launches into a run directory and returns a frozen result; rendering and
exit codes are the CLI's business (perftune/cli/gate.py, baseline.py, calibrate.py).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perftune.analysis.stats import DEFAULT_POWER, ratio_interval
from perftune.capture.parent.measure import (
    BASE,
    HEAD,
    Launch,
    MeasureSettings,
    Side,
    capture_side,
    forked_note,
    side_zygotes,
)
from perftune.errors import ScriptError, UsageError
from perftune.gate import explain as explain_mod
from perftune.gate import fingerprint as fingerprint_mod
from perftune.gate.baseline import Baseline
from perftune.gate.calibration import Calibration, gate_detectable
from perftune.gate.decision import FIGURE_WORDS, Decision, DecisionRule
from perftune.gate.explain import Explanation, ProfileSummary
from perftune.gate.load import RunnerLoad
from perftune.gate.runner import LaunchPlan, SequentialGate
from perftune.gate.verdict import InconclusivePolicy, Mode, Status, Verdict
from perftune.gate.worktree import head_state, map_into, repo_root, revision_worktree

if TYPE_CHECKING:
    from perftune.capture.parent.runner import ScriptTarget

Progress = Callable[[str], None]

# Steps profiled per side to explain a verdict: enough for per-step averages, few enough that
# the profiler's overhead does not make the explanation the slowest part of the gate.
EXPLAIN_STEPS = 3


@dataclass(frozen=True)
class GateOptions:
    rule: DecisionRule = field(default_factory=DecisionRule)
    plan: LaunchPlan = field(default_factory=LaunchPlan)
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    inconclusive: InconclusivePolicy = "error"
    explain: bool = True
    fail_on_new_findings: bool = False
    seed: int | None = None
    # Size each launch's measured steps from the first launch's step time (the user did not
    # fix --steps); never for a stored baseline, whose launches had a fixed length.
    size_launches: bool = False
    # Fork each side's launches from a zygote of that side that imported torch once (saves
    # the ~2 s start of python + torch per launch); only when both sides are launched here,
    # so that they start alike (a stored baseline's launches were fresh processes).
    reuse_processes: bool = True


def _quiet(_: str) -> None:
    return None


def _launch_reporter(progress: Progress) -> Callable[[Launch], None]:
    def report(launch: Launch) -> None:
        progress(f"  launch {launch.seq + 1:>3} {launch.side}: {launch.median_ms:.3f} ms "
                 f"({launch.wall_s:.1f} s)")

    return report


def _python_path(root: Path) -> dict[str, str]:
    """Put the side's own checkout first on the child's import path.

    With the project installed in editable mode, `import mypkg` in the base worktree would
    otherwise load the head's code and the gate would compare head with head.
    """
    entries = [str(root)]
    if (root / "src").is_dir():
        entries.insert(0, str(root / "src"))
    existing = os.environ.get("PYTHONPATH")
    if existing:
        entries.append(existing)
    return {"PYTHONPATH": os.pathsep.join(entries)}


# OpenMP's wait policy for every launch of gate, baseline and calibrate, unless the user's
# environment sets one. torch's OpenMP (libgomp) keeps a thread that waits for work spinning on
# its core; where another process wants that core (a shared CI runner) the spinning threads and
# the other process slow each other down by whatever the scheduler makes of it. Measured on a
# 2-core runner with one other CPU-bound process and more work beside it (load 4.4),
# samples/regression_demo.py --threads 2 run six times each way: spinning, 24-130 s wall and
# 21-73 CPU-s per run (CPU time 39 % noisy);
# waiting passively, 7-13 s and 6.6-8.2 CPU-s (8 %). Both sides of a comparison wait the same
# way, so the gate compares the code, not how the runner's load met the spinning.
OMP_WAIT_ENV = "OMP_WAIT_POLICY"
LAUNCH_OMP_WAIT = "PASSIVE"


def launch_env(root: Path | None = None) -> dict[str, str]:
    """The variables a side's launches get on top of perftune's environment: its checkout
    first on the import path (with `root`) and OpenMP threads that wait passively (unless
    OMP_WAIT_POLICY is set)."""
    env = _python_path(root) if root is not None else {}
    if OMP_WAIT_ENV not in os.environ:
        env[OMP_WAIT_ENV] = LAUNCH_OMP_WAIT
    return env


def _median(samples: Sequence[float]) -> float | None:
    return statistics.median(samples) if samples else None


def wall_noise(base: Sequence[float], head: Sequence[float],
               confidence: float) -> explain_mod.LaunchNoise | None:
    """The launch-to-launch noise of the wall times the gate measured (the profiled launches
    that explain the verdict are timed by the wall clock too)."""
    if len(base) < 2 or len(head) < 2:
        return None
    estimate = ratio_interval(base, head, confidence)
    return explain_mod.LaunchNoise(log_sd=estimate.noise, launches=len(base) + len(head),
                                   confidence=confidence)


def figure_note(result_figure: str, load: RunnerLoad) -> str:
    """Which figure decided, and the load that chose it."""
    if result_figure == "cpu":
        return (f"decided on CPU time per step (user + sys of the script's process): the runner "
                f"was busy ({load.describe()}), which slows wall time but barely CPU time")
    if load.busy:
        return (f"decided on wall time although the runner was busy ({load.describe()}): the "
                "launches did not record CPU time per step")
    return f"decided on wall time per step: the runner was quiet ({load.describe()})"


# Forks of one zygote share its memory layout for the zygote's life: measured here, the forks
# of two zygotes of the same code differed by up to 2.3 % over a round of 6+6 launches (A/A
# gates at load 1-3, 2026-12-02), a shift the launches of that round cannot show as noise. An
# allowance under twice that (under the default 5 %) is gated with fresh processes, whose
# layout differs launch by launch and so is counted in the launch-to-launch noise.
ZYGOTE_MIN_ALLOWANCE = 0.05


def launch_mode(options: GateOptions, interleaved: bool) -> tuple[bool, str | None]:
    """Whether the launches fork from zygotes, and why not when they were meant to."""
    if not options.reuse_processes or not interleaved:
        return False, None
    if options.rule.threshold < ZYGOTE_MIN_ALLOWANCE:
        return False, (f"every launch started as a fresh process: with an allowance of "
                       f"{options.rule.threshold:.1%} (under {ZYGOTE_MIN_ALLOWANCE:.0%}) the "
                       "memory layout shared by the forks of one zygote (up to ~2.3 % measured) "
                       "could pass for a change")
    return True, None


def _shared_launcher() -> list[str] | None:
    """The profiled launches that explain a verdict fork from the zygote PERFTUNE_ZYGOTE
    names where it takes them, as `perftune profile` does (None: a fresh process)."""
    from perftune.capture.parent.launcher import shared_zygote_command

    return shared_zygote_command(os.environ)


def explain_sides(base: Side | ProfileSummary, head: Side, out_dir: Path,
                  measure: MeasureSettings, progress: Progress = _quiet,
                  noise: explain_mod.LaunchNoise | None = None,
                  timed_ms: tuple[float | None, float | None] = (None, None),
                  ) -> tuple[Explanation | None, list[str]]:
    """Profile one launch per side (or use the stored base profile) and compare them.

    `timed_ms` is the median step (wall, ms) of each side's timed launches: a profiled launch
    that ran slower than those, beyond the profiler's overhead, was contended, and its lines
    are judged with that allowance (explain.profiled_excess)."""
    summaries: dict[str, ProfileSummary] = {}
    notes: list[str] = []
    if isinstance(base, ProfileSummary):
        summaries[BASE] = base
        sides: list[Side] = [head]
    else:
        sides = [base, head]
    for side in sides:
        progress(f"  profiling one {side.name} launch to explain the verdict")
        result = capture_side(side, out_dir / side.name, measure, profile=True,
                              active=min(EXPLAIN_STEPS, measure.steps),
                              launcher=_shared_launcher())
        if result.status == "interrupted":
            raise KeyboardInterrupt
        if not result.ok or not result.measured():
            notes.append(f"the profiled {side.name} launch did not finish ({result.status}); "
                         "no explanation")
            return None, notes
        summaries[side.name] = explain_mod.summarize_capture(result)
    excess = explain_mod.profiled_excess(summaries[BASE], summaries[HEAD], *timed_ms)
    return explain_mod.compare(summaries[BASE], summaries[HEAD], noise, excess), notes


def run_gate(
    head: Side,
    run_dir: Path,
    options: GateOptions,
    *,
    base: Side | None = None,
    base_samples: Sequence[float] = (),
    base_cpu_samples: Sequence[float] = (),
    base_busy: bool | None = None,
    base_profile: ProfileSummary | None = None,
    mode: Mode = "ab",
    base_label: str = "base",
    head_label: str = "head",
    notes: Sequence[str] = (),
    on_launch: Callable[[Launch], None] | None = None,
    progress: Progress = _quiet,
) -> Verdict:
    """Launch until decided (both sides interleaved, or head against stored base samples)."""
    started = time.monotonic()
    report = _launch_reporter(progress)

    def launched(launch: Launch) -> None:
        report(launch)
        if on_launch is not None:
            on_launch(launch)

    def looked(decision: Decision) -> None:
        est = decision.estimate
        progress(f"  after {est.n_base}+{est.n_head} launches ({FIGURE_WORDS[decision.figure]}): "
                 f"ratio {est.ratio:.3f} [{est.low:.3f}, {est.high:.3f}] -> {decision.outcome}")

    reuse, why_fresh = launch_mode(options, interleaved=base is not None)
    launch_notes: list[str] = [why_fresh] if why_fresh else []
    with side_zygotes([base, head] if base is not None else [head], run_dir, reuse,
                      launch_notes) as launchers:
        sequential = SequentialGate(head=head, base=base, launch_root=run_dir / "launches",
                                    settings=options.measure, base_samples=base_samples,
                                    base_cpu_samples=base_cpu_samples, base_busy=base_busy,
                                    seed=options.seed, on_launch=launched, on_decision=looked,
                                    size_launches=options.size_launches and base is not None,
                                    launchers=launchers, renew_launchers=launchers.renew)
        result = sequential.run(options.rule, options.plan)
    decision = result.decision
    base_wall = tuple(base_samples) if base is None else result.samples(BASE)
    status: Status = "inconclusive" if decision.outcome == "undecided" else decision.outcome
    # Read only now: `on_launch` may have added notes while launching (baseline fingerprint).
    all_notes = list(notes)
    all_notes += launch_notes
    started_note = forked_note([launch.started_by for launch in result.launches],
                               reuse and not launch_notes)
    if started_note:
        all_notes.append(started_note)
    all_notes.append(figure_note(result.figure, result.load))
    if result.steps is not None and result.steps != options.measure.steps:
        all_notes.append(f"launches measured {result.steps} steps each after the first, sized "
                         "from its step time (about a second of steady steps)")
    if options.rule.raised_by_calibration:
        all_notes.append(f"allowance raised from {options.rule.max_regression:.1%} to "
                         f"{options.rule.threshold:.1%}: calibration shows smaller slowdowns "
                         "are not measurable on this runner")
    if note := resolution_note(decision, options, paired=base is not None):
        all_notes.append(note)
    explanation = None
    if options.explain:
        reference: Side | ProfileSummary | None = base if base is not None else base_profile
        if reference is None:
            all_notes.append("the baseline holds no profile (recorded with --no-explain), "
                             "so structural changes were not compared")
        else:
            head_wall = result.samples(HEAD)
            explanation, explain_notes = explain_sides(
                reference, head, run_dir / "explain", options.measure, progress,
                wall_noise(base_wall, head_wall, options.rule.confidence),
                (_median(base_wall), _median(head_wall)))
            all_notes += explain_notes
            if explanation is not None:
                all_notes += explanation.notes
    return Verdict(
        status=status,
        decisions=result.decisions,
        rule=options.rule,
        mode=mode,
        base_label=base_label,
        head_label=head_label,
        launches=result.launches,
        base_samples_ms=tuple(base_samples) if base is None else result.samples(BASE),
        head_samples_ms=result.samples(HEAD),
        base_cpu_ms=tuple(base_cpu_samples) if base is None else result.samples(BASE, "cpu"),
        head_cpu_ms=result.samples(HEAD, "cpu"),
        load=result.load,
        inconclusive_policy=options.inconclusive,
        fail_on_new_findings=options.fail_on_new_findings,
        explanation=explanation,
        notes=tuple(dict.fromkeys(all_notes)),
        elapsed_s=time.monotonic() - started,
        run_dir=run_dir,
    )


def resolution_note(decision: Decision, options: GateOptions, paired: bool) -> str:
    """For a gate left undecided by launches too noisy for its allowance: the slowdown this
    runner can resolve within --max-launches, and how to gate on that. Empty otherwise."""
    rule = options.rule
    if decision.decided or decision.withheld or rule.raised_by_calibration:
        return ""
    noise = decision.estimate.noise
    resolvable = gate_detectable(noise, options.plan.max_launches, rule.confidence, DEFAULT_POWER,
                                 paired, options.plan.launches)
    if resolvable <= rule.threshold:
        return ""
    return (f"launch-to-launch noise {noise:.1%} ({FIGURE_WORDS[decision.figure]}): with at most "
            f"{options.plan.max_launches} launches per side this runner reliably resolves a "
            f"{resolvable:.1%} slowdown, not the {rule.threshold:.1%} allowance; run `perftune "
            "calibrate -o perftune-calibration.json SCRIPT` once on this runner and the gate uses "
            "the allowance it can resolve (or raise --max-launches)")


def _target(path: Path | None, module: str | None, args: Sequence[str], cwd: Path) -> ScriptTarget:
    from perftune.capture.parent.runner import ScriptTarget

    return ScriptTarget(path=path, module=module, args=tuple(args), cwd=cwd)


def _head_label(root: Path) -> str:
    commit, dirty = head_state(root)
    where = commit[:10] if commit else "no commit yet"
    return f"working tree ({where}{' + uncommitted changes' if dirty else ''})"


def gate_against_revision(
    script: Path | None,
    args: Sequence[str],
    ref: str,
    run_dir: Path,
    options: GateOptions,
    *,
    module: str | None = None,
    cwd: Path | None = None,
    knobs: Mapping[str, Any] | None = None,
    progress: Progress = _quiet,
) -> Verdict:
    """Compare the working tree with `ref` checked out into a temporary worktree."""
    cwd = (cwd or Path.cwd()).resolve()
    root = repo_root(cwd)
    head_script = script.resolve() if script is not None else None
    if head_script is not None and not head_script.is_file():
        raise UsageError(f"{script}: no such script")
    head_label = _head_label(root)
    with revision_worktree(root, ref) as worktree:
        base_script = map_into(head_script, root, worktree.path) if head_script else None
        if base_script is not None and not base_script.is_file():
            raise UsageError(f"{head_script.relative_to(root) if head_script else script} does "
                             f"not exist at {worktree.label}")
        progress(f"perftune gate: {head_label} vs {worktree.label}, worktree {worktree.path}")
        for note in worktree.notes:
            progress(f"perftune gate: {note}")
        base = Side(name=BASE, label=worktree.label, knobs=dict(knobs or {}),
                    target=_target(base_script, module, args, map_into(cwd, root, worktree.path)),
                    env=launch_env(worktree.path))
        head = Side(name=HEAD, label=head_label, knobs=dict(knobs or {}),
                    target=_target(head_script, module, args, cwd), env=launch_env(root))
        return run_gate(head, run_dir, options, base=base, mode="revision",
                        base_label=worktree.label, head_label=head_label, notes=worktree.notes,
                        progress=progress)


def _fingerprint_guard(stored: fingerprint_mod.Fingerprint, policy: str, notes: list[str]) -> Callable[[Launch], None]:
    """Checks the first head launch's environment against the baseline's, once."""
    checked = False

    def check(launch: Launch) -> None:
        nonlocal checked
        if checked:
            return
        checked = True
        differences = stored.differences(fingerprint_mod.collect(launch.meta))
        if not differences:
            return
        text = "; ".join(differences)
        if policy == "refuse":
            raise UsageError(
                f"this environment differs from the baseline's ({text}); record a new baseline "
                "here, or pass --fingerprint-mismatch warn to compare anyway")
        notes.append(f"environment differs from the baseline's: {text}")

    return check


def gate_against_baseline(
    script: Path | None,
    args: Sequence[str],
    baseline: Baseline,
    run_dir: Path,
    options: GateOptions,
    *,
    module: str | None = None,
    cwd: Path | None = None,
    fingerprint_mismatch: str = "refuse",
    progress: Progress = _quiet,
) -> Verdict:
    """Compare the working tree with the samples stored by `perftune baseline`."""
    if fingerprint_mismatch not in ("refuse", "warn"):
        raise UsageError(f"--fingerprint-mismatch must be refuse or warn, got {fingerprint_mismatch}")
    if (options.measure.warmup, options.measure.steps) != (baseline.warmup, baseline.steps):
        raise UsageError(f"the baseline was measured with --warmup {baseline.warmup} --steps "
                         f"{baseline.steps}; the gate must measure the same way")
    cwd = (cwd or Path.cwd()).resolve()
    notes: list[str] = []
    created = f", recorded {baseline.created}" if baseline.created else ""
    commit = f" at {baseline.git_commit[:10]}" if baseline.git_commit else ""
    base_label = f"stored baseline{commit}{created}"
    head = Side(name=HEAD, label="working tree", knobs=dict(baseline.knobs),
                target=_target(script.resolve() if script else None, module, args, cwd),
                env=launch_env())
    return run_gate(
        head, run_dir, options, base_samples=baseline.samples_ms,
        base_cpu_samples=baseline.cpu_samples_ms, base_busy=baseline.busy,
        base_profile=explain_mod.profile_from_dict(baseline.profile) if baseline.profile else None,
        mode="baseline", base_label=base_label, head_label="working tree", notes=notes,
        on_launch=_fingerprint_guard(baseline.fingerprint, fingerprint_mismatch, notes),
        progress=progress)


def record_baseline(
    script: Path | None,
    args: Sequence[str],
    run_dir: Path,
    measure: MeasureSettings,
    launches: int,
    *,
    module: str | None = None,
    cwd: Path | None = None,
    knobs: Mapping[str, Any] | None = None,
    explain: bool = True,
    progress: Progress = _quiet,
) -> Baseline:
    """Measure `launches` launches of the working tree and return them as a baseline."""
    if launches < 2:
        raise UsageError(f"--launches must be at least 2, got {launches}")
    cwd = (cwd or Path.cwd()).resolve()
    head = Side(name=HEAD, label="working tree", knobs=dict(knobs or {}),
                target=_target(script.resolve() if script else None, module, args, cwd),
                env=launch_env())
    report = _launch_reporter(progress)
    measured: list[Launch] = []
    from perftune.capture.parent.measure import measure_launch
    from perftune.gate import load as load_mod

    # The load it is recorded under, measured as a gate measures it: a gate against this
    # baseline compares only like with like (perftune.gate.runner.unpaired_doubt).
    runner_load = RunnerLoad(load_mod.probe_others())
    for seq in range(launches):
        before = load_mod.read_cpu_times()
        launch = measure_launch(head, seq, run_dir / "launches" / f"{seq:03d}-{HEAD}", measure)
        runner_load = runner_load.with_launch(load_mod.launch_load(before, load_mod.read_cpu_times()))
        report(launch)
        measured.append(launch)
    profile = None
    if explain:
        progress("  profiling one launch for the baseline's structural summary")
        result = capture_side(head, run_dir / "explain" / HEAD, measure, profile=True,
                              active=min(EXPLAIN_STEPS, measure.steps),
                              launcher=_shared_launcher())
        if result.status == "interrupted":
            raise KeyboardInterrupt
        if not result.ok:
            raise ScriptError(f"the profiled launch failed ({result.status}): {result.error}; "
                              f"run dir {result.run_dir}")
        profile = explain_mod.profile_to_dict(explain_mod.summarize_capture(result))
    commit: str | None = None
    dirty = False
    with contextlib.suppress(UsageError):  # outside a git checkout the baseline has no commit
        commit, dirty = head_state(repo_root(cwd))
    return Baseline(
        samples_ms=tuple(launch.median_ms for launch in measured),
        cpu_samples_ms=tuple(launch.median_cpu_ms for launch in measured
                             if launch.median_cpu_ms is not None)
        if all(launch.median_cpu_ms for launch in measured) else (),
        fingerprint=fingerprint_mod.collect(measured[0].meta),
        warmup=measure.warmup,
        steps=measure.steps,
        script=str(script) if script else None,
        module=module,
        args=tuple(args),
        knobs=dict(knobs or {}),
        git_commit=commit,
        git_dirty=dirty,
        profile=profile,
        busy=runner_load.busy if runner_load.measured else None,
        others_cpus=tuple(launch_load.others_cpus for launch_load in runner_load.launches),
    )


def calibrate(
    script: Path | None,
    args: Sequence[str],
    run_dir: Path,
    measure: MeasureSettings,
    launches: int,
    confidence: float,
    *,
    module: str | None = None,
    cwd: Path | None = None,
    seed: int | None = None,
    progress: Progress = _quiet,
    reuse_processes: bool = False,
) -> Calibration:
    """Run the same code on both sides, interleaved like a gate, and measure the noise."""
    cwd = (cwd or Path.cwd()).resolve()
    target = _target(script.resolve() if script else None, module, args, cwd)
    head = Side(name=HEAD, target=target, label="same code", env=launch_env())
    base = Side(name=BASE, target=target, label="same code", env=launch_env())
    # Fresh processes unless told otherwise: their launch-to-launch noise includes the memory
    # layout, which the forks of one zygote share (ZYGOTE_MIN_ALLOWANCE), so the noise floor
    # derived from it errs on the safe side for gates launched either way.
    with side_zygotes([base, head], run_dir, reuse_processes, []) as launchers:
        sequential = SequentialGate(
            head=head, base=base,
            launch_root=run_dir / "launches", settings=measure, seed=seed,
            on_launch=_launch_reporter(progress), launchers=launchers,
            renew_launchers=launchers.renew)
        result = sequential.run(DecisionRule(confidence=confidence),
                                LaunchPlan(launches=launches, max_launches=launches))
    paired = result.decision.estimate
    unpaired = ratio_interval(result.samples(BASE), result.samples(HEAD), confidence)
    return Calibration(noise=unpaired.noise, paired_noise=paired.noise, launches=launches,
                       aa=paired, confidence=confidence)
