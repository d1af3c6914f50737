"""The stored baseline (`perftune baseline -o perf-baseline.json`): samples plus fingerprint."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perftune._version import __version__
from perftune.errors import ConfigError
from perftune.fsutil import write_json_atomic
from perftune.gate.fingerprint import Fingerprint
from perftune.redact import redact_argv

SCHEMA_VERSION = 1
KIND = "perftune-baseline"


@dataclass(frozen=True)
class Baseline:
    samples_ms: tuple[float, ...]
    fingerprint: Fingerprint
    warmup: int
    steps: int
    script: str | None
    module: str | None = None
    args: tuple[str, ...] = ()
    knobs: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None
    git_dirty: bool = False
    created: str = ""
    perftune_version: str = __version__
    # The base side's profiled launch (explain.profile_to_dict), so that baseline mode can
    # still report structural changes; None when recorded with --no-explain.
    profile: dict[str, Any] | None = None
    # CPU time per step of each launch (same order as samples_ms): what a gate on a busy
    # runner compares; empty in baselines recorded before perftune measured it.
    cpu_samples_ms: tuple[float, ...] = ()
    # Whether other processes competed for the CPUs while it was recorded (perftune.gate.load:
    # the probe before the launches, or any launch, busy), and their CPUs' worth per launch;
    # None in baselines recorded before perftune measured it. An unpaired gate compares only
    # like with like (perftune.gate.runner.unpaired_doubt).
    busy: bool | None = None
    others_cpus: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "created": self.created or datetime.now(UTC).isoformat(timespec="seconds"),
            "perftune_version": self.perftune_version,
            "script": self.script,
            "module": self.module,
            "args": redact_argv(self.args),  # a shared record: no credentials
            "knobs": self.knobs,
            "warmup": self.warmup,
            "steps": self.steps,
            "samples_ms": list(self.samples_ms),
            "cpu_samples_ms": list(self.cpu_samples_ms),
            "load": None if self.busy is None else {
                "busy": self.busy, "others_cpus": [round(v, 3) for v in self.others_cpus]},
            "git": {"commit": self.git_commit, "dirty": self.git_dirty},
            "fingerprint": self.fingerprint.to_dict(),
            "profile": self.profile,
        }


def save(baseline: Baseline, path: Path) -> None:
    """Write atomically: a cancelled job must not leave half a baseline behind."""
    write_json_atomic(path, baseline.to_dict())


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    if key not in data:
        raise ConfigError(f"{path}: not a perftune baseline (no {key!r})")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ConfigError(f"{path}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def load(path: Path) -> Baseline:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: baseline file not found (record one with `perftune baseline`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read baseline: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: baseline is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ConfigError(f"{path}: not a perftune baseline file")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(f"{path}: baseline schema version {data.get('schema_version')!r} is not "
                          f"supported (expected {SCHEMA_VERSION}); record it again")
    samples = _require(data, "samples_ms", list, path)
    if len(samples) < 2 or not all(
        isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) and s > 0
        for s in samples
    ):
        raise ConfigError(f"{path}: samples_ms must hold at least two positive step times")
    cpu = data.get("cpu_samples_ms") or []
    if not (isinstance(cpu, list) and len(cpu) == len(samples) and all(
            isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) and s > 0
            for s in cpu)):
        cpu = []  # absent, or not one positive time per launch: the gate stays on wall time
    load_doc = data.get("load")
    busy = load_doc.get("busy") if isinstance(load_doc, dict) else None
    others = load_doc.get("others_cpus") if isinstance(load_doc, dict) else None
    if not isinstance(busy, bool):
        busy = None  # absent or malformed: the load it was recorded under is unknown
    if not (isinstance(others, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in others)):
        others = []
    git = data.get("git") or {}
    args = _require(data, "args", list, path)
    knobs = data.get("knobs") or {}
    if not isinstance(knobs, dict):
        raise ConfigError(f"{path}: 'knobs' must be an object")
    return Baseline(
        samples_ms=tuple(float(s) for s in samples),
        fingerprint=Fingerprint.from_dict(data.get("fingerprint"), source=str(path)),
        warmup=_require(data, "warmup", int, path),
        steps=_require(data, "steps", int, path),
        script=data.get("script"),
        module=data.get("module"),
        args=tuple(str(a) for a in args),
        knobs=knobs,
        git_commit=git.get("commit") if isinstance(git, dict) else None,
        git_dirty=bool(git.get("dirty")) if isinstance(git, dict) else False,
        created=str(data.get("created", "")),
        perftune_version=str(data.get("perftune_version", "")),
        profile=data.get("profile") if isinstance(data.get("profile"), dict) else None,
        cpu_samples_ms=tuple(float(s) for s in cpu),
        busy=busy,
        others_cpus=tuple(float(v) for v in others),
    )
