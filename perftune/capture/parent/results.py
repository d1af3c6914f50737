"""What a capture produces: step records and the run's result, and their JSON form (steps.json).

Torch-free, so the tuner, the gate and `perftune report` can read capture runs anywhere.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perftune.capture.parent.layout import META_FILE, SCHEMA_VERSION, STEPS_FILE, TRACE_FILE
from perftune.documents import StepsDocument
from perftune.errors import TraceError
from perftune.fsutil import OutputError, write_json_atomic
from perftune.rundir import DocumentError, decode, read_json_object


@dataclass(frozen=True)
class StepRecord:
    """One training step: the interval between two step boundaries."""

    index: int
    start_s: float  # monotonic seconds since the script started
    duration_ms: float
    phase: str  # warmup | profiled | measured
    loss: float | None = None
    samples: int | None = None
    cpu_ms: float | None = None  # the process's CPU time (user + sys) during the step

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start_s": self.start_s,
            "duration_ms": self.duration_ms,
            "phase": self.phase,
            "loss": self.loss,
            "samples": self.samples,
            "cpu_ms": self.cpu_ms,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepRecord:
        loss = data.get("loss")
        samples = data.get("samples")
        cpu = data.get("cpu_ms")
        return cls(
            index=int(data["index"]),
            start_s=float(data["start_s"]),
            duration_ms=float(data["duration_ms"]),
            phase=str(data["phase"]),
            loss=None if loss is None else float(loss),
            samples=None if samples is None else int(samples),
            cpu_ms=None if cpu is None else float(cpu),
        )


@dataclass(frozen=True)
class CaptureResult:
    """The outcome of one capture run (see docs/contracts.md, "Capture Python API")."""

    run_dir: Path
    status: str
    exit_code: int | None
    error: str | None
    step_source: str
    steps: tuple[StepRecord, ...]
    peak_memory_bytes: int | None
    trace_path: Path | None
    meta: dict[str, Any]
    # Beyond the contract's fields: how the run was set up and what the user should know.
    memory_kind: str = "rss"
    skip: int = 0
    active: int = 0
    profiler: str = "off"  # perftune | script (the script ran its own) | off
    notes: tuple[str, ...] = field(default=())
    # How the step detector grouped the steps, in words (None: nothing to add to step_source).
    step_detail: str | None = None
    seeded: bool | None = None  # the script called torch.manual_seed (None: unknown)
    script_traces: tuple[str, ...] = ()  # where the script's own torch.profiler wrote traces
    script_s: float | None = None  # how long the script itself ran, perftune's setup left out
    script_cpu_s: float | None = None  # the CPU time its process spent in that span

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def measured(self) -> tuple[StepRecord, ...]:
        """The steps after warm-up (profiled and measured)."""
        return tuple(step for step in self.steps if step.phase != "warmup")

    def median_step_ms(self) -> float | None:
        durations = [step.duration_ms for step in self.measured()]
        return statistics.median(durations) if durations else None

    def median_cpu_ms(self) -> float | None:
        """Median CPU time of the measured steps; None when a step lacks it (an older run)
        or a step used no measurable CPU time (a coarse clock)."""
        cpu = [step.cpu_ms for step in self.measured()]
        if not cpu or any(c is None or not c > 0 for c in cpu):
            return None
        return statistics.median(c for c in cpu if c is not None)


def steps_document(result: CaptureResult, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The steps.json object of a result; `extra` holds declared_knobs and knobs."""
    return {
        "schema_version": SCHEMA_VERSION,
        "step_source": result.step_source,
        "skip": result.skip,
        "active": result.active,
        "status": result.status,
        "exit_code": result.exit_code,
        "error": result.error,
        "peak_memory_bytes": result.peak_memory_bytes,
        "memory_kind": result.memory_kind,
        "declared_knobs": dict(extra.get("declared_knobs", {})),
        "knobs": dict(extra.get("knobs", {})),
        "profiler": result.profiler,
        "step_detail": result.step_detail,
        "seeded": result.seeded,
        "script_traces": list(result.script_traces),
        "script_s": result.script_s,
        "script_cpu_s": result.script_cpu_s,
        "notes": list(result.notes),
        "steps": [step.to_json() for step in result.steps],
    }


class CaptureOutputError(OutputError):
    """The run directory could not be written (full disk, read-only folder). `result` is what
    the script did: its own status and every step measured, kept in memory for the caller to
    report, since steps.json may not have been written."""

    def __init__(self, error: OutputError, result: CaptureResult) -> None:
        super().__init__(error.path, error.problem)
        self.result = result


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically (a reader never sees half a file); OutputError on a disk error."""
    write_json_atomic(path, data, indent=1)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = read_json_object(path)
    except DocumentError as exc:
        raise TraceError(path, exc.problem) from None
    if data is None:
        raise TraceError(path, "not found (is this a perftune capture run directory?)")
    return data


def load_capture(run_dir: Path) -> CaptureResult:
    """Read a capture run directory back (steps.json and meta.json)."""
    run_dir = Path(run_dir)
    steps_path = run_dir / STEPS_FILE
    try:
        doc = decode(steps_path, read_json(steps_path), StepsDocument)
    except DocumentError as exc:
        raise TraceError(steps_path, f"not a perftune steps file: {exc.problem}") from None
    meta_path = run_dir / META_FILE
    meta = read_json(meta_path) if meta_path.exists() else {}
    trace = run_dir / TRACE_FILE
    return CaptureResult(
        run_dir=run_dir,
        status=doc.status,
        exit_code=doc.exit_code,
        error=doc.error,
        step_source=doc.step_source,
        steps=tuple(StepRecord(index=step.index, start_s=step.start_s,
                               duration_ms=step.duration_ms, phase=step.phase, loss=step.loss,
                               samples=step.samples, cpu_ms=step.cpu_ms)
                     for step in doc.steps),
        peak_memory_bytes=doc.peak_memory_bytes,
        trace_path=trace if trace.exists() else None,
        meta=meta,
        memory_kind=doc.memory_kind,
        skip=doc.skip,
        active=doc.active,
        profiler=doc.profiler,
        notes=tuple(doc.notes),
        step_detail=doc.step_detail,
        seeded=doc.seeded,
        script_traces=tuple(doc.script_traces),
        script_s=doc.script_s,
        script_cpu_s=doc.script_cpu_s,
    )
