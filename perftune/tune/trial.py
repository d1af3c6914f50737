"""One trial: the user's script run in its own process with a configuration's knob values.

A trial is a capture run without the profiler (`run_capture(profile=False)`) that stops after
the warm-up and measured steps. Its outcome is the median step time and spread of the measured
steps, the throughput, the peak memory, the losses of the measured steps, and a status: a trial
that crashes, runs out of memory, runs past the timeout or produces NaN is recorded with its
reason, and the search goes on.

A trial that compiles the model (the `compile` knob) pays its compile time in its first steps.
That time is kept out of the step figure (the warm-up steps are discarded anyway) and recorded
on its own as `compile_s`: the capture's compilation record or, when larger (it holds what the
first compiled call pays around dynamo's compilations), the excess of the warm-up steps over the
median of the measured steps (see `compile_time`); the objective charges it to the run when the
run length is known.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from perftune.capture.parent.knobs import COMPILE, COMPILE_NONE
from perftune.documents import CompilationDocument, StepsDocument
from perftune.redact import redact_argv
from perftune.rundir import INJECTORS, OUTPUT_LOG, DocumentError, RunDir
from perftune.tune.constraints import over_budget
from perftune.tune.objective import Objective
from perftune.tune.space import SearchSpace

# Statuses of a trial that measured its steps (the others carry no step time).
MEASURED = ("ok", "over-budget")
MEMORY_FAILURES = ("oom", "over-budget")


@dataclass(frozen=True)
class Script:
    """What the tuner runs: a script file or a module, with its own arguments."""

    path: Path | None
    module: str | None
    args: tuple[str, ...]
    cwd: Path

    def describe(self) -> str:
        head = str(self.path) if self.path is not None else f"-m {self.module}"
        return " ".join([head, *redact_argv(self.args)])  # printed: no credentials

    @property
    def stem(self) -> str:
        if self.path is not None:
            return self.path.stem
        return (self.module or "script").rsplit(".", 1)[-1]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path is not None else None,
            "module": self.module,
            "args": redact_argv(self.args),  # a record: credentials in the arguments stay out
            "cwd": str(self.cwd),
        }


@dataclass(frozen=True)
class Measurement:
    """How each trial measures: warm-up steps discarded, then `steps` measured steps."""

    warmup: int = 3
    steps: int = 8
    timeout_s: float | None = 300.0
    seed: int | None = 0
    memory_budget: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrialOutcome:
    status: str  # ok | over-budget | crashed | oom | timeout | nan | no-steps | interrupted
    reason: str | None
    step_ms: float | None = None  # median of the measured steps
    step_ms_iqr: float | None = None
    spread: float | None = None  # interquartile range over the median
    step_ms_min: float | None = None
    step_ms_max: float | None = None
    measured_steps: int = 0
    throughput: float | None = None
    unit: str | None = None
    samples_per_step: float | None = None
    samples_source: str | None = None
    input_samples: float | None = None  # median leading dim of the model input, when seen
    peak_memory_bytes: int | None = None
    memory_kind: str | None = None
    losses: tuple[float | None, ...] = ()
    wall_s: float | None = None
    measured_s: float | None = None
    overhead_s: float | None = None  # wall time beyond the measured steps
    run_dir: str | None = None
    exit_code: int | None = None
    injected: dict[str, Any] = field(default_factory=dict)
    declared_knobs: dict[str, Any] = field(default_factory=dict)
    # "zygote": forked from the tuner's pre-imported zygote; "fresh": a new python process
    # (None: not known, e.g. the client was killed before it could say).
    launch: str | None = None
    # Seconds spent compiling (torch.compile) in this trial, kept out of step_ms; None when the
    # configuration does not compile. compile_source says where the figure comes from.
    compile_s: float | None = None
    compile_source: str | None = None

    @property
    def measured(self) -> bool:
        return self.status in MEASURED

    def rescored(self, values: Mapping[str, Any], objective: Objective) -> TrialOutcome:
        """The outcome with its throughput for `values` (the probe ran before the knobs the
        script declares, batch_size among them, were known)."""
        if self.step_ms is None:
            return self
        recorded = [int(self.input_samples)] if self.input_samples is not None else []
        throughput, unit, samples = objective.throughput(values, recorded, self.step_ms / 1000.0,
                                                         self.compile_s)
        _, source = objective.samples(values, recorded)
        return replace(
            self, throughput=throughput, unit=unit, samples_per_step=samples, samples_source=source
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["losses"] = [_finite_or_text(v) for v in self.losses]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialOutcome:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["losses"] = tuple(_from_text(v) for v in data.get("losses", ()))
        return cls(**values)


def _finite_or_text(value: float | None) -> float | str | None:
    # JSON has no NaN/Infinity; keep them readable as strings.
    if value is None or math.isfinite(value):
        return value
    return str(value)


def _from_text(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)


class StepLike(Protocol):
    @property
    def duration_ms(self) -> float: ...
    @property
    def loss(self) -> float | None: ...
    @property
    def samples(self) -> int | None: ...


class Launcher(Protocol):
    """Where a trial's process comes from (perftune.capture.parent.launcher.ZygoteLauncher)."""

    def alive(self) -> bool: ...
    def command(self) -> list[str]: ...


class TrialRunner:
    """Runs trials of one script under one measurement setting.

    With a `launcher` (the tuner's zygote) trials are forked from it while it is alive; without
    one, or once it is gone, each trial is a fresh `python -m perftune.capture.child.bootstrap`.
    """

    def __init__(
        self,
        script: Script,
        space: SearchSpace,
        measurement: Measurement,
        objective: Objective,
        launcher: Launcher | None = None,
    ) -> None:
        self.script = script
        self.space = space
        self.measurement = measurement
        self.objective = objective
        self.launcher = launcher
        self.last_launch: dict[str, Any] | None = None  # how the last trial was started

    def run(self, values: Mapping[str, Any], run_dir: Path) -> TrialOutcome:
        # Imported here: perftune.capture imports torch, which `perftune tune --help` and the
        # results/report code must not pay for.
        from perftune.capture.parent.runner import CaptureOptions, ScriptTarget, run_capture

        run_dir.mkdir(parents=True, exist_ok=True)
        target = ScriptTarget(
            path=self.script.path,
            module=self.script.module,
            args=(*self.script.args, *self.space.script_args(values)),
            cwd=self.script.cwd,
        )
        options = CaptureOptions(
            skip=self.measurement.warmup,
            active=self.measurement.steps,
            profile=False,
            knobs=dict(values),
            timeout_s=self.measurement.timeout_s,
            inject=tuple(self.space.injected()),
            inject_report=run_dir / INJECTORS,
            seed=self.measurement.seed,
            memory_budget=self.measurement.memory_budget,
            quiet=True,
            launcher=self.launcher.command() if self.launcher is not None and self.launcher.alive() else None,
        )
        started = time.monotonic()
        result = run_capture(target, run_dir, options)
        wall = time.monotonic() - started
        launch = result.meta.get("launch")
        self.last_launch = launch if isinstance(launch, dict) else None
        outcome = outcome_from_capture(
            status=result.status,
            error=result.error,
            exit_code=result.exit_code,
            measured=result.measured(),
            peak_memory_bytes=result.peak_memory_bytes,
            run_dir=run_dir,
            wall_s=wall,
            values=values,
            objective=self.objective,
            measurement=self.measurement,
            warmup=[s for s in result.steps if s.phase == "warmup"],
        )
        if self.last_launch is not None:
            outcome = replace(outcome, launch=str(self.last_launch.get("launcher")))
        elif options.launcher is None:
            outcome = replace(outcome, launch="fresh")
        return outcome


def outcome_from_capture(
    *,
    status: str,
    error: str | None,
    exit_code: int | None,
    measured: Sequence[StepLike],
    peak_memory_bytes: int | None,
    run_dir: Path,
    wall_s: float,
    values: Mapping[str, Any],
    objective: Objective,
    measurement: Measurement,
    warmup: Sequence[StepLike] = (),
) -> TrialOutcome:
    """Turn a capture result into a trial outcome (status, figures, reason)."""
    steps_doc = _read_steps(run_dir)
    common: dict[str, Any] = {
        "peak_memory_bytes": peak_memory_bytes,
        "memory_kind": steps_doc.memory_kind if steps_doc is not None else None,
        "wall_s": wall_s,
        "run_dir": str(run_dir),
        "exit_code": exit_code,
        "injected": _read_json(run_dir / INJECTORS),
        "declared_knobs": dict(steps_doc.declared_knobs) if steps_doc is not None else {},
    }
    failed = _failure(status, error, measurement, steps_doc, run_dir)
    if failed is not None:
        return TrialOutcome(status=failed[0], reason=failed[1], **common)
    if not measured:
        return TrialOutcome(
            status="no-steps",
            reason=f"no measured steps recorded; see {run_dir / 'output.log'}",
            **common,
        )
    if len(measured) < measurement.steps:
        return TrialOutcome(
            status="no-steps",
            reason=f"the script stopped after {len(measured)} of the {measurement.steps} "
            "measured steps a trial needs (give it more steps, or lower --trial-steps)",
            **common,
        )
    durations = [s.duration_ms for s in measured]
    losses = tuple(s.loss for s in measured)
    bad = next((i for i, v in enumerate(losses) if v is not None and not math.isfinite(v)), None)
    if bad is not None:
        return TrialOutcome(
            status="nan",
            reason=f"loss is {losses[bad]} at measured step {bad}",
            losses=losses,
            **common,
        )
    median = statistics.median(durations)
    q1, q3 = _quartiles(durations)
    recorded = [s.samples for s in measured]
    compiled = compile_time(values, [s.duration_ms for s in warmup], median,
                            _read_compilation(run_dir))
    compile_s, compile_source = compiled if compiled is not None else (None, None)
    throughput, unit, samples = objective.throughput(values, recorded, median / 1000.0, compile_s)
    _, samples_source = objective.samples(values, recorded)
    seen = [n for n in recorded if n is not None]
    measured_s = sum(durations) / 1000.0
    budget_reason = over_budget(peak_memory_bytes, measurement.memory_budget)
    return TrialOutcome(
        status="over-budget" if budget_reason else "ok",
        reason=budget_reason,
        step_ms=median,
        step_ms_iqr=q3 - q1,
        spread=(q3 - q1) / median if median > 0 else None,
        step_ms_min=min(durations),
        step_ms_max=max(durations),
        measured_steps=len(durations),
        throughput=throughput,
        unit=unit,
        samples_per_step=samples,
        samples_source=samples_source,
        input_samples=statistics.median(seen) if seen else None,
        losses=losses,
        measured_s=measured_s,
        overhead_s=max(0.0, wall_s - measured_s),
        compile_s=compile_s,
        compile_source=compile_source,
        **common,
    )


WARMUP_EXCESS = "warm-up excess"
RECORDED = "compilation.json"


def compiles(values: Mapping[str, Any]) -> bool:
    """Whether the configuration has perftune compile the model (the `compile` knob)."""
    return COMPILE in values and str(values[COMPILE]) != COMPILE_NONE


def compile_time(
    values: Mapping[str, Any], warmup_ms: Sequence[float], steady_ms: float,
    recorded: CompilationDocument | None = None,
) -> tuple[float, str] | None:
    """(seconds, source) the trial spent compiling; None when it compiled nothing.

    Two figures: the capture's compilation record (compilation.json: every dynamo compilation,
    timed by torch's own callbacks), and what the warm-up steps took beyond the steady step
    (the median of the measured ones) — dynamo traces and inductor compiles the forward at the
    first call and the backward with it or at the first backward, inside the first steps, and
    the steps after are steady. For a configuration that has perftune compile the model the
    larger one is charged: the record misses what the first compiled call pays around dynamo's
    compilations (torch.compile's one-off setup: ~4 s of a 14 s first step on a loaded 2-core
    machine), the warm-up estimate misses a recompilation after the warm-up and holds the first
    step's own milliseconds an eager run pays too. The script's own torch.compile (no compile
    knob) is taken from the record alone.
    """
    recorded_s = recorded.total_compile_s if recorded is not None and recorded.compiled else None
    if not compiles(values):
        return (recorded_s, RECORDED) if recorded_s is not None else None
    excess_s = sum(max(0.0, ms - steady_ms) for ms in warmup_ms) / 1000.0
    if recorded_s is not None and recorded_s >= excess_s:
        return recorded_s, RECORDED
    return excess_s, WARMUP_EXCESS


def _failure(
    status: str,
    error: str | None,
    measurement: Measurement,
    steps_doc: StepsDocument | None,
    run_dir: Path,
) -> tuple[str, str] | None:
    log = RunDir(run_dir).file(OUTPUT_LOG)
    detail = _last_line(error) or f"see {log}"
    if status == "ok":
        return None
    if status == "timeout":
        return "timeout", f"ran past the trial timeout of {measurement.timeout_s:g}s"
    if status == "oom" or (status == "crashed" and _is_out_of_memory(error)):
        return "oom", f"out of memory: {detail}"
    if status == "nan":
        return "nan", f"non-finite loss: {detail}"
    if status == "window-not-reached":
        seen = len(steps_doc.steps) if steps_doc is not None else 0
        wanted = measurement.warmup + measurement.steps
        return (
            "no-steps",
            f"the script stopped after {seen} steps, before the {wanted} a trial needs "
            f"({measurement.warmup} warm-up + {measurement.steps} measured)",
        )
    if status == "interrupted":
        return "interrupted", "interrupted"
    return "crashed", f"{detail} (exit code {steps_doc.exit_code if steps_doc is not None else None}; log: {log})"


def _is_out_of_memory(error: str | None) -> bool:
    text = (error or "").lower()
    return "memoryerror" in text or "out of memory" in text or "outofmemory" in text


def _last_line(text: str | None) -> str | None:
    if not text:
        return None
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else None


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def _read_steps(run_dir: Path) -> StepsDocument | None:
    """The trial's steps.json; None when it is missing or unreadable (the trial's status and
    error already say why)."""
    try:
        return RunDir(run_dir).read_steps()
    except DocumentError:
        return None


def _read_compilation(run_dir: Path) -> CompilationDocument | None:
    """The trial's compilation.json (None when absent or unreadable: the warm-up estimate
    stands in)."""
    try:
        return RunDir(run_dir).read_compilation()
    except DocumentError:
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
