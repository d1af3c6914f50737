"""The tuning loop: probe the script, then ask the strategy, run the trial, record it; repeat.

Stops when the strategy has nothing left, at --max-trials, at the --time-budget, or at Ctrl-C
(the running trial is dropped and re-run by `--resume`; finished trials are kept).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from perftune import _signals
from perftune.capture.parent import knobs as injected
from perftune.errors import ScriptError, UsageError
from perftune.tune.constraints import DEFAULT_TOLERANCE
from perftune.tune.history import History, TrialRecord
from perftune.tune.objective import Objective
from perftune.tune.space import (
    ArgTemplate,
    SearchSpace,
    Value,
    build_space,
    config_key,
    knobs_from_declared,
    script_defaults,
    without,
)
from perftune.tune.strategy import Proposal, StrategySettings, propose
from perftune.tune.study import Study, make_storage
from perftune.tune.trial import Measurement, Script, TrialOutcome, TrialRunner

TRIALS_DIR = "trials"
# A sampler that keeps proposing measured configurations has run out of ideas.
MAX_CACHE_HITS = 25
POLL_S = 1.0


# How long an earlier trial without its parameters yet is waited for (Tuner._taken_by_another).
PARAMS_SETTLE_S = 5.0


@dataclass(frozen=True)
class SpaceSources:
    cli: tuple[tuple[str, tuple[Value, ...]], ...] = ()
    config: Mapping[str, tuple[Value, ...]] = field(default_factory=dict)
    findings: Mapping[str, tuple[Value, ...]] = field(default_factory=dict)
    args: tuple[ArgTemplate, ...] = ()
    use_declared: bool = True


@dataclass(frozen=True)
class TuneSettings:
    script: Script
    run_dir: Path
    sources: SpaceSources = field(default_factory=SpaceSources)
    measurement: Measurement = field(default_factory=Measurement)
    objective: Objective = field(default_factory=Objective)
    tolerance: float = DEFAULT_TOLERANCE
    strategy: StrategySettings = field(default_factory=StrategySettings)
    max_trials: int | None = None
    time_budget_s: float | None = None
    storage: str | None = None
    study_name: str = "perftune"
    resume: bool = False
    sampler_seed: int | None = 0
    # Fork trials from a pre-imported zygote (perftune/capture/child/zygote.py) instead of starting
    # a fresh python for each; `perftune tune --no-reuse` turns it off.
    reuse_processes: bool = True


@dataclass(frozen=True)
class TuneRun:
    settings: TuneSettings
    space: SearchSpace
    history: History
    strategy: str
    stop_reason: str
    interrupted: bool
    elapsed_s: float
    notes: tuple[str, ...]
    measurement: Measurement
    objective: Objective


class Reporter(Protocol):
    def note(self, text: str) -> None: ...
    def started(self, number: int, values: Mapping[str, Any], role: str, why: str, history: History) -> None: ...
    def finished(self, record: TrialRecord, history: History) -> None: ...


class SilentReporter:
    def note(self, text: str) -> None:
        pass

    def started(self, number: int, values: Mapping[str, Any], role: str, why: str, history: History) -> None:
        pass

    def finished(self, record: TrialRecord, history: History) -> None:
        pass


def max_trials_reason(max_trials: int, reserve: int, grid: int, repeat_trials: int) -> str:
    """Why the search stopped at --max-trials, said where configurations were left unmeasured:
    how many trials went to repeating the leaders, and the budget that measures everything."""
    text = f"reached --max-trials {max_trials}"
    if reserve <= 0:
        return text
    return (f"{text}, of which {reserve} repeated the leading configurations to tell them "
            f"apart from noise; --max-trials {grid + repeat_trials} measures all {grid} "
            "configurations and repeats the leaders")


class Tuner:
    def __init__(self, settings: TuneSettings, reporter: Reporter | None = None) -> None:
        self.settings = settings
        self.reporter: Reporter = reporter or SilentReporter()
        self.notes: list[str] = []
        self.measurement = settings.measurement
        self.objective = settings.objective
        self.launcher: Any = None  # the ZygoteLauncher while the run lasts
        self._launch_noted = False

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.reporter.note(text)

    # --- setup ----------------------------------------------------------------------------

    def _open(self) -> tuple[Study, SearchSpace]:
        s = self.settings
        storage = make_storage(s.storage, s.run_dir)
        # A fresh journal in a fresh run dir is new by construction; a shared database study is
        # joined by every worker, so only --resume on a journal insists that it exists.
        study = Study.open(
            storage,
            s.study_name,
            sampler_kind="random" if s.strategy.name == "random" else "tpe",
            seed=s.sampler_seed,
            must_exist=s.resume and s.storage is None,
            must_be_new=not s.resume and s.storage is None,
        )
        stored = study.settings()
        self._start_launcher()  # before the probe, which is a trial too
        space = self._probe(study) if stored is None else self._adopt_stored(stored)
        return study, space

    def _adopt_stored(self, stored: Mapping[str, Any]) -> SearchSpace:
        """Settings of a study made earlier (resume, or another worker): they win, so every
        trial of the study is measured the same way."""
        space = SearchSpace.from_json(stored["space"])
        measurement = Measurement(**stored["measurement"])
        objective = Objective(**{k: v for k, v in stored["objective"].items() if k != "unit"})
        if self.settings.sources.cli and dict(self.settings.sources.cli).keys() - set(space.names):
            raise UsageError(
                "the study already has its search space "
                f"({', '.join(space.names)}); --knob cannot add knobs to it"
            )
        if measurement != self.measurement:
            self.note("measuring as the existing study does (its warm-up, steps, seed, budget)")
        self.measurement = measurement
        self.objective = objective
        return space

    def _partial_space(self) -> SearchSpace:
        src = self.settings.sources
        return build_space(cli=src.cli, config=src.config, findings=src.findings, args=src.args)

    def _probe(self, study: Study) -> SearchSpace:
        """Run the script once as written, to learn the knobs it declares and its own defaults
        (perftune.knob() defaults, the DataLoader's batch size, its flags' defaults); the run
        also counts as the trial of the default configuration, the tuner's baseline."""
        partial = self._partial_space()
        # Nothing that changes the script: no flag is passed and no batch size injected (the
        # child records the DataLoader's and the flags' own values); precision and
        # checkpointing get their "as written" values (fp32, none).
        probe_values: dict[str, Value] = {
            k.name: injected.AS_WRITTEN[k.name]
            for k in partial.knobs
            if k.name in injected.AS_WRITTEN and partial.arg_for(k.name) is None
        }
        runner = TrialRunner(
            self.settings.script, partial, self.measurement, self.objective, self.launcher
        )
        self.reporter.note("probe: running the script with its defaults to find its knobs")
        outcome = runner.run(probe_values, self.settings.run_dir / TRIALS_DIR / "probe")
        self._check_launch(runner)
        if outcome.status in ("crashed", "no-steps"):
            from perftune.capture.parent.measure import log_tail

            raise ScriptError(
                f"the script failed with its default knob values: {outcome.reason}"
                + log_tail(self.settings.run_dir / TRIALS_DIR / "probe")
            )
        if outcome.status == "interrupted":
            raise KeyboardInterrupt
        space = self._full_space(outcome, partial)
        self.objective.check(space.names)
        stored = study.save_settings(
            {
                "space": space.to_json(),
                "measurement": self.measurement.to_json(),
                "objective": self.objective.to_json(),
                "script": self.settings.script.to_json(),
            }
        )
        space = SearchSpace.from_json(stored["space"])
        full_values = space.default()
        unknown = [k.name for k in space.knobs if k.default_from is None]
        if unknown:
            # The probe ran the script's own value of these, which nothing showed: the search
            # measures its starting values as the defaults instead.
            shown = ", ".join(f"{k.name}={k.default}" for k in space.knobs if k.name in unknown)
            self.note(f"the script's own value of {', '.join(unknown)} could not be seen (no "
                      "DataLoader iterated, no flag default, no perftune.knob() default); the "
                      f"baseline uses {shown}")
        elif all(full_values.get(k.name) in k.allowed for k in space.knobs):
            study.add_finished(
                space,
                full_values,
                "probe",
                "defaults (finds the declared knobs)",
                outcome.rescored(full_values, self.objective),
            )
        return space

    def _full_space(self, probe: TrialOutcome, partial: SearchSpace) -> SearchSpace:
        src = self.settings.sources
        declared_raw = probe.declared_knobs if src.use_declared else {}
        declared, defaults, notes = knobs_from_declared(declared_raw)
        observed = probe.injected.get("defaults")
        seen, origin = script_defaults(partial, observed if isinstance(observed, dict) else {},
                                       probe.input_samples)
        defaults = {**seen, **defaults}  # a perftune.knob() default is the script's word
        origin = {k: v for k, v in origin.items() if k not in declared_raw}
        for text in notes:
            if not any(text.startswith(f"knob {name!r}") for name, _ in src.cli):
                self.note(text)
        space = build_space(
            cli=src.cli,
            config=src.config,
            findings=src.findings,
            declared=declared,
            declared_defaults=defaults,
            args=src.args,
            declared_names=probe.declared_knobs,
            default_from=origin,
        )
        reachable = set(injected.INJECTED_KNOBS) | set(probe.declared_knobs) | {a.knob for a in space.args}
        unused = [k.name for k in space.knobs if k.name not in reachable]
        if unused:
            self.note(
                f"dropped knob(s) the script never reads: {', '.join(unused)} (no "
                "perftune.knob() call for them ran, and no --arg maps them to a flag)"
            )
            space = without(space, unused)
        if not space.knobs:
            raise UsageError(
                "nothing to tune: give knobs with --knob NAME=V1,V2, [tool.perftune.tune], "
                "--from-findings, or declare them in the script with perftune.knob()"
            )
        return space

    # --- the loop -------------------------------------------------------------------------

    # --- where trial processes come from -------------------------------------------------

    def _start_launcher(self) -> None:
        if not self.settings.reuse_processes:
            return
        from perftune.capture.parent.launcher import ZygoteError, ZygoteLauncher

        launcher = ZygoteLauncher(self.settings.run_dir, self.settings.script.cwd)
        try:
            launcher.start()
        except ZygoteError as exc:
            self._launch_noted = True
            self.note(f"{exc}; every trial runs as a fresh process")
            return
        self.launcher = launcher

    def _stop_launcher(self) -> None:
        launcher, self.launcher = self.launcher, None
        if launcher is not None:
            launcher.stop()

    def _check_launch(self, runner: TrialRunner) -> None:
        """Say once when trials stopped being forked from the zygote, and why."""
        if self.launcher is None or self._launch_noted:
            return
        stopped = self.launcher.why_stopped()
        launch = runner.last_launch or {}
        if stopped is not None:
            reason = f"the trial launcher (zygote) stopped: {stopped}"
        elif launch.get("launcher") == "fresh":
            reason = f"a trial could not be forked from the zygote: {launch.get('reason')}"
        else:
            return
        self._launch_noted = True
        self.note(f"{reason}; such trials run as fresh processes (see {self.launcher.log_path})")

    def run(self) -> TuneRun:
        """Tune; the zygote (if any) lives exactly as long as this call, Ctrl-C and errors too."""
        try:
            # SIGTERM between trials unwinds like Ctrl-C: finished trials and tuning.json kept.
            with _signals.sigterm_unwinds():
                return self._run()
        finally:
            self._stop_launcher()

    def _run(self) -> TuneRun:
        s = self.settings
        started = time.monotonic()
        study, space = self._open()
        runner = TrialRunner(s.script, space, self.measurement, self.objective, self.launcher)
        strategy = s.strategy.resolve(space, s.max_trials)
        reserve = 0
        if s.max_trials is not None:
            reserve = min(s.strategy.repeat_trials, s.max_trials // 4)
        sampler_open = s.max_trials is not None or s.time_budget_s is not None
        stop_reason = "search finished"
        interrupted = False
        cache_hits = 0
        for number in study.fail_stale(self._stale_after()):
            self.note(f"trial {number} was left running by a worker that stopped; marked failed")
        try:
            while True:
                history = History(space, study.records(), tolerance=s.tolerance)
                counted = history.counted()
                elapsed = time.monotonic() - started
                if s.max_trials is not None and counted >= s.max_trials:
                    stop_reason = max_trials_reason(s.max_trials, reserve, space.size,
                                                    s.strategy.repeat_trials)
                    break
                if s.time_budget_s is not None and elapsed >= s.time_budget_s:
                    stop_reason = "reached --time-budget"
                    break
                search_open = (s.max_trials is None or counted < s.max_trials - reserve) and (
                    s.time_budget_s is None or elapsed < 0.8 * s.time_budget_s
                )
                proposal = propose(
                    space,
                    history,
                    s.strategy,
                    strategy=strategy,
                    search_open=search_open,
                    sampler_open=sampler_open,
                )
                if proposal is None:
                    if history.pending:
                        # Other workers' results may open new moves (a new best to explore).
                        time.sleep(POLL_S)
                        study.fail_stale(self._stale_after())
                        continue
                    if not search_open:
                        stop_reason = "budget spent (repeats done)"
                    break
                outcome = self._run_one(study, space, runner, proposal, history)
                if outcome == "cached":
                    cache_hits += 1
                    if cache_hits > MAX_CACHE_HITS:
                        stop_reason = "the sampler proposes only measured configurations"
                        break
                    continue
                cache_hits = 0
                if outcome == "interrupted":
                    interrupted = True
                    stop_reason = "interrupted"
                    break
        except KeyboardInterrupt:
            interrupted = True
            stop_reason = "interrupted"
        history = History(space, study.records(), tolerance=s.tolerance)
        return TuneRun(
            settings=s,
            space=space,
            history=history,
            strategy=strategy,
            stop_reason=stop_reason,
            interrupted=interrupted,
            elapsed_s=time.monotonic() - started,
            notes=tuple(self.notes),
            measurement=self.measurement,
            objective=self.objective,
        )

    def _stale_after(self) -> float:
        """A trial running this long has lost its worker (the timeout would have ended it)."""
        timeout = self.measurement.timeout_s or 3600.0
        return 2 * timeout + 120.0

    def _run_one(
        self,
        study: Study,
        space: SearchSpace,
        runner: TrialRunner,
        proposal: Proposal,
        history: History,
    ) -> str:
        trial = study.start(space, proposal.values, proposal.role, proposal.why)
        values = dict(trial.params)
        if proposal.values is None and (history.seen(values) or history.memory_pruned(values)):
            known = history.result(values)
            study.cache_hit(trial, known.throughput if known is not None else None)
            return "cached"
        if proposal.role not in ("repeat", "recheck", "separate") and self._taken_by_another(study, space, trial.number, values):
            study.drop(trial, "duplicate", "another worker took this configuration first")
            return "duplicate"
        self.reporter.started(trial.number, values, proposal.role, proposal.why, history)
        halt = study.heartbeat(trial)
        try:
            outcome = runner.run(values, self.settings.run_dir / TRIALS_DIR / f"{trial.number:04d}")
        except BaseException:
            halt()
            study.drop(trial, "interrupted", "perftune stopped during this trial")
            raise
        halt()
        self._check_launch(runner)
        if outcome.status == "interrupted":
            study.drop(trial, "interrupted", "interrupted (Ctrl-C); --resume runs it again")
            return "interrupted"
        study.finish(trial, outcome)
        record = TrialRecord(trial.number, values, proposal.role, proposal.why, study.worker, outcome)
        after = History(space, [*history.records, record], tolerance=self.settings.tolerance)
        self.reporter.finished(record, after)
        return "done"

    @staticmethod
    def _taken_by_another(study: Study, space: SearchSpace, number: int, values: Mapping[str, Any],
                          settle_s: float = PARAMS_SETTLE_S) -> bool:
        """Whether an earlier trial (lower number) of the same configuration was started by
        another worker in the meantime: the strategy never proposes a configuration it has seen.

        Optuna's `ask` creates the trial first and stores its parameters after: another
        worker's earlier trial read in between has none yet, and both workers would run the
        configuration (seen in a CI run under load: two workers searched one label twice). Such
        a trial is read again until its parameters are stored (or it ended), for up to
        `settle_s`."""
        key = config_key(values)
        names = {knob.name for knob in space.knobs}
        deadline = time.monotonic() + settle_s
        while True:
            earlier = [r for r in study.records() if r.number < number]
            if any(r.key == key and r.counts and r.role not in ("repeat", "recheck", "separate")
                   for r in earlier):
                return True
            unsettled = any(r.running and not names <= set(r.values) for r in earlier)
            if not unsettled or time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
