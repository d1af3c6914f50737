"""What a capture produces: step records and the run's result, and their JSON form (steps.json).

Torch-free, so the tuner, the gate and `perftune report` can read capture runs anywhere.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perftune.capture.layout import META_FILE, SCHEMA_VERSION, STEPS_FILE, TRACE_FILE
from perftune.errors import TraceError


@dataclass(frozen=True)
class StepRecord:
    """One training step: the interval between two step boundaries."""

    index: int
    start_s: float  # monotonic seconds since the script started
    duration_ms: float
    phase: str  # warmup | profiled | measured
    loss: float | None = None
    samples: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start_s": self.start_s,
            "duration_ms": self.duration_ms,
            "phase": self.phase,
            "loss": self.loss,
            "samples": self.samples,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepRecord:
        loss = data.get("loss")
        samples = data.get("samples")
        return cls(
            index=int(data["index"]),
            start_s=float(data["start_s"]),
            duration_ms=float(data["duration_ms"]),
            phase=str(data["phase"]),
            loss=None if loss is None else float(loss),
            samples=None if samples is None else int(samples),
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

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def measured(self) -> tuple[StepRecord, ...]:
        """The steps after warm-up (profiled and measured)."""
        return tuple(step for step in self.steps if step.phase != "warmup")

    def median_step_ms(self) -> float | None:
        durations = [step.duration_ms for step in self.measured()]
        return statistics.median(durations) if durations else None


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
        "notes": list(result.notes),
        "steps": [step.to_json() for step in result.steps],
    }


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=repr) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TraceError(path, "not found (is this a perftune capture run directory?)") from None
    except (OSError, ValueError) as exc:
        raise TraceError(path, f"cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise TraceError(path, "not a JSON object")
    return data


def load_capture(run_dir: Path) -> CaptureResult:
    """Read a capture run directory back (steps.json and meta.json)."""
    run_dir = Path(run_dir)
    doc = read_json(run_dir / STEPS_FILE)
    meta_path = run_dir / META_FILE
    meta = read_json(meta_path) if meta_path.exists() else {}
    trace = run_dir / TRACE_FILE
    try:
        steps = tuple(StepRecord.from_json(step) for step in doc.get("steps", []))
        exit_code = doc.get("exit_code")
        peak = doc.get("peak_memory_bytes")
        return CaptureResult(
            run_dir=run_dir,
            status=str(doc["status"]),
            exit_code=None if exit_code is None else int(exit_code),
            error=doc.get("error"),
            step_source=str(doc.get("step_source", "time-window")),
            steps=steps,
            peak_memory_bytes=None if peak is None else int(peak),
            trace_path=trace if trace.exists() else None,
            meta=meta,
            memory_kind=str(doc.get("memory_kind", "rss")),
            skip=int(doc.get("skip", 0)),
            active=int(doc.get("active", 0)),
            profiler=str(doc.get("profiler", "off")),
            notes=tuple(str(note) for note in doc.get("notes", [])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TraceError(run_dir / STEPS_FILE, f"not a perftune steps file: {exc}") from None
